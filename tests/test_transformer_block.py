"""The pre-LN transformer block (examples/transformer_block.toml): derive with respect to every
weight gives the textbook program, verified by both routes (issue 8).

The exact route refused the block until it evaluated SymPy expressions over their DAG (the
block's trees exceed 1e12 nodes at the small sizes); its program is pinned here, and a relative
1e-6 error planted in one gradient must fail.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import sympy

from engine.api import derive
from engine.expr import Const
from engine.verify import verify_sides

SPEC = tomllib.loads(
    (Path(__file__).parents[1] / "examples" / "transformer_block.toml").read_text()
)
WRT = ["Wq", "Wk", "Wv", "Wo", "W1", "W2", "g1", "b1", "g2", "b2", "X"]
BLOCK_PROGRAM = """
dU = (G @ W2.T) * (0.5 * (1 + erf(U / sqrt(2))) + U * exp(-0.5 * U ** 2) / sqrt(2 * pi))
dH2 = dU @ W1.T
dA2 = dH2 * g2
dX2 = G + (dA2 - mean(dA2, axis=-1, keepdims=True) - A2 * mean(dA2 * A2, axis=-1, keepdims=True)) / s2
dO = dX2 @ Wo.T
dP = swapaxes(reshape(dO, (n, h, dh)), 0, 1) @ swapaxes(V, -1, -2)
dS = where(tril(n), P * (dP - sum(P * dP, axis=-1, keepdims=True)), 0)
dK = swapaxes(dS, -1, -2) @ Q / sqrt(dh)
dQ = dS @ K / sqrt(dh)
dV = swapaxes(P, -1, -2) @ swapaxes(reshape(dO, (n, h, dh)), 0, 1)
dH1 = reshape(swapaxes(dV, 0, 1), (n, d)) @ Wv.T + reshape(swapaxes(dK, 0, 1), (n, d)) @ Wk.T + reshape(swapaxes(dQ, 0, 1), (n, d)) @ Wq.T
dA1 = dH1 * g1
dWq = H1.T @ reshape(swapaxes(dQ, 0, 1), (n, d))
dWk = H1.T @ reshape(swapaxes(dK, 0, 1), (n, d))
dWv = H1.T @ reshape(swapaxes(dV, 0, 1), (n, d))
dWo = O.T @ dX2
dW1 = H2.T @ dU
dW2 = gelu(U).T @ G
dg1 = sum(dH1 * A1, axis=0)
db1 = sum(dH1, axis=0)
dg2 = sum(dH2 * A2, axis=0)
db2 = sum(dH2, axis=0)
dX = dX2 + (dA1 - mean(dA1, axis=-1, keepdims=True) - A1 * mean(dA1 * A1, axis=-1, keepdims=True)) / s1
"""  # noqa: E501


def _derive(verify: bool = True):
    return derive("sum(G * Y)", WRT, SPEC["vars"], SPEC["defs"], sizes=SPEC["sizes"], verify=verify)


def test_the_block_derives_to_the_textbook_program_verified_by_both_routes():
    program = _derive()
    assert program.verified
    assert program.to_text() == BLOCK_PROGRAM.strip()
    for wrt, result in program.results:
        summary = result.summary()
        assert summary.startswith("exact at h=2, dh=3, n=4, m=5 and h=3, dh=4, n=5, m=2"), wrt
        assert "numeric at h=4, dh=6, n=16, m=12" in summary, wrt


def test_the_block_program_reads_as_textbook_blocks():
    text = _derive(verify=False).to_text()
    names = [line.split(" = ")[0] for line in text.splitlines()]
    assert not [n for n in names if re.fullmatch(r"t\d+", n)]  # every step named by what it is
    assert "ones(" not in text and "dh*h" not in text and "exp(" not in text.split("dU = ")[0]
    assert text.count("tril(n)") == 1  # the mask appears once


def test_a_planted_error_in_one_block_gradient_fails_on_the_exact_route():
    program = _derive(verify=False)
    lhs, rhs = program.claim_sides("g1")
    wrong = rhs * Const(sympy.Rational(1000001, 1000000))  # dg1 off by a relative 1e-6
    result = verify_sides(lhs, wrong, program.env, name="planted")
    assert result.verdict == "fail", result.report()
    assert result.counterexample.check == "exact"
