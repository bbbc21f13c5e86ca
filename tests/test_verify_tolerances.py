"""Regression tests for the verifier's tolerances: misses and false alarms found by
benchmarks/noise.py and benchmarks/verify_bench.py."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import sympy

from engine.backends import numpy_backend
from engine.claims import load_claims
from engine.expr import Const, Var
from engine.parser import build_environment, parse_equation

V = importlib.import_module("engine.verify")
CE = "grad(cross_entropy(softmax(z), y), z) == softmax(z) - y"


def _ce_sides():
    env = build_environment({"z": "real[n]", "y": "simplex[n]"}, {})
    lhs, rhs = parse_equation(CE, env)
    return lhs, rhs, env


def test_exact_route_sees_differences_below_float64_precision():
    # 1e-20 is far below float64's resolution of 1 but far above EXACT_RTOL (1e-30): only a
    # check that really carries 50 digits sees it. It used to pass both routes.
    result = V.verify("sum(softmax(z)) == 1 + 1e-20", {"z": "real[n]"})
    assert result.verdict == "fail"
    (exact,) = [c for c in result.checks if c.method == "exact"]
    assert not exact.passed
    assert 0.5e-20 < exact.max_error < 2e-20
    assert V.verify("sum(softmax(z)) == 1 + 1e-35", {"z": "real[n]"}).passed


def test_probes_at_large_n_catch_a_relative_1e6_error_in_one_entry():
    lhs, rhs, env = _ce_sides()
    e = Var("e", "onehot", rhs.shape)
    planted = rhs + Const(sympy.Rational(1, 10**6)) * rhs * e
    sizes = {"n": 50_000}
    true = V.verify_sides(lhs, rhs, env, numeric_sizes=sizes, exact=False)
    assert true.passed, true.report()
    assert "probes" in true.summary()
    bad = V.verify_sides(lhs, planted, env, numeric_sizes=sizes, exact=False)
    assert bad.verdict == "fail"
    cx = bad.counterexample
    # bisection lands on the planted entry, where the sides differ by a relative 1e-6
    assert cx.entry == (int(np.argmax(cx.inputs["e"])),)
    assert abs(cx.difference / cx.rhs) == pytest.approx(1e-6, rel=1e-3)


def test_temperature_entropy_derivative_has_no_false_alarm_at_small_temperature():
    # seeds 20 and 55: softmax(z / T) underflows to 0 (0 * log 0 was nan); seed 54: q is exactly
    # one-hot in float64 and long double, so E[z^2] - E[z]^2 is exactly 0 while lhs ~ 1.7e-17
    claims = {c.name: c for c in load_claims("examples/claims.toml")}
    claim = claims["temperature-entropy-derivative"]
    for seed in (20, 54, 55):
        result = claim.check(seed=seed)
        assert result.passed, result.report()


def test_entropy_of_an_underflowed_distribution_is_finite():
    env = build_environment({"p": "simplex[n]"}, {})
    lhs, _ = parse_equation("entropy(p) == 0", env)
    value = numpy_backend.evaluate(lhs, {"p": np.array([0.5, 0.5, 0.0])}, {"n": 3})
    assert float(value) == pytest.approx(np.log(2), rel=1e-15)
