"""Note 3 (attention): every step verifies, wrong variants of key steps are caught, figure data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from note_support import NoteUnderTest

from engine.notes import Step

UNDER_TEST = NoteUnderTest("attention")
att = UNDER_TEST.module
NOTE = UNDER_TEST.note
ENV = UNDER_TEST.env
STEPS = UNDER_TEST.steps
check = UNDER_TEST.check
labelled = UNDER_TEST.labelled


def test_note_is_well_formed():
    assert NOTE.problems() == []
    assert NOTE.order == 3
    assert len(STEPS) == 20
    assert [f.name for f in NOTE.figures()] == ["dilution"]


@pytest.mark.parametrize("step", STEPS, ids=[s.label or str(k) for k, s in enumerate(STEPS)])
def test_every_step_verifies(step):
    result = check(step)
    assert result.passed, result.report()
    # both routes ran: exact and numeric
    assert [c.method for c in result.checks] == ["exact", "numeric"]


# ---------------------------------------------------------------- wrong variants are caught

WRONG_FORMULAS = {
    # dK with dS instead of dS.T: the classic transposition slip
    "grad-k": "grad(sum(dO * O), K) == dS @ Q / sqrt(d)",
    # dQ without the 1/sqrt(d) of the scores
    "grad-q": "grad(sum(dO * O), Q) == dS @ K",
    # dV with P instead of P.T
    "grad-v": "grad(sum(dO * O), V) == P @ dO",
    # softmax backward that forgets the row-mean subtraction
    "local-softmax": "grad(sum(G * A), Z) == A * G",
    # dilution counting n distractors instead of n - 1
    "dilution": "sum(t * softmax(Delta * t)) == exp(Delta) / (exp(Delta) + n)",
    # FlashAttention's row sum with V in place of O
    "flash-rowsum": "sum(P * dP, axis=-1, keepdims=True) == sum(dO * V, axis=-1, keepdims=True)",
    # the mask as an additive, not multiplicative, effect on the weights
    "mask-multiplies": "softmax(Z + M) == softmax(Z) + M",
}


@pytest.mark.parametrize("label", sorted(WRONG_FORMULAS))
def test_wrong_variant_of_a_key_step_fails(label):
    right = check(labelled(label))
    wrong = check(Step(WRONG_FORMULAS[label], "deliberately wrong", label=label))
    assert right.passed
    assert wrong.verdict == "fail", wrong.report()
    assert wrong.counterexample is not None


def test_wrong_variance_is_caught():
    # Var(q.k) is d, not 1: the unscaled score claimed to have unit variance
    wrong = check(Step((att.score_variance, sympy.Integer(1)), "wrong", label="x"))
    assert wrong.verdict == "fail"
    # and the scaled score does not have variance d
    wrong = check(Step((att.scaled_score_variance, att.d), "wrong", label="y"))
    assert wrong.verdict == "fail"


def test_dropping_the_causal_gate_is_caught():
    i, j = att.i, att.j
    ungated = Step((att.masked_weight(i, j), att.prefix_softmax(i, j)), "wrong", label="x")
    result = check(ungated)
    assert result.verdict == "fail"
    # the counterexample is a future position j > i, where the masked weight is 0
    assert result.counterexample.inputs["j"] > result.counterexample.inputs["i"]
    assert result.counterexample.lhs == 0


def test_unmasked_future_weight_is_caught():
    # without the gate the future gets weight: sum over j > i of the plain softmax is not 0
    i, j, k, n = att.i, att.j, att.k, att.n
    plain = sympy.exp(att.s_[i, j]) / sympy.Sum(sympy.exp(att.s_[i, k]), (k, 0, n - 1))
    result = check(Step((sympy.Sum(plain, (j, i + 1, n - 1)), sympy.Integer(0)), "wrong"))
    assert result.verdict == "fail"


# ---------------------------------------------------------------- helpers, by hand


def test_expectation_helper_by_hand():
    q0, k0, q1 = sympy.symbols("q0 k0 q1")
    xs = [q0, k0, q1]
    assert att.expect(q0 * k0, xs) == 0
    assert att.expect(q0**2 * k0**2, xs) == 1
    assert att.expect((q0 * k0 + q1) ** 2, xs) == 2  # E[q0^2 k0^2] + E[q1^2], cross term 0
    assert att.expect(3 + q0**2, xs) == 4
    with pytest.raises(ValueError):
        att.expect(q0**4, xs)  # the fourth moment is not assumed


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_variance_agrees_with_sympy_stats_for_gaussians(dim):
    from sympy.stats import Normal, variance

    q = [Normal(f"q{k}", 0, 1) for k in range(dim)]
    k = [Normal(f"k{k}", 0, 1) for k in range(dim)]
    dot = sum(a * b for a, b in zip(q, k, strict=True))
    assert variance(dot) == dim
    assert att.score_variance({"d": sympy.Integer(dim)}) == dim
    assert att.scaled_score_variance({"d": sympy.Integer(dim)}) == 1


def test_visible_is_the_causal_iverson_bracket():
    assert att.Visible(2, 1) == 1  # key 1 is visible from query 2
    assert att.Visible(1, 1) == 1  # a position sees itself
    assert att.Visible(1, 2) == 0  # the future is hidden
    assert sympy.latex(att.Visible(att.i, att.j)) == r"[\,j \le i\,]"


def test_prose_numbers():
    # "8 for d = 64, about 11 for d = 128"; "e^8 ~ 3000"
    assert math.sqrt(64) == 8 and round(math.sqrt(128)) == 11
    assert round(math.exp(8), -3) == 3000
    # "a gap of 4 gives 95% among 4 positions, 5% among 1000 and 0.05% among 100000"
    w = [math.exp(4) / (math.exp(4) + n - 1) for n in (4, 1000, 100000)]
    assert round(w[0], 2) == 0.95 and round(w[1], 2) == 0.05 and round(w[2], 4) == 0.0005
    # "every tenfold increase costs log 10 ~ 2.3"
    assert round(math.log(10), 1) == 2.3


# ---------------------------------------------------------------- the figure


figure_context = UNDER_TEST.figure_context


def test_figure_formulas_match_the_softmax_and_hand_values():
    ctx = figure_context()
    lhs, rhs = ctx.step("dilution")
    for n, s in ((2, 0.0), (1000, 4.0), (5000, 8.0)):
        t = np.zeros(n)
        t[n // 2] = 1.0
        softmax_side = float(ctx.evaluate(lhs, {"Delta": s, "t": t}))
        closed = float(ctx.evaluate(rhs, {"Delta": s}, {"n": n}))
        assert closed == pytest.approx(math.exp(s) / (math.exp(s) + n - 1), rel=1e-13)
        assert softmax_side == pytest.approx(closed, rel=1e-12)
    needed = ctx.formula(att.NEEDED_SCORE)
    assert float(ctx.evaluate(needed, {"w": 0.5}, {"n": 2})) == pytest.approx(0.0, abs=1e-15)
    assert float(ctx.evaluate(needed, {"w": 0.9}, {"n": 10})) == pytest.approx(
        math.log(9) + math.log(9), rel=1e-13
    )


def test_figure_draws():
    import matplotlib.pyplot as plt

    fig = att.draw_dilution(figure_context())
    try:
        left, right = fig.axes
        assert len(left.get_lines()) == 8  # four curves and four sets of dots
        assert len(right.get_lines()) == 3
    finally:
        plt.close(fig)
