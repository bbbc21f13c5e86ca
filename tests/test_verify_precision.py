"""float64 never judges: a difference the numeric route sees is re-evaluated at high precision."""

from __future__ import annotations

import numpy as np

from engine.parser import build_environment, parse_equation
from engine.verify import verify
from engine.verify.precision import confirm


def sides(equation, vars_, defs=None):
    env = build_environment(vars_, defs)
    return parse_equation(equation, env)


def test_saturated_sigmoid_is_settled_at_high_precision():
    # sigmoid(40) rounds to 1 in float64, so log(1 - sigmoid(40)) is -inf there and its
    # complex-step derivative is garbage; at 40 digits both sides agree
    lhs, rhs = sides("grad(log(1 - sigmoid(x)), x) == -sigmoid(x)", {"x": "real"})
    rel, text, tied = confirm(lhs, rhs, {"x": np.asarray(40.0)}, {}, ())
    left, right = text.removeprefix("lhs = ").removesuffix(" (at 80 digits)").split(", rhs = ")
    assert rel == 0.0 and left == right and not tied


def test_a_real_difference_survives_high_precision():
    lhs, rhs = sides("grad(log(1 - sigmoid(x)), x) == sigmoid(x) - 1", {"x": "real"})
    rel, _, _ = confirm(lhs, rhs, {"x": np.asarray(0.5)}, {}, ())  # (no kink: tied is False)
    assert rel > 0.1


def test_hessian_entry_at_high_precision():
    lhs, rhs = sides("jacobian(grad(sum(z**4), z), z) == diag(12 * z**2)", {"z": "real[n]"})
    z = np.array([0.5, -1.5, 2.0])
    for entry in [(0, 0), (1, 1), (0, 2)]:
        rel, _, _ = confirm(lhs, rhs, {"z": z}, {"n": 3}, entry)
        assert rel == 0.0


def test_logistic_regression_gradient_passes_though_float64_saturates():
    result = verify(
        "grad(-sum(y * log(sigmoid(X @ w)) + (1 - y) * log(1 - sigmoid(X @ w))), w)"
        " == X.T @ (sigmoid(X @ w) - y)",
        {"X": "real[m, n]", "w": "real[n]", "y": "unit[m]"},
    )
    assert result.passed, result.report()


def test_rounding_against_an_exact_zero_is_not_a_failure():
    result = verify("grad(sum(softmax(z)), z) == 0 * z", {"z": "real[n]"})
    assert result.passed, result.report()


def test_overflow_at_every_scale_is_decided_at_high_precision():
    ok = verify("exp(-1000000 * a) * exp(1000000 * a) == 1 + 0 * a", {"a": "positive"})
    assert ok.passed and "decided at 80 digits" in ok.summary()
