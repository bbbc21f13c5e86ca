"""Simplifications a reader expects (issue 8), each from a general verified rule of the simplifier
(tests/test_simplify_rules.py checks the rules): derive prints the textbook result, verified."""

from __future__ import annotations

import pytest

from engine.derive import derive

VARS = {
    "z": "real[n]",
    "y": "onehot[n]",
    "e": "unit",
    "s": "real[n]",
    "T": "positive",
    "q": "simplex[n]",
    "yb": "unit[n]",
    "X": "real[n, d]",
    "b": "real[d]",
    "u": "positive[n]",
    "A": "real[n, n]",
    "c": "real[n]",
    "k": "real",
}

# (expression, variable, definitions, the program derive prints)
CASES = [
    # sums of softmax rows and of declared distributions are 1
    ("sum(softmax(z)) * k", "k", {}, "dk = 1"),
    ("cross_entropy(softmax(z), t)", "z", {"t": "(1 - e) * y + e / n"}, "dz = softmax(z) - t"),
    (
        "cross_entropy(softmax(z), (1 - e) * y + e / n)",
        "z",
        {},
        "dz = softmax(z) - ((1 - e) * y + e / n)",
    ),
    ("cross_entropy(softmax(z), (1 - e) * y + e * q)", "z", {}, None),
    # distillation: KL to the teacher's tempered softmax, and Hinton's T^2 scaling
    ("kl(q, softmax(s / T))", "s", {}, "ds = (softmax(s / T) - q) / T"),
    ("T**2 * kl(q, softmax(s / T))", "s", {}, "ds = T * (softmax(s / T) - q)"),
    # binary cross-entropy of logits
    (
        "-sum(yb * log(sigmoid(s)) + (1 - yb) * log(1 - sigmoid(s)))",
        "s",
        {},
        "ds = sigmoid(s) - yb",
    ),
    # sqrt(u) ** 2 = u for u >= 0 by type; u / u = 1 for u > 0 by type
    ("sum(sqrt(u) ** 2)", "u", {}, "du = ones(n)"),
    ("sum(sqrt(u) ** 2 * c)", "c", {}, "dc = u"),
    # elementwise Jacobians are diag(...), never eye * expand_dims
    ("tanh(z) * k", "z", {}, "J = k * diag(1 - tanh(z) ** 2)"),
    ("c * exp(z) + z", "z", {}, "J = diag(1 + c * exp(z))"),
    ("z / (1 + abs(z))", "z", {}, "J = diag((1 - abs(z) / (1 + abs(z))) / (1 + abs(z)))"),
    ("A @ tanh(z)", "z", {}, "J = A * (1 - tanh(z) ** 2)"),
    (
        "softmax(z) * z",
        "z",
        {},
        "J = diag(softmax(z) + z * softmax(z)) - outer(z * softmax(z), softmax(z))",
    ),
    # a broadcast row is 1 b^T, not ones(n, d) * b
    ("sum(X * b)", "X", {}, "dX = outer(ones(n), b)"),
    ("mean(X * b)", "X", {}, "dX = outer(ones(n), b) / (n * d)"),
]


@pytest.mark.parametrize("expr,wrt,defs,text", CASES, ids=[c[0] for c in CASES])
def test_reader_form(expr, wrt, defs, text):
    program = derive(expr, wrt, VARS, defs)
    assert program.verified
    printed = program.to_text()
    if text is not None:
        assert printed == text
    assert "eye(n) *" not in printed and "* expand_dims" not in printed
    assert "ones(n, d) *" not in printed
    assert "sum(softmax" not in printed and "sum(t" not in printed


def test_label_smoothing_mixture_has_no_row_sum():
    """(1 - e) y + e q: the row total (1 - e) + e = 1 leaves softmax(z) minus the target."""
    program = derive("cross_entropy(softmax(z), (1 - e) * y + e * q)", "z", VARS)
    assert program.to_text() == "dz = softmax(z) - ((1 - e) * y + e * q)"
