"""A definition written in a form the rules rewrite still names its value in the derived program.

The reverse pass simplifies the forward nodes it pulls back through; softmax's VJP reads its own
node, so with P = softmax(Q @ transpose(K, (0, 1, 3, 2)) / sqrt(dh)) the program used to define
`P2 = softmax(Q @ swapaxes(K, -1, -2) / sqrt(dh))`, P's formula a second time, which the export
then computed twice, and the cross-entropy chain through p = softmax(z * 1) stopped short of
p - y. The rewriter now also knows each body as the rules write it (engine.derive.simplify).
"""

from __future__ import annotations

import re

import pytest

from engine import derive

QKVO = {v: "real[n, d]" for v in "QKVO"}
CASES = [
    (
        {v: "real[B, h, n, dh]" for v in "QKVO"},
        "softmax(Q @ transpose(K, (0, 1, 3, 2)) / sqrt(dh))",
    ),
    (QKVO, "softmax(transpose(transpose(Q @ K.T)) / sqrt(d))"),
    (QKVO, "softmax(1 * (Q @ K.T) / sqrt(d))"),
    (QKVO, "softmax((Q @ K.T + 0) / sqrt(d))"),
    (QKVO, "softmax(transpose(K @ Q.T) / sqrt(d))"),
    (
        {v: "real[B, n, d]" for v in "QKVO"},
        "softmax(Q @ swapaxes(swapaxes(swapaxes(K, 1, 2), 0, 1), 0, 1) / sqrt(d))",
    ),
]


@pytest.mark.parametrize(("vars_", "P"), CASES)
def test_attention_reads_P_once_whatever_way_its_scores_are_written(vars_, P):
    program = derive("sum(O * (P @ V))", ["Q", "K", "V"], vars_, defs={"P": P})
    names = [s.name for s in program.steps]
    assert not [n for n in names if re.fullmatch(r"P\d+", n)], names  # no second P
    assert names == ["dP", "dS"]
    assert str(program.steps[1].expr) == ("P * (dP - sum(P * dP, axis=-1, keepdims=True))")


@pytest.mark.parametrize("p", ["softmax(z * 1)", "softmax(--z)", "softmax(z + 0)"])
def test_the_cross_entropy_chain_reaches_p_minus_y(p):
    program = derive("cross_entropy(p, y)", ["z"], {"z": "real[n]", "y": "simplex[n]"}, {"p": p})
    assert [str(g) for _, g in program.gradients] == ["p - y"]
    assert not program.steps
