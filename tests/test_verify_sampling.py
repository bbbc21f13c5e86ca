"""Where the verifier looks: input scales from the claim's constants, kinks reached from both
sides, points at the constants, and the report of what was covered."""

from __future__ import annotations

import mpmath
import numpy as np
import sympy

from engine.expr import free_vars
from engine.parser import build_environment, parse_equation, parse_formula
from engine.verify import verify
from engine.verify.sampling import (
    KinkCoverage,
    Scale,
    claim_constants,
    input_scales,
    kink_arguments,
    numeric_point,
)


def sides(equation, vars_):
    env = build_environment(vars_)
    return parse_equation(equation, env)


def test_constants_become_scales_from_tiny_to_beyond_the_largest():
    lhs, rhs = sides("relu(x - 30) + 1e-12 * x == x", {"x": "real"})
    assert claim_constants(lhs, rhs) == [sympy.Rational(1, 10**12), sympy.Integer(30)]
    mags = [s.magnitude for s in input_scales(lhs, rhs)]
    assert mags[0] == sympy.Rational(1, 10**15)  # 1000 times below the smallest constant
    assert sympy.Rational(1, 10**12) in mags and 30 in mags
    assert mags[-1] == 120  # four times the largest


def test_kink_arguments_are_found_inside_derivatives_and_definitions():
    env = build_environment({"z": "real[n]"}, {"h": "relu(z - 3)"})
    lhs = parse_formula("grad(sum(abs(h) + step(z)), z)", env)
    args = kink_arguments(lhs)
    assert len(args) == 3


def test_boundary_points_straddle_a_kink_far_from_unit_inputs():
    lhs, _ = sides("relu(x - 20) == x", {"x": "real"})
    used = {"x": next(n for n in lhs.walk() if type(n).__name__ == "Var")}
    cov = KinkCoverage.of(kink_arguments(lhs))
    for value in (1.0, 55.0):
        cov.add({"x": np.asarray(value)}, {})
    below, above = cov.boundary_points(used, {})
    assert 19.999 < float(below["x"]) < 20 < float(above["x"]) < 20.001
    assert cov.describe() == "kinks 1/1 both sides"


def test_scaled_samples_keep_their_types():
    rng = np.random.default_rng(0)
    env = build_environment({"u": "unit[n]", "s": "simplex[n]", "a": "positive[n]"})
    used = free_vars(parse_formula("u + s + a", env))
    for mag in (sympy.Rational(1, 10**12), sympy.Integer(120)):
        point = numeric_point(used, {"n": 7}, rng, Scale(mag, "constant"))
        assert np.all((point["u"] > 0) & (point["u"] < 1))
        assert np.allclose(point["s"].sum(), 1) and np.all(point["s"] > 0)
        assert np.all(point["a"] > 0)


def test_report_names_scales_and_kinks():
    result = verify("relu(x + 30) - relu(x - 30) - 30 == x", {"x": "real"})
    assert result.verdict == "fail"
    ok = verify("relu(x) - relu(-x) == x", {"x": "real"})
    assert ok.passed
    assert "kinks 1/2" not in ok.summary() and "kinks 2/2 both sides" in ok.summary()
    assert "scales 1e-3..4" in ok.summary()


def test_a_formula_wrong_only_at_a_constant_is_caught_there():
    # step(0) + step(0) = 0: wrong only at x = 30, the point the constant names
    result = verify("step(x - 30) + step(30 - x) == 1 - 0 * x", {"x": "real"})
    assert result.verdict == "fail"
    assert result.counterexample.inputs["x"] == "30"


def test_pytorch_softplus_threshold_is_caught_just_above_it():
    result = verify("step(x - 20) * x + step(20 - x) * softplus(x) == softplus(x)", {"x": "real"})
    assert result.verdict == "fail" and result.counterexample.check == "exact"


# A masked max that picks the hot logit, `max(t * z + (1 - t) * -1e9)`, equals sum(t * z) only
# while the hot logit is above -1e9. The random points at the `beyond` scale put some entries
# there, not necessarily the hot one: 8 seeds in 30 passed the claim. The points with every
# entry beyond the largest constant on one side (sampling._beyond_entries) catch it at any seed.
MASKED = {"z": "real[n]", "t": "onehot[n]"}
MASKED_WRONG = [
    "sum(t * z) == max(t * z + (1 - t) * -1e9)",
    "sum(t * z) == max(where(t, z, -1e9))",
    "sum(t * z) == min(t * z + (1 - t) * 1e9)",
    "sum(t * z) == sort(t * z + (1 - t) * -1e9)[n - 1]",
]


def test_a_masked_max_past_its_mask_value_fails_at_every_seed():
    for seed in (0, 4, 6, 7, 10, 11, 15, 19, 27):
        for claim in MASKED_WRONG:
            assert verify(claim, MASKED, seed=seed).verdict == "fail", (seed, claim)


def test_the_masked_max_written_right_passes():
    for seed in (0, 4, 7):
        result = verify(
            "max(t * z + (1 - t) * -1e9) == maximum(sum(t * z), -1e9)", MASKED, seed=seed
        )
        assert result.passed, result.report()


# A claim wrong only exactly at a kink at +-1 (clip to [-1, 1] with a strict step where the
# convention's slope at the bound is 1): 1 is no constant of the claim, so no point sat there at
# seed 3, which passed it. A kinked claim now gets the constant points at 1 as well, where a max
# also meets a tie (every entry 1): claims with another tie convention than the shared one fail.
def test_a_claim_wrong_only_at_a_kink_at_one_fails_at_every_seed():
    wrong = "grad(sum(clip(z, -1, 1)), z) == step(z + 1) * step(1 - z)"
    for seed in range(6):
        assert verify(wrong, {"z": "real[n]"}, seed=seed).verdict == "fail", seed


def test_a_vector_max_gradient_with_every_tie_winning_fails():
    wrong = "grad(max(z), z) == 1 - step(max(z) - z)"  # ties share it (torch.amax)
    for seed in (0, 3):
        assert verify(wrong, {"z": "real[n]"}, seed=seed).verdict == "fail", seed
    right = "grad(max(z), z) == (1 - step(max(z) - z)) / sum(1 - step(max(z) - z))"
    assert verify(right, {"z": "real[n]"}).passed


def test_a_tie_shares_the_gradient_at_the_working_precision():
    """max's partials at a three-way tie are 1/3 at the exact route's 50 digits: a float64 1/3
    (Python's int division) failed the right claim sel-max-grad-shared by 1.85e-17."""
    from engine.backends import sympy_backend
    from engine.verify.exact import Sides

    env = build_environment({"X": "real[m, n]"})
    hit = "(1 - step(max(X, axis=0, keepdims=True) - X))"
    lhs, rhs = parse_equation(
        f"grad(sum(max(X, axis=0)), X) == {hit} / sum({hit}, axis=0, keepdims=True)", env
    )
    sizes = {"m": 3, "n": 2}
    symbols = sympy_backend.symbol_arrays({"X": env.vars["X"]}, sizes)
    exact = Sides.build(lhs, rhs, symbols, sizes)
    ones = {symbols["X"][idx]: sympy.Integer(1) for idx in np.ndindex((3, 2))}
    err, _, lv, _ = exact.compare(ones)
    assert err == 0.0
    with mpmath.workdps(60):  # (mpmath's arithmetic runs at float64's precision by default)
        assert abs(lv.flat[0] - mpmath.mpf(1) / 3) < mpmath.mpf(10) ** -45
