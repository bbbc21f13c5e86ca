"""Note 11 (outlook): every step verifies, wrong variants fail, the closed form agrees with
matrix powers, and the prose numbers and figure data agree with hand-written NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from note_support import NoteUnderTest

from engine.notes import Step
from engine.notes.prose import sci

UNDER_TEST = NoteUnderTest("outlook")
ol = UNDER_TEST.module
NOTE = UNDER_TEST.note
ENV = UNDER_TEST.env
STEPS = UNDER_TEST.steps
check = UNDER_TEST.check
labelled = UNDER_TEST.labelled


def test_note_is_well_formed():
    assert NOTE.problems() == []
    assert NOTE.order == 11
    assert len(STEPS) == 1 + ol.STEPS_K
    assert [f.name for f in NOTE.figures()] == ["rates"]


@pytest.mark.parametrize("step", STEPS, ids=[s.label or str(k) for k, s in enumerate(STEPS)])
def test_every_step_verifies(step):
    result = check(step)
    assert result.passed, result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]


WRONG_FORMULAS = {
    # the Jacobian not transposed in the gradient: J (J^T ...) has the wrong shape; use J^T J
    "linear-gradient": "grad(sum((f0 + J @ (theta - theta0) - y)**2) / 2, theta) == J.T @ (f0 - y)",
    # the residual with K = J^T J's counterpart J J^T replaced by the identity
    "residual-1": "f1 - y == (1 - eta) * r0",
    # one power too many
    "residual-3": "f3 - y == r4",
    # the step size counted twice
    "residual-2": "f2 - y == (eye(n) - 2 * eta * K) @ r1",
}


@pytest.mark.parametrize("label", sorted(WRONG_FORMULAS))
def test_wrong_variant_of_a_key_step_fails(label):
    assert check(labelled(label)).passed
    wrong = check(Step(WRONG_FORMULAS[label], "deliberately wrong", label=label))
    assert wrong.verdict == "fail", wrong.report()
    assert wrong.counterexample is not None


def test_the_closed_form_is_a_matrix_power():
    # r_k = (I - eta K)^k r_0 with numpy's matrix_power, against the note's recursion
    rng = np.random.default_rng(0)
    jac = rng.standard_normal((5, 9))
    f0, y, theta0 = rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal(9)
    eta = 0.05
    values = {"J": jac, "f0": f0, "y": y, "theta0": theta0, "eta": eta}
    ctx = figure_context()
    big_k = jac @ jac.T
    for k in range(1, ol.STEPS_K + 1):
        power = np.linalg.matrix_power(np.eye(5) - eta * big_k, k) @ (f0 - y)
        np.testing.assert_allclose(ctx.evaluate(f"r{k}", values), power, rtol=1e-12)
        np.testing.assert_allclose(ctx.evaluate(f"f{k} - y", values), power, rtol=1e-10)


def _hand_gradient(theta, J, theta0, f0, y):
    return J.T @ (f0 + J @ (theta - theta0) - y)


def test_prose_numbers_agree_with_hand_written_numpy():
    jac, lam_max = ol.jacobian_for_figure()
    assert lam_max == pytest.approx(np.linalg.svd(jac, compute_uv=False).max() ** 2)

    stable = ol.residual_norms(_hand_gradient, jac, ol.RATES[1] / lam_max)
    unstable = ol.residual_norms(_hand_gradient, jac, ol.RATES[2] / lam_max)
    assert ol.NUMBERS["stable"] == sci(stable[-1])
    assert ol.NUMBERS["unstable"] == sci(unstable[-1])
    assert stable[-1] < stable[0] < unstable[-1]  # below 2/lambda_max it converges, above not
    built = (Path(__file__).resolve().parent.parent / "output/md/outlook.md").read_text()
    for value in ol.NUMBERS.values():
        assert value in built, value


figure_context = UNDER_TEST.figure_context


def test_figure_data_is_the_hand_written_descent_and_draws():
    import matplotlib.pyplot as plt

    ctx = figure_context()
    rhs = ctx.step("linear-gradient")[1]
    jac, lam_max = ol.jacobian_for_figure()
    for r in ol.RATES:
        engine = ol.residual_norms(lambda **v: ctx.evaluate(rhs, v), jac, r / lam_max)
        hand = ol.residual_norms(_hand_gradient, jac, r / lam_max)
        np.testing.assert_allclose(engine, hand, rtol=1e-9)
    fig = ol.draw_rates(ctx)
    try:
        assert len(fig.axes[0].get_lines()) == len(ol.RATES)
    finally:
        plt.close(fig)
