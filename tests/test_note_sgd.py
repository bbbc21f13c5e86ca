"""Note 5 (SGD, momentum, AdamW): every step verifies, wrong variants fail, and the prose's
claims (variance with replacement, the convergence region, Polyak's rate, the effect of
weight decay) are pinned by independent computations with fractions and NumPy."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from note_support import NoteUnderTest

from engine.notes import Step

UNDER_TEST = NoteUnderTest("sgd")
sgd = UNDER_TEST.module
NOTE = UNDER_TEST.note
STEPS = UNDER_TEST.steps
check = UNDER_TEST.check
ROOT = Path(__file__).resolve().parent.parent


def test_note_is_well_formed():
    assert NOTE.problems() == []
    assert len(STEPS) == 12
    assert [f.name for f in NOTE.figures()] == ["rates"]


@pytest.mark.parametrize("step", STEPS, ids=[s.label or str(k) for k, s in enumerate(STEPS)])
def test_every_step_verifies(step):
    result = check(step)
    assert result.passed, result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]


kappa, rho, eta, h = sgd.kappa, sgd.rho, sgd.eta, sgd.h
WRONG = {
    # the variance without the finite-population correction
    "sgd-variance": (
        sgd.minibatch_variance,
        lambda v: sgd.variance_formula(v) * (sgd.DATA - 1) / (sgd.DATA - v["B"]),
    ),
    # the trace without the momentum term
    "hb-trace": (sgd.hb_trace, 1 - eta * h),
    # the determinant of gradient descent
    "hb-det": (sgd.hb_det, 1 - eta * h),
    # the stability edge of plain gradient descent
    "hb-at-minus-one": (sgd.hb_charpoly_at(-1), 2 - eta * h),
    # Polyak's momentum without the square
    "polyak-flat": (sgd.polyak_trace_at("flat"), 2 * (sympy.sqrt(kappa) - 1) ** 2),
    # "L2 inside Adam decays like AdamW": false
    "l2-lambda-free": (sgd.l2_run, lambda v: (1 - v["alpha"] * v["lam"]) ** v["t"] * v["theta0"]),
    # AdamW's decay without the step size
    "adamw-idle": (sgd.adamw_run, (1 - sgd.lam) ** sgd.t * sgd.theta0),
    # clipping each tensor by its own norm does not give global norm tau
    "clip-norm": "sqrt(sum((tau / sqrt(sum(g ** 2)) * g) ** 2) + "
    "sum((tau / sqrt(sum(W ** 2)) * W) ** 2)) == tau",
}


@pytest.mark.parametrize("label", sorted(WRONG))
def test_wrong_variant_of_a_key_step_fails(label):
    wrong = check(Step(WRONG[label], "deliberately wrong", label=label))
    assert wrong.verdict == "fail", wrong.report()


# ---------------------------------------------------------------- minibatches


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(-9, 9), min_size=2, max_size=5), st.data())
def test_minibatch_variance_with_and_without_replacement(grads, data):
    n = len(grads)
    size = data.draw(st.integers(1, n))
    g = [Fraction(x) for x in grads]
    mean = sum(g) / n
    sigma2 = sum((x - mean) ** 2 for x in g) / n

    def moments(batches):
        means = [sum(g[i] for i in b) / size for b in batches]
        centre = sum(means) / len(means)
        return centre, sum((x - centre) ** 2 for x in means) / len(means)

    centre, var = moments(list(itertools.combinations(range(n), size)))
    assert centre == mean
    assert var == (sigma2 / size) * Fraction(n - size, n - 1)
    centre, var = moments(list(itertools.product(range(n), repeat=size)))  # with replacement
    assert centre == mean
    assert var == sigma2 / size


# ---------------------------------------------------------------- heavy ball


def test_convergence_region_matches_the_eigenvalues():
    for rho_ in np.linspace(0.0, 0.95, 20):
        for eh in np.linspace(0.01, 4.5, 90):
            a = np.array(sgd.heavy_ball_matrix({"eta": eh, "h": 1.0, "rho": rho_}), dtype=float)
            radius = np.max(np.abs(np.linalg.eigvals(a)))
            edge = 2 * (1 + rho_)
            if abs(eh - edge) > 1e-6:
                assert (radius < 1) == (eh < edge), (rho_, eh, radius)


def test_polyak_rate_is_flat_across_the_spectrum_and_beats_gradient_descent():
    k = float(sgd.KAPPA)
    step, momentum = (float(x) for x in sgd.polyak(sympy.Integer(sgd.KAPPA)))
    rate = (math.sqrt(k) - 1) / (math.sqrt(k) + 1)
    assert math.sqrt(momentum) == pytest.approx(rate, rel=1e-12)
    for curv in np.linspace(1.0, k, 200):
        assert sgd.spectral_radius(step, curv, momentum) == pytest.approx(rate, rel=1e-6)
    gd = [sgd.spectral_radius(2 / (1 + k), c, 0.0) for c in np.linspace(1.0, k, 200)]
    assert max(gd) == pytest.approx((k - 1) / (k + 1), rel=1e-9)
    # the prose's step counts: the smallest s with rate^s <= 1e-3
    assert sgd.STEPS_HB == min(s for s in range(1, 10**4) if rate**s <= 1e-3)
    assert sgd.STEPS_GD == min(s for s in range(1, 10**4) if ((k - 1) / (k + 1)) ** s <= 1e-3)


def test_prose_numbers():
    md = (ROOT / "output" / "md" / "sgd.md").read_text()
    k = Fraction(sgd.KAPPA)
    assert f"{float((k - 1) / (k + 1)):.3f}" in md
    assert f"{(math.sqrt(sgd.KAPPA) - 1) / (math.sqrt(sgd.KAPPA) + 1):.3f}" in md
    assert f"{sgd.STEPS_HB} steps against {sgd.STEPS_GD}" in md


# ---------------------------------------------------------------- weight decay


def _adam_float(theta0, lam, steps, decoupled, alpha=0.01, b1=0.9, b2=0.999, eps=0.0, g=0.0):
    """Adam / AdamW in plain floats, written independently of the note."""
    th, m, v = theta0, 0.0, 0.0
    for k in range(1, steps + 1):
        grad = g if decoupled else g + lam * th
        m, v = b1 * m + (1 - b1) * grad, b2 * v + (1 - b2) * grad**2
        mh, vh = m / (1 - b1**k), v / (1 - b2**k)
        upd = mh / (math.sqrt(vh) + eps) if vh > 0 else 0.0
        th = th - alpha * upd - (alpha * lam * th if decoupled else 0.0)
    return th


def test_l2_inside_adam_ignores_lambda_on_idle_parameters_but_adamw_does_not():
    runs = [_adam_float(1.0, lam, 50, decoupled=False) for lam in (1e-4, 1e-2, 1.0)]
    assert max(runs) - min(runs) < 1e-12
    # about alpha per step, whatever lambda is (|m_hat| <= sqrt(v_hat), so at most alpha)
    assert 0.8 * 50 * 0.01 < 1.0 - runs[0] <= 50 * 0.01
    adamw = [_adam_float(1.0, lam, 50, decoupled=True) for lam in (1e-2, 1.0)]
    assert adamw[0] == pytest.approx((1 - 0.01 * 1e-2) ** 50)
    assert adamw[1] == pytest.approx((1 - 0.01) ** 50)


def test_note_adam_runs_agree_with_floats():
    values = {
        "alpha": sympy.Rational(1, 10),
        "beta1": sympy.Rational(9, 10),
        "beta2": sympy.Rational(99, 100),
        "theta0": sympy.Integer(2),
        "lam": sympy.Rational(1, 3),
        "t": sympy.Integer(5),
    }
    ours = float(sgd.l2_run(values))
    theirs = _adam_float(2.0, 1 / 3, 5, decoupled=False, alpha=0.1, b1=0.9, b2=0.99)
    assert ours == pytest.approx(theirs, rel=1e-12)
    ours = float(sgd.adamw_run(values))
    theirs = _adam_float(2.0, 1 / 3, 5, decoupled=True, alpha=0.1, b1=0.9, b2=0.99)
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_both_tuned_methods_diverge_just_past_kappa_plus_one():
    # the figure's caption: GD with step 2/(1 + kappa) and Polyak's heavy ball both have
    # their stability edge at h = kappa + 1 (the Jury value at -1 crosses zero there)
    k = float(sgd.KAPPA)
    step, momentum = (float(x) for x in sgd.polyak(sympy.Integer(sgd.KAPPA)))
    for eta_, rho_ in ((2 / (1 + k), 0.0), (step, momentum)):
        assert 2 * (1 + rho_) / eta_ == pytest.approx(k + 1, rel=1e-12)
        assert sgd.spectral_radius(eta_, (k + 1) * (1 - 1e-6), rho_) < 1
        assert sgd.spectral_radius(eta_, (k + 1) * (1 + 1e-6), rho_) > 1


def test_every_decimal_in_the_prose_is_computed():
    from prose_decimals import prose_decimals

    md = (ROOT / "output" / "md" / "sgd.md").read_text()
    computed = {f"{sgd.HB_RATE:.3f}", f"{sgd.GD_RATE:.3f}"}
    assert prose_decimals(md) <= computed, prose_decimals(md) - computed
