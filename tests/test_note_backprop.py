"""Note 6 (backpropagation): every step verifies, wrong variants fail, prose numbers and the
figure's data agree with hand-written NumPy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from note_support import NoteUnderTest

from engine.notes import Step
from engine.notes.prose import sci

UNDER_TEST = NoteUnderTest("backprop")
bp = UNDER_TEST.module
NOTE = UNDER_TEST.note
ENV = UNDER_TEST.env
STEPS = UNDER_TEST.steps
check = UNDER_TEST.check
labelled = UNDER_TEST.labelled


def test_note_is_well_formed():
    assert NOTE.problems() == []
    assert NOTE.order == 6
    assert len(STEPS) == 9
    assert [f.name for f in NOTE.figures()] == ["bptt"]


@pytest.mark.parametrize("step", STEPS, ids=[s.label or str(k) for k, s in enumerate(STEPS)])
def test_every_step_verifies(step):
    result = check(step)
    assert result.passed, result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]


WRONG_FORMULAS = {
    # the classic slips of a hand-written backward pass
    "grad-w2": "grad(L, W2) == H.T @ (F - Y)",  # the 1/B of the mean forgotten
    "grad-w1": "grad(L, W1) == X.T @ (E @ W2.T)",  # the tanh derivative forgotten
    "grad-x": "grad(L, X) == D @ W1",  # W1 not transposed: the shapes differ, an error
    "vjp-left": "grad(sum(U * (M @ N)), M) == (M @ N) @ N.T",  # the upstream gradient lost
    "vjp-tanh": "grad(sum(G * tanh(A)), A) == G * (1 - tanh(A))",
    "vjp-mse": "grad(sum((Z - Y)**2) / (2 * B), Z) == (Z - Y)",
    # BPTT with the factors in the wrong order (oldest first)
    "bptt": "jacobian(h3, h0) == diag(1 - h1**2) @ W @ diag(1 - h2**2) @ W @ diag(1 - h3**2) @ W",
    "rnn-step": "jacobian(h1, h0) == W @ diag(1 - h1**2)",
}


@pytest.mark.parametrize("label", sorted(WRONG_FORMULAS))
def test_wrong_variant_of_a_key_step_fails(label):
    assert check(labelled(label)).passed
    wrong = check(Step(WRONG_FORMULAS[label], "deliberately wrong", label=label))
    assert not wrong.passed, wrong.report()
    if label != "grad-x":
        assert wrong.verdict == "fail" and wrong.counterexample is not None


def _hand_norms() -> dict[float, np.ndarray]:
    def step(h, a, w):
        return (1 - np.tanh(w @ h + a) ** 2)[:, None] * w

    return bp.rnn_gradient_norms(step)


def test_prose_numbers_agree_with_hand_written_numpy():
    norms = _hand_norms()

    for scale in bp.WEIGHT_SCALES:
        key = f"at_{scale:g}".replace(".", "_")
        assert bp.NUMBERS[key] == sci(float(norms[scale][-1]))
    assert norms[0.5][-1] < 1e-10  # vanishing for small weights
    built = (Path(__file__).resolve().parent.parent / "output/md/backprop.md").read_text()
    for value in bp.NUMBERS.values():
        assert value in built, value


figure_context = UNDER_TEST.figure_context


def test_figure_data_is_the_hand_written_product_and_draws():
    import matplotlib.pyplot as plt

    ctx = figure_context()
    rhs = ctx.step("rnn-step")[1]
    engine = bp.rnn_gradient_norms(lambda h, a, w: ctx.evaluate(rhs, {"h0": h, "a1": a, "W": w}))
    for scale, values in _hand_norms().items():
        np.testing.assert_allclose(engine[scale], values, rtol=1e-9)
    fig = bp.draw_bptt(ctx)
    try:
        assert len(fig.axes[0].get_lines()) == len(bp.WEIGHT_SCALES)
    finally:
        plt.close(fig)
