"""The derive rewriter: each rule gives the expected form, and the verifier agrees it is equal."""

from __future__ import annotations

import pytest
import sympy

from engine.derive.simplify import simplify
from engine.parser import build_environment, parse_formula
from engine.verify import verify_sides

VARS = {
    "x": "real[n]",
    "y": "real[n]",
    "q": "simplex[n]",
    "t": "onehot[n]",
    "Y": "simplex[b, n]",
    "s": "real",
    "a": "positive",
    "X": "real[n, k]",
    "w": "real[k]",
    "A": "real[n, n]",
    "B": "real[n, n]",
    "v": "positive[n]",
    "Z": "real[b, n]",
}
DEFS = {
    "p": "softmax(x)",
    "S": "A @ B / sqrt(n)",
    "xn": "(x - mean(x)) / sqrt(var(x) + a)",
    "xr": "x / sqrt(mean(x ** 2) + a)",
}
ENV = build_environment(VARS, DEFS)

RULES = [
    # arithmetic identities and constant folding
    ("x * 1", "x"),
    ("0 + x", "x"),
    ("x - 0", "x"),
    ("-(-x)", "x"),
    ("2 * (3 * x)", "6 * x"),
    ("(2 - 1) * x ** (3 - 2)", "x"),
    ("x + -y", "x - y"),
    ("x - -y", "x + y"),
    ("-(x - y)", "y - x"),
    ("2 * x + x", "3 * x"),
    ("x * x", "x ** 2"),
    ("s - s", "0"),
    ("x - x", "0 * ones(n)"),
    ("(x ** 2) ** 3", "x ** 6"),
    ("(x ** 2) ** 0.5", "(x ** 2) ** 0.5"),
    ("x / 2", "0.5 * x"),
    ("(x / a) * y", "x * y / a"),
    ("x / a / s", "x / (a * s)"),
    # broadcasting leftovers
    ("ones(n) * x", "x"),
    ("ones(n) * s", "ones(n) * s"),
    ("sum(X * ones(n, 1), axis=1, keepdims=True)", "sum(X, axis=1, keepdims=True)"),
    ("sum(x, axis=0)", "sum(x)"),
    ("x - sum(x, axis=-1, keepdims=True)", "x - sum(x)"),
    ("sum(ones(n, k))", "n * k"),
    # sums of simplex / onehot rows are 1
    ("sum(q)", "1"),
    ("sum(t) * x", "x"),
    ("sum(Y, axis=-1, keepdims=True) * Y", "Y"),
    ("sum(Y, axis=0)", "sum(Y, axis=0)"),
    # scalar factors leave products, reductions and transposes
    ("(2 * X.T) @ (X @ w)", "2 * (X.T @ (X @ w))"),
    ("(A / a) @ B", "A @ B / a"),
    ("(-A) @ B", "-(A @ B)"),
    ("outer(2 * x, y)", "2 * outer(x, y)"),
    ("sum(s * x)", "s * sum(x)"),
    ("mean(-x)", "-mean(x)"),
    ("(s * A).T", "s * A.T"),
    # transposes
    ("A.T.T", "A"),
    ("(A @ B).T", "B.T @ A.T"),
    ("outer(x, y).T", "outer(y, x)"),
    ("diag(x).T", "diag(x)"),
    ("(diag(x) - outer(x, x)).T", "diag(x) - outer(x, x)"),
    ("x.T", "x"),
    ("eye(n) @ A", "A"),
    # matrices from broadcasting
    ("eye(n) * expand_dims(x, axis=-1)", "diag(x)"),
    ("eye(n) * x", "diag(x)"),
    ("diag(x) * y", "diag(x * y)"),
    ("expand_dims(x, axis=1) * expand_dims(y, axis=0)", "outer(x, y)"),
    ("(eye(n) - x) * expand_dims(y, axis=-1)", "diag(y) - outer(y, x)"),
    ("sum(diag(x), axis=0, keepdims=True)", "expand_dims(x, axis=0)"),
    ("sum(eye(n), axis=1)", "ones(n)"),
    ("expand_dims(ones(n) / a, axis=0) * A", "A / a"),
    # a factor cancels against a division by the same factor (where the quotient is defined)
    ("(v * x) / v", "x"),
    ("(x * v) / v", "x"),
    ("(v * A) / v", "A"),
    ("(A * v) / A", "A * v / A"),
    ("v * (x - y / v)", "v * x - y"),
    ("(y / v + x) * v", "y + v * x"),
    ("v * (x - y)", "v * (x - y)"),
    ("x * (y - s / x)", "x * (y - s / x)"),
    # the cross-entropy chain: softmax's VJP applied to -y / p
    ("p * (-(y / p) - sum(p * -(y / p)))", "p * sum(y) - y"),
    ("p * (-(q / p) - sum(p * -(q / p)))", "p - q"),
    (
        "softmax(Z) * (-(Y / softmax(Z)) - sum(softmax(Z) * -(Y / softmax(Z)), axis=-1,"
        " keepdims=True))",
        "softmax(Z) - Y",
    ),
    # whole terms: a term's factors regroup into a definition u / w, sums lose constant factors
    ("(x - mean(x)) * y / sqrt(var(x) + a)", "y * xn"),
    ("sum(y * (x - mean(x))) / sqrt(var(x) + a)", "sum(y * xn)"),
    ("sum(y * x / sqrt(mean(x ** 2) + a))", "sum(y * xr)"),
    ("sum(y) / n", "mean(y)"),
    ("sum(X) / (n * k)", "mean(X)"),
    ("sum(X, axis=1, keepdims=True) / k", "mean(X, axis=-1, keepdims=True)"),
    ("sum(X, axis=0) / n", "mean(X, axis=0)"),
    (
        "sum(Y * sum(Z, axis=-1, keepdims=True), axis=-1, keepdims=True) / n",
        "sum(Z, axis=-1, keepdims=True) * mean(Y, axis=-1, keepdims=True)",
    ),
    (
        "sum(Y * sum(Z, axis=-1, keepdims=True), axis=-1) / n",
        "mean(Y * sum(Z, axis=-1, keepdims=True), axis=-1)",
    ),
    # ... but not when the factor left behind would not have the summand's shape
    (
        "sum(sum(Z, axis=-1, keepdims=True) * x, axis=-1, keepdims=True) / n",
        "sum(sum(Z, axis=-1, keepdims=True) * x, axis=-1, keepdims=True) / n",
    ),
    ("sum(Z * x ** 2 * x, axis=-1, keepdims=True) / n", "mean(Z * x ** 3, axis=-1, keepdims=True)"),
    ("x - y * (x + y) - s", "x - s - y * (x + y)"),
    ("x - s - y * (x + y)", "x - s - y * (x + y)"),
    ("x * ones(n) * y", "x * y"),
    ("s * ones(n) * x / s", "x"),
    ("x * a / a", "x"),
    ("x / x", "x / x"),
    ("x / a - y / a", "(x - y) / a"),
    ("x / a + y / (a * s)", "(x + y / s) / a"),
    ("x - ones(n) * s", "x - s"),
    ("(diag(x) - y).T", "diag(x) - expand_dims(y, axis=-1)"),
    # the LayerNorm and RMSNorm chains as reverse mode leaves them
    (
        "y / sqrt(var(x) + a) - sum(y * (x - mean(x))) * (x - mean(x))"
        " / (sqrt(var(x) + a) * sqrt(var(x) + a) ** 2 * n)"
        " - sum(y) * ones(n) / (sqrt(var(x) + a) * n)",
        "(y - mean(y) - xn * mean(y * xn)) / sqrt(var(x) + a)",
    ),
    (
        "y / sqrt(mean(x ** 2) + a) - sum(y * x) * ones(n) * x"
        " / (sqrt(mean(x ** 2) + a) * sqrt(mean(x ** 2) + a) ** 2 * n)",
        "(y - xr * mean(y * xr)) / sqrt(mean(x ** 2) + a)",
    ),
    # softmax family and the user's definitions
    ("log(softmax(x))", "log_softmax(x)"),
    ("exp(log_softmax(x))", "p"),
    ("softmax(x)", "p"),
    ("softmax(A @ B / sqrt(n))", "softmax(S)"),
    ("log(exp(x))", "x"),
    ("sqrt(4)", "2"),
]


@pytest.mark.parametrize("before,after", RULES, ids=[b for b, _ in RULES])
def test_rule(before: str, after: str):
    tree = parse_formula(before, ENV)
    out = simplify(tree, ENV.defs)
    want = parse_formula(after, ENV)
    assert str(out) == str(want)
    assert out.shape == tree.shape
    result = verify_sides(tree, out, ENV, name=before)
    assert result.passed, result.report()


def test_fixed_point_is_reached_and_stable():
    tree = parse_formula("-(-(2 * (3 * (x * 1 + 0))))", ENV)
    once = simplify(tree)
    assert str(once) == "6 * x"
    assert simplify(once) == once


def test_no_sympy_simplify(monkeypatch):
    """The rewriter works on the tree; sympy.simplify is never called (slow, and crashes)."""
    from engine import derive

    def boom(*args, **kwargs):
        raise AssertionError("sympy.simplify called")

    monkeypatch.setattr(sympy, "simplify", boom)
    program = derive(
        "sum(O * (softmax(Q @ K.T / sqrt(d)) @ V))",
        ["Q", "K", "V"],
        {"Q": "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"},
        verify=False,
    )
    assert len(program.steps) == 3
