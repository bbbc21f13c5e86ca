"""Note 8 (positional encodings): every step verifies, wrong variants fail, the prose numbers
and figure data agree with hand-written NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from note_support import NoteUnderTest

from engine.notes import Step

UNDER_TEST = NoteUnderTest("positional")
pe = UNDER_TEST.module
NOTE = UNDER_TEST.note
ENV = UNDER_TEST.env
STEPS = UNDER_TEST.steps
check = UNDER_TEST.check
labelled = UNDER_TEST.labelled


def test_note_is_well_formed():
    assert NOTE.problems() == []
    assert len(STEPS) == 6
    assert [f.name for f in NOTE.figures()] == ["decay"]


@pytest.mark.parametrize("step", STEPS, ids=[s.label or str(k) for k, s in enumerate(STEPS)])
def test_every_step_verifies(step):
    result = check(step)
    assert result.passed, result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]


WRONG_FORMULAS = {
    # the rotation's sign slip: sin(a + b) with a minus
    "shift-sin": "sin(omega * (i + r)) == cos(omega * r) * sin(omega * i) - "
    "sin(omega * r) * cos(omega * i)",
    "shift-cos": "cos(omega * (i + r)) == sin(omega * r) * sin(omega * i) + "
    "cos(omega * r) * cos(omega * i)",
    # the dot product of encodings as a function of i + r instead of r
    "sinusoidal-dot": "sum(sin(omega * i) * sin(omega * (i + r)) + cos(omega * i) * "
    "cos(omega * (i + r))) == sum(cos(omega * (2 * i + r)))",
    # RoPE's relative angle with the wrong sign: i - j instead of j - i
    "rope-relative": "sum(u1 * v1 + u2 * v2) == sum(a * cos(phi) - b * sin(phi))",
    # a rotation that does not keep lengths (a shear)
    "rope-norm": "(q1 + i * q2)**2 + q2**2 == q1**2 + q2**2",
    # ALiBi's bias added after the softmax
    "alibi-gate": "softmax(S - lam * D) == softmax(S) - lam * D",
}


@pytest.mark.parametrize("label", sorted(WRONG_FORMULAS))
def test_wrong_variant_of_a_key_step_fails(label):
    assert check(labelled(label)).passed
    wrong = check(Step(WRONG_FORMULAS[label], "deliberately wrong", label=label))
    assert wrong.verdict == "fail", wrong.report()
    assert wrong.counterexample is not None


def test_frequencies_and_slopes_are_the_papers():
    theta = pe.frequencies(8)
    np.testing.assert_allclose(theta, [1.0, 10000**-0.25, 10000**-0.5, 10000**-0.75])
    np.testing.assert_allclose(pe.alibi_slopes(8), [2.0**-k for k in range(1, 9)])


def _hand_curve(distances: np.ndarray) -> np.ndarray:
    """mean_l cos(t theta_l) by hand: RoPE's score of q = k = (1, 0) in every pair, over h."""
    theta = pe.frequencies()
    return np.cos(np.outer(distances, theta)).mean(axis=1)


def test_prose_numbers_agree_with_hand_written_numpy():
    curve = _hand_curve(np.arange(0, pe.MAX_DISTANCE + 1))
    assert pe.NUMBERS["half_distance"] == str(int(np.argmax(curve < 0.5)))
    assert pe.NUMBERS["mean_far"] == f"{curve[1000:].mean():.2f}"
    assert pe.NUMBERS["fastest_period"] == f"{2 * np.pi:.1f}"  # theta_0 = 1
    slowest = 2 * np.pi * 10000 ** (1 - 2 / pe.HEAD_DIM)
    assert pe.NUMBERS["slowest_period"] == f"{slowest:,.0f}".replace(",", "\\,")
    built = (Path(__file__).resolve().parent.parent / "output/md/positional.md").read_text()
    for value in pe.NUMBERS.values():
        assert value in built, value


figure_context = UNDER_TEST.figure_context


def test_the_figure_curve_is_the_hand_written_one_and_the_rotated_score():
    ctx = figure_context()
    lhs, rhs = ctx.step("rope-relative")
    distances = np.arange(0, 300)
    engine = pe.mean_rope_score(lambda **v: ctx.evaluate(rhs, v), distances)
    np.testing.assert_allclose(engine, _hand_curve(distances), atol=1e-12)
    # and the left side (rotate, then dot) at absolute positions 7 and 7 + t agrees
    theta = pe.frequencies()
    ones, zeros = np.ones_like(theta), np.zeros_like(theta)
    for t in (0.0, 5.0, 250.0):
        values = {"q1": ones, "q2": zeros, "k1": ones, "k2": zeros, "theta": theta}
        rotated = float(ctx.evaluate(lhs, {**values, "i": 7.0, "j": 7.0 + t})) / len(theta)
        assert rotated == pytest.approx(_hand_curve(np.array([t]))[0], abs=1e-12)


def test_figure_draws():
    import matplotlib.pyplot as plt

    fig = pe.draw_decay(figure_context())
    try:
        left, right = fig.axes
        assert len(left.get_lines()) == 2  # the curve and the zero line
        assert len(right.get_lines()) == pe.ALIBI_HEADS
    finally:
        plt.close(fig)
