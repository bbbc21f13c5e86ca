"""derive at rank >= 3 stays textbook (issue 8): an adversarial corpus of gradients over rank-3
and rank-4 tensors, each program verified by both routes and pinned as text, and a generic
check that no program keeps broadcasting residue (a ones(...) factor broadcasting already
supplies, squeeze(expand_dims(...)), a sum of a sum, a swapaxes of a transpose, ...)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from test_export_programs import load_module

from engine.backends import numpy_backend
from engine.derive import derive
from engine.export import to_module
from engine.expr import Call, Const, Expr, call
from engine.functions.base import broadcast
from engine.parser import build_environment, parse_formula
from engine.types import TYPES

# (id, loss, wrt, variables, the derived program)
CORPUS = [
    (
        "batched-matmul",
        "sum(G * (A @ B))",
        ["A", "B"],
        {"A": "real[b, n, k]", "B": "real[b, k, m]", "G": "real[b, n, m]"},
        """
dA = G @ swapaxes(B, -1, -2)
dB = swapaxes(A, -1, -2) @ G
""",
    ),
    (
        "batched-matmul-shared-weight",
        "sum(G * (X @ W))",
        ["X", "W"],
        {"X": "real[b, n, k]", "W": "real[k, m]", "G": "real[b, n, m]"},
        """
dX = G @ W.T
dW = sum(swapaxes(X, -1, -2) @ G, axis=0)
""",
    ),
    (
        "swapaxes",
        "sum(G * swapaxes(X, 0, 2))",
        ["X"],
        {"X": "real[a, b, c]", "G": "real[c, b, a]"},
        "dX = swapaxes(G, 0, 2)",
    ),
    (
        "transpose-cycle",
        "sum(G * transpose(X, (1, 2, 0)))",
        ["X"],
        {"X": "real[a, b, c]", "G": "real[b, c, a]"},
        "dX = transpose(G, (2, 0, 1))",
    ),
    (
        "transpose-heads",
        "sum(G * transpose(X, (0, 2, 1, 3)))",
        ["X"],
        {"X": "real[B, n, h, d]", "G": "real[B, h, n, d]"},
        "dX = swapaxes(G, 1, 2)",
    ),
    (
        "transpose-then-matmul",
        "sum(G * (transpose(X, (0, 2, 1)) @ W))",
        ["X", "W"],
        {"X": "real[B, d, n]", "W": "real[d, m]", "G": "real[B, n, m]"},
        """
dX = W @ swapaxes(G, -1, -2)
dW = sum(X @ G, axis=0)
""",
    ),
    (
        "tuple-axis-sum-squared",
        "sum(sum(X, axis=(0, 2)) ** 2)",
        ["X"],
        {"X": "real[a, b, c]"},
        "dX = 2 * (sum(X, axis=(0, 2), keepdims=True) * ones(a, b, c))",
    ),
    (
        "tuple-axis-sum-weighted",
        "sum(w * sum(X, axis=(0, 2)))",
        ["X"],
        {"X": "real[a, b, c]", "w": "real[b]"},
        "dX = expand_dims(w, axis=(0, 2)) * ones(a, b, c)",
    ),
    (
        "tuple-axis-mean-keepdims",
        "sum(G * mean(X, axis=(1, 2), keepdims=True))",
        ["X"],
        {"X": "real[a, b, c]", "G": "real[a, 1, 1]"},
        "dX = G * ones(a, b, c) / (b * c)",
    ),
    (
        "tuple-axis-mean-weighted",
        "sum(mean(X, axis=(0, 2)) * w)",
        ["X"],
        {"X": "real[a, b, c]", "w": "real[b]"},
        "dX = expand_dims(w, axis=(0, 2)) * ones(a, b, c) / (a * c)",
    ),
    (
        "last-axis-mean",
        "sum(mean(X, axis=-1) * Y)",
        ["X"],
        {"X": "real[a, b, c]", "Y": "real[a, b]"},
        "dX = expand_dims(Y, axis=-1) * ones(a, b, c) / c",
    ),
    (
        "last-axis-var",
        "sum(Y * var(X, axis=-1))",
        ["X"],
        {"X": "real[a, b, c]", "Y": "real[a, b]"},
        "dX = 2 * (expand_dims(Y, axis=-1) * (X - mean(X, axis=-1, keepdims=True))) / c",
    ),
    (
        "centred-square",
        "sum((X - mean(X, axis=(0, 1), keepdims=True)) ** 2)",
        ["X"],
        {"X": "real[a, b, c]"},
        "dX = 2 * (X - mean(X, axis=(0, 1), keepdims=True))",
    ),
    (
        "times-own-column-sum",
        "sum(X * expand_dims(sum(X, axis=0), axis=0))",
        ["X"],
        {"X": "real[a, b, c]"},
        "dX = 2 * (sum(X, axis=0, keepdims=True) * ones(a, b, c))",
    ),
    (
        "expand-dims-leading",
        "sum(G * expand_dims(Y, axis=0))",
        ["Y"],
        {"Y": "real[b, c]", "G": "real[a, b, c]"},
        "dY = sum(G, axis=0)",
    ),
    (
        "expand-dims-tuple",
        "sum(G * expand_dims(x, axis=(0, 1)))",
        ["x"],
        {"x": "real[c]", "G": "real[a, b, c]"},
        "dx = sum(G, axis=(0, 1))",
    ),
    (
        "expand-dims-middle",
        "sum(G * expand_dims(X, axis=1))",
        ["X"],
        {"X": "real[a, c]", "G": "real[a, 1, c]"},
        "dX = squeeze(G, 1)",
    ),
    (
        "squeeze-of-expand-dims",
        "sum(G * squeeze(expand_dims(X, axis=0), axis=0))",
        ["X"],
        {"X": "real[a, b, c]", "G": "real[a, b, c]"},
        "dX = G",
    ),
    (
        "squeeze-default-axis",
        "sum(squeeze(X) * Y)",
        ["X"],
        {"X": "real[b, 1, k]", "Y": "real[b, k]"},
        "dX = expand_dims(Y, axis=1)",
    ),
    (
        "squeeze-two-axes",
        "sum(G * squeeze(X))",
        ["X"],
        {"X": "real[b, 1, n, 1]", "G": "real[b, n]"},
        "dX = expand_dims(G, axis=(1, 3))",
    ),
    (
        "softmax-last-axis",
        "sum(G * softmax(X, axis=-1))",
        ["X"],
        {"X": "real[B, n, d]", "G": "real[B, n, d]"},
        "dX = softmax(X) * (G - sum(softmax(X) * G, axis=-1, keepdims=True))",
    ),
    (
        "softmax-tuple-axes",
        "sum(softmax(X, axis=(1, 2)) * G)",
        ["X"],
        {"X": "real[a, b, c]", "G": "real[a, b, c]"},
        "dX = softmax(X, axis=(1, 2)) * (G - sum(softmax(X, axis=(1, 2)) * G, axis=(1, 2), "
        "keepdims=True))",
    ),
    (
        "cross-entropy-batched",
        "mean(-sum(Y * log_softmax(Z), axis=-1))",
        ["Z"],
        {"Z": "real[B, n, V]", "Y": "onehot[B, n, V]"},
        "dZ = (softmax(Z) - Y) / (B * n)",
    ),
    (
        "layernorm-last-axis",
        "sum(G * (gamma * ((X - mean(X, axis=-1, keepdims=True)) / sqrt(var(X, axis=-1, "
        "keepdims=True) + eps)) + beta))",
        ["X", "gamma", "beta"],
        {
            "X": "real[B, n, d]",
            "G": "real[B, n, d]",
            "eps": "positive",
            "gamma": "real[d]",
            "beta": "real[d]",
        },
        """
Xhat = (X - mean(X, axis=-1, keepdims=True)) / sqrt(var(X, axis=-1, keepdims=True) + eps)
dXhat = G * gamma
dX = (dXhat - mean(dXhat, axis=-1, keepdims=True) - Xhat * mean(dXhat * Xhat, axis=-1, keepdims=True)) / sqrt(var(X, axis=-1, keepdims=True) + eps)
dgamma = sum(G * Xhat, axis=(0, 1))
dbeta = sum(G, axis=(0, 1))
""",  # noqa: E501
    ),
    (
        "gelu-mlp",
        "sum(G * gelu(X @ W + c))",
        ["X", "W", "c"],
        {"X": "real[B, n, d]", "W": "real[d, m]", "c": "real[m]", "G": "real[B, n, m]"},
        """
t1 = X @ W + c
t2 = G * (0.5 * (1 + erf(t1 / sqrt(2))) + t1 * exp(-0.5 * t1 ** 2) / sqrt(2 * pi))
dX = t2 @ W.T
dW = sum(swapaxes(X, -1, -2) @ t2, axis=0)
dc = sum(t2, axis=(0, 1))
""",
    ),
    (
        "bias-over-rows",
        "sum(X * b)",
        ["X", "b"],
        {"X": "real[B, n, d]", "b": "real[d]"},
        """
dX = ones(B, n, d) * b
db = sum(X, axis=(0, 1))
""",
    ),
    (
        "bias-column",
        "sum(exp(X + b))",
        ["b"],
        {"X": "real[B, n, d]", "b": "real[n, 1]"},
        "db = expand_dims(sum(exp(X + b), axis=(0, 2)), axis=-1)",
    ),
    (
        "unit-axes-both-sides",
        "sum(G * (X * Y))",
        ["X", "Y"],
        {"X": "real[a, 1, c]", "Y": "real[1, b, c]", "G": "real[a, b, c]"},
        """
dX = sum(G * Y, axis=1, keepdims=True)
dY = sum(G * X, axis=0, keepdims=True)
""",
    ),
    (
        "scalar-times-tensor",
        "sum(G * (s * X))",
        ["X", "s"],
        {"X": "real[a, b, c]", "s": "real", "G": "real[a, b, c]"},
        """
dX = G * s
ds = sum(G * X)
""",
    ),
    (
        "max-last-axis",
        "sum(G * (X - max(X, axis=-1, keepdims=True)))",
        ["X"],
        {"X": "real[a, b, c]", "G": "real[a, b, c]"},
        """
t1 = 1 - step(max(X, axis=-1, keepdims=True) - X)
dX = G - sum(G, axis=-1, keepdims=True) * t1 / sum(t1, axis=-1, keepdims=True)
""",
    ),
    (
        "einsum-batched",
        'sum(G * einsum("bij,bjk->bik", A, B))',
        ["A", "B"],
        {"A": "real[b, n, k]", "B": "real[b, k, m]", "G": "real[b, n, m]"},
        """
dA = einsum("bik,bjk->bij", G, B)
dB = einsum("bik,bij->bjk", G, A)
""",
    ),
    (
        "einsum-batched-trace",
        'sum(einsum("bii->b", A) ** 2)',
        ["A"],
        {"A": "real[b, n, n]"},
        'dA = 2 * einsum("b,ij->bij", einsum("bii->b", A), eye(n))',
    ),
    (
        "attention-scores-rank4",
        "sum(G * (Q @ swapaxes(K, -1, -2)))",
        ["Q", "K"],
        {"Q": "real[B, h, n, d]", "K": "real[B, h, n, d]", "G": "real[B, h, n, n]"},
        """
dQ = G @ K
dK = swapaxes(G, -1, -2) @ Q
""",
    ),
    (
        "sum-of-squares-rank4",
        "sum(sum(X, axis=-1) ** 2)",
        ["X"],
        {"X": "real[a, b, c, e]"},
        "dX = 2 * (sum(X, axis=-1, keepdims=True) * ones(a, b, c, e))",
    ),
    (
        "unit-axes-added",
        "sum(G * (X + Y))",
        ["X", "Y"],
        {"X": "real[B, 1, d]", "Y": "real[B, n, 1]", "G": "real[B, n, d]"},
        """
dX = sum(G, axis=1, keepdims=True)
dY = sum(G, axis=-1, keepdims=True)
""",
    ),
    (
        "centred-by-global-mean",
        "sum(G * (X - mean(X)))",
        ["X"],
        {"X": "real[a, b, c]", "G": "real[a, b, c]"},
        "dX = G - mean(G)",
    ),
    (
        "tuple-axis-var",
        "sum(var(X, axis=(0, 2)) * w)",
        ["X"],
        {"X": "real[a, b, c]", "w": "real[b]"},
        "dX = 2 * (expand_dims(w, axis=(0, 2)) * (X - mean(X, axis=(0, 2), keepdims=True))) "
        "/ (a * c)",
    ),
    (
        "causal-softmax-rank4",
        "sum(G * softmax(where(tril(n), S, -inf)))",
        ["S"],
        {"S": "real[B, h, n, n]", "G": "real[B, h, n, n]"},
        """
P = softmax(where(tril(n), S, -inf))
dS = where(tril(n), P * (G - sum(P * G, axis=-1, keepdims=True)), 0)
""",
    ),
    (
        "every-axis-tuple",
        "sum(X, axis=(0, 1, 2))",
        ["X"],
        {"X": "real[a, b, c]"},
        "dX = ones(a, b, c)",
    ),
    (
        "broadcast-plus-own-sum",
        "sum(expand_dims(x, axis=0) * X) + sum(x)",
        ["x"],
        {"x": "real[b, c]", "X": "real[a, b, c]"},
        "dx = 1 + sum(X, axis=0)",
    ),
    (
        "ratio-of-column-sums",
        "sum(sum(X * X, axis=0) / sum(X, axis=0))",
        ["X"],
        {"X": "positive[a, b, c]"},
        "dX = (2 * X - sum(X ** 2, axis=0, keepdims=True) / sum(X, axis=0, keepdims=True)) "
        "/ sum(X, axis=0, keepdims=True)",
    ),
]


@pytest.mark.parametrize(
    "loss, wrt, vars_, expected",
    [case[1:] for case in CORPUS],
    ids=[case[0] for case in CORPUS],
)
def test_rank3_program_is_textbook(loss: str, wrt: list[str], vars_: dict, expected: str):
    program = derived(loss, tuple(wrt), tuple(vars_.items()))
    assert program.verified
    assert program.to_text() == expected.strip()
    assert residue(program_exprs(program)) == []


@functools.cache
def derived(loss: str, wrt: tuple[str, ...], vars_: tuple[tuple[str, str], ...]):
    """derive's program, verified by both routes (derive raises if it does not pass)."""
    return derive(loss, list(wrt), dict(vars_))


# distinct sizes, so that a wrong axis cannot pass by a coincidence of lengths
EXPORT_SIZES = {"a": 2, "b": 3, "c": 4, "e": 5, "B": 2, "n": 3, "d": 4, "h": 5, "k": 6, "m": 7}
EXPORT_SIZES["V"] = 5


@pytest.mark.parametrize(
    "loss, wrt, vars_",
    [case[1:4] for case in CORPUS],
    ids=[case[0] for case in CORPUS],
)
def test_rank3_program_exports_to_numpy(loss: str, wrt: list[str], vars_: dict, tmp_path):
    """The exported NumPy module of each program against the verifier's complex-step route."""
    program = derived(loss, tuple(wrt), tuple(vars_.items()))
    module = load_module(to_module(program), tmp_path, "rank3_export")
    sizes = {k: v for k, v in EXPORT_SIZES.items() if k in program.env.sizes}
    rng = np.random.default_rng(3)
    inputs = {}
    for name, var in program.env.vars.items():
        shape = tuple(int(d) if d.is_Integer else sizes[str(d)] for d in var.shape)
        inputs[name] = np.asarray(TYPES[var.vtype].numeric(rng, shape, "unit"), dtype=np.float64)
    _, grads = module.value_and_grad(*inputs.values())
    for v, _ in program.gradients:
        want = numpy_backend.evaluate(
            call("grad", program.output, program.env.vars[v]), inputs, sizes
        )
        np.testing.assert_allclose(grads[v], want, rtol=1e-9, atol=1e-11, err_msg=v)


# ---------------------------------------------------------------- the generic residue check

NESTING = ("sum", "mean", "logsumexp", "max", "min")
PERMUTATIONS = ("swapaxes", "transpose")


def _factors(e: Expr) -> list[Expr]:
    """The factors of a product of `*` and `/` (a divisor counts as a factor)."""
    if isinstance(e, Call) and e.fn in ("mul", "div"):
        return _factors(e.args[0]) + _factors(e.args[1])
    return [e]


def _is(e: Expr, *fns: str) -> bool:
    return isinstance(e, Call) and e.fn in fns


def _is_zero_array(e: Expr) -> bool:
    return _is(e, "mul") and isinstance(e.args[0], Const) and e.args[0].value == 0


def _walk(e: Expr, parent: Expr | None, out: list[tuple[Expr, Expr | None]]) -> None:
    """Every call of `e` with its parent; definitions (Ref) are steps of their own."""
    if isinstance(e, Call):
        out.append((e, parent))
        for a in e.args:
            _walk(a, e, out)


def residue(exprs: list[Expr]) -> list[str]:
    """The broadcasting residue in `exprs`, one line per finding (empty: none)."""
    found: list[str] = []
    for root in exprs:
        nodes: list[tuple[Expr, Expr | None]] = []
        _walk(root, None, nodes)
        for node, parent in nodes:
            x = node.args[0] if node.args else None
            if node.fn in ("mul", "div") and not _is(parent, "mul", "div"):
                factors = _factors(node)
                ones = [f for f in factors if _is(f, "ones")]
                rest = [f.shape for f in factors if not _is(f, "ones")]
                if len(ones) > 1:
                    found.append("two ones(...) factors in one product")
                if ones and rest and broadcast(*rest) == node.shape:
                    found.append("a ones(...) factor the other factors already broadcast")
            if _is_zero_array(node) and root is not node:
                found.append("a zero array 0 * ones(...) inside an expression")
            if node.fn == "squeeze" and _is(x, "expand_dims"):
                found.append("squeeze(expand_dims(...))")
            if node.fn == "expand_dims" and _is(x, "squeeze"):
                found.append("expand_dims(squeeze(...))")
            if node.fn == "squeeze" and _is(x, *NESTING, "var") and x.param("keepdims"):
                found.append("squeeze of a keepdims reduction")
            if node.fn in NESTING and _is(x, node.fn):
                found.append(f"{node.fn}({node.fn}(...))")
            if node.fn in NESTING and any(_is(f, "ones") for f in _factors(x)):
                found.append("a reduction of a product with ones(...)")
            if (
                node.fn in PERMUTATIONS
                and _is(x, *PERMUTATIONS)
                and "swapaxes"
                in (
                    node.fn,
                    x.fn,
                )
            ):
                found.append("a permutation of a permutation")
            if node.fn in ("add", "sub") and _is(node.args[1], "mul"):
                c = node.args[1].args[0]
                if isinstance(c, Const) and c.value.is_negative:
                    found.append("+ -c * x")
    return found


def program_exprs(program) -> list[Expr]:
    return [a.expr for a in program.steps] + [g for _, g in program.gradients]


PLANTED = [
    ("dX = G * ones(a, b, c)", "already broadcast"),
    ("ones(a, b, c) * (ones(a, b, c) * s)", "two ones"),
    ("squeeze(expand_dims(G, axis=0), 0)", "squeeze(expand_dims"),
    ("expand_dims(squeeze(H), axis=1)", "expand_dims(squeeze"),
    ("squeeze(sum(G, axis=0, keepdims=True), 0)", "keepdims reduction"),
    ("sum(sum(G, axis=0), axis=0)", "sum(sum"),
    ("sum(ones(a, b, c) * s, axis=0)", "reduction of a product with ones"),
    ("swapaxes(transpose(G, (0, 2, 1)), -1, -2)", "permutation of a permutation"),
    ("G + -2 * G", "+ -c * x"),
    ("G + 0 * ones(a, b, c)", "zero array"),
]
PLANTED_ENV = build_environment({"G": "real[a, b, c]", "H": "real[a, 1, c]", "s": "real"}, {})


@pytest.mark.parametrize("text, finding", PLANTED, ids=[p[1] for p in PLANTED])
def test_residue_check_finds_planted_residue(text: str, finding: str):
    """The check is not vacuous: each kind of residue, written by hand, is found."""
    expr = parse_formula(text.removeprefix("dX = "), PLANTED_ENV)
    assert any(finding in line for line in residue([expr])), residue([expr])


def test_residue_check_passes_needed_ones():
    """ones(...) that broadcasting needs (the other factors do not fill the shape) is no residue."""
    for text in ("ones(a, b, c) * s", "sum(G, axis=0, keepdims=True) * ones(a, b, c) / a"):
        assert residue([parse_formula(text, PLANTED_ENV)]) == []
