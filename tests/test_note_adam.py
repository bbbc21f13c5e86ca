"""Note 4 (Adam): every step verifies, wrong variants of key steps are caught, figure data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from note_support import NoteUnderTest

from engine.notes import Step

UNDER_TEST = NoteUnderTest("adam")
adam = UNDER_TEST.module
NOTE = UNDER_TEST.note
ENV = UNDER_TEST.env
STEPS = UNDER_TEST.steps
check = UNDER_TEST.check
labelled = UNDER_TEST.labelled


def test_note_is_well_formed():
    assert NOTE.problems() == []
    assert NOTE.order == 4
    assert len(STEPS) == 13
    assert [f.name for f in NOTE.figures()] == ["optimizers-quadratic"]


@pytest.mark.parametrize("step", STEPS, ids=[s.label or str(k) for k, s in enumerate(STEPS)])
def test_every_step_verifies(step):
    result = check(step)
    assert result.passed, result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]


# ---------------------------------------------------------------- wrong variants are caught

b1, b2, t, mu, nu = adam.beta1, adam.beta2, adam.t, adam.mu, adam.nu
ti, i, g = adam.ti, adam.i, adam.g

WRONG = {
    # the newest gradient weighted by beta1 instead of 1 - beta1
    "unroll-m": (
        adam.unrolled(b1, "m", adam._grad, ti),
        b1 * adam.unrolled(b1, "m", adam._grad, ti - 1) + b1 * g[ti],
    ),
    # an off-by-one in the geometric series
    "weights-sum": ((1 - b1) * sympy.Sum(b1 ** (t - i), (i, 1, t)), 1 - b1 ** (t + 1)),
    # "m_t is an unbiased estimate of the mean": false, that is what bias correction fixes
    "mean-m": (adam.first_moment_mean, mu),
    # correcting v with beta1's factor
    "unbiased-vhat": (lambda v: adam.second_moment_mean(v) / (1 - v["beta1"] ** v["t"]), nu),
    # the first step without the square root: alpha * g / (g^2 + eps)
    "first-step": "alpha * mhat1 / (vhat1 + eps) == alpha * g / (abs(g) + eps)",
    # uncorrected step with the square root on the wrong factor
    "no-correction": "alpha * m1 / sqrt(v1) == alpha * sqrt(1 - beta1) / (1 - beta2) * sign(g)",
    # scale invariance does not survive eps > 0
    "scale-invariance": (
        "(beta1 * c * m + (1 - beta1) * c * g) / (sqrt(beta2 * c ** 2 * v + "
        "(1 - beta2) * (c * g) ** 2) + eps) == "
        "(beta1 * m + (1 - beta1) * g) / (sqrt(beta2 * v + (1 - beta2) * g ** 2) + eps)"
    ),
    # the quadratic's gradient without the factor h
    "quadratic-gradient": "grad(sum(h * theta ** 2) / 2, theta) == theta",
    # H theta is the gradient only for a symmetric H
    "rotated-gradient": "grad(theta @ (H @ theta) / 2, theta) == H @ theta",
}


@pytest.mark.parametrize("label", sorted(WRONG))
def test_wrong_variant_of_a_key_step_fails(label):
    right = check(labelled(label))
    wrong = check(Step(WRONG[label], "deliberately wrong", label=label))
    assert right.passed
    assert wrong.verdict == "fail", wrong.report()
    assert wrong.counterexample is not None


# ---------------------------------------------------------------- by hand


def test_recursion_expectation_by_hand():
    half = sympy.Rational(1, 2)
    values = {"t": sympy.Integer(1), "beta1": half, "mu": sympy.Integer(1)}
    assert adam.first_moment_mean(values) == half  # m_1 = (1 - beta1) g_1
    values["t"] = sympy.Integer(2)
    # m_2 = beta1 (1 - beta1) g_1 + (1 - beta1) g_2 = 1/4 + 1/2 = 1 - beta1^2
    assert adam.first_moment_mean(values) == sympy.Rational(3, 4)
    assert adam.corrected_first_moment_mean(values) == 1
    v = {"t": sympy.Integer(3), "beta2": sympy.Rational(9, 10), "nu": sympy.Integer(2)}
    assert adam.second_moment_mean(v) == 2 * (1 - sympy.Rational(729, 1000))


def test_unrolled_sum_at_t_equal_0_is_the_first_term_and_at_minus_1_is_empty():
    at0 = adam.unrolled(b1, "m", adam._grad, sympy.Integer(0)).doit()
    assert sympy.simplify(at0 - (1 - b1) * g[0]) == 0
    assert adam.unrolled(b1, "m", adam._grad, sympy.Integer(-1)).doit() == 0


def test_prose_numbers():
    # "0.1 after one step and 0.65 after ten"; "0.001 after one step ... 0.63 after 1000"
    assert round(1 - 0.9, 2) == 0.1 and round(1 - 0.9**10, 2) == 0.65
    assert round(1 - 0.999, 3) == 0.001 and round(1 - 0.999**1000, 2) == 0.63
    # "3.16 alpha with beta2 = 0.999, 0.45 alpha with beta2 = 0.95"
    assert round(0.1 / math.sqrt(1 - 0.999), 2) == 3.16
    assert round(0.1 / math.sqrt(1 - 0.95), 2) == 0.45


# ---------------------------------------------------------------- the figure


figure_context = UNDER_TEST.figure_context


@pytest.fixture(scope="module")
def runs():
    return adam.run_optimizers(figure_context())


def test_sgd_run_matches_its_closed_form(runs):
    # gradient descent on a diagonal quadratic: theta_i <- (1 - lr h_i) theta_i exactly
    path, losses = runs["sgd"]
    lr, (h1, h2), (x0, y0) = adam.SETTINGS["sgd"]["lr"], adam.CURVATURE, adam.START
    k = np.arange(adam.STEPS + 1)
    np.testing.assert_allclose(path[:, 0], x0 * (1 - lr * h1) ** k, rtol=1e-12)
    np.testing.assert_allclose(path[:, 1], y0 * (1 - lr * h2) ** k, rtol=1e-9)
    # the prose: 1/2 (16 * 0.965^300 + 50 * 0.75^300) ~ 1.8e-4 after 150 steps
    closed = 0.5 * (16 * 0.965**300 + 50 * 0.75**300)
    assert losses[-1] == pytest.approx(closed, rel=1e-10)
    assert round(closed, 5) == 0.00018


def test_momentum_and_adam_end_below_the_prose_bound(runs):
    assert runs["momentum"][1][-1] < 1e-5
    assert runs["adam"][1][-1] < 1e-5
    assert runs["sgd"][1][-1] > 1e-4


def test_adam_first_step_is_alpha_times_sign(runs):
    # [[first-step-sign]]: from (-4, 1) with gradient h * theta = (-4, 50) the step is
    # alpha * sign(g) = (-0.1, 0.1) up to eps
    path, _ = runs["adam"]
    np.testing.assert_allclose(path[1], [-3.9, 0.9], rtol=0, atol=1e-8)


def test_momentum_first_two_steps_by_hand(runs):
    # u1 = g0 = (-4, 50), theta1 = (-4, 1) - 0.01 u1 = (-3.96, 0.5)
    # g1 = (-3.96, 25), u2 = 0.9 u1 + g1 = (-7.56, 70), theta2 = theta1 - 0.01 u2
    path, _ = runs["momentum"]
    np.testing.assert_allclose(path[1], [-3.96, 0.5], rtol=1e-14)
    np.testing.assert_allclose(path[2], [-3.96 + 0.0756, 0.5 - 0.7], rtol=1e-14)


def test_rotation_moves_sgd_and_momentum_paths_rigidly_but_not_adam(runs):
    ctx = figure_context()
    r = adam.rotation(np.pi / 4)
    rotated = adam.run_optimizers(ctx, np.pi / 4)
    for name in ("sgd", "momentum"):
        np.testing.assert_allclose(rotated[name][0], runs[name][0] @ r.T, atol=1e-12)
        np.testing.assert_allclose(rotated[name][1], runs[name][1], rtol=1e-9, atol=1e-15)
    # the prose: Adam on the rotated valley is "still at a loss of about 0.16"
    assert round(rotated["adam"][1][-1], 2) == 0.16
    assert rotated["adam"][1][-1] > 1e4 * runs["adam"][1][-1]


def test_figure_draws():
    import matplotlib.pyplot as plt

    fig = adam.draw_comparison(figure_context())
    try:
        left, right = fig.axes[:2]
        assert len(right.get_lines()) == 4  # three optimizers and Adam on the rotated valley
    finally:
        plt.close(fig)
