"""Note 7 (normalization): every step verifies, wrong variants fail, the note's backward pass is
what `derive` prints, and the prose numbers and figure data agree with independent NumPy."""

from __future__ import annotations

import math
from pathlib import Path

import mpmath
import numpy as np
import pytest
from note_support import NoteUnderTest

from engine.notes import Step
from engine.notes.prose import sci
from engine.parser import parse_formula
from engine.printing.text import to_text

UNDER_TEST = NoteUnderTest("normalization")
nm = UNDER_TEST.module
NOTE = UNDER_TEST.note
ENV = UNDER_TEST.env
STEPS = UNDER_TEST.steps
check = UNDER_TEST.check
labelled = UNDER_TEST.labelled


def test_note_is_well_formed():
    assert NOTE.problems() == []
    assert len(STEPS) == 22
    assert [f.name for f in NOTE.figures()] == ["depth", "activations"]


@pytest.mark.parametrize("step", STEPS, ids=[s.label or str(k) for k, s in enumerate(STEPS)])
def test_every_step_verifies(step):
    result = check(step)
    assert result.passed, result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]


WRONG_FORMULAS = {
    # the mean of g forgotten: the gradient would not be orthogonal to 1
    "ln-backward": "grad(sum(g * xhat), x) == (g - xhat * mean(g * xhat)) / sqrt(var(x) + eps)",
    # the projection onto xhat forgotten
    "ln-jacobian": "jacobian(xhat, x) == (eye(n) - ones(n, n) / n) / sqrt(var(x) + eps)",
    # exact orthogonality to xhat, true only for eps = 0
    "ln-orthogonal-xhat": "sum(dx * xhat) == 0",
    # the variance gradient with 1/(n - 1) (Bessel) instead of 1/n
    "variance-gradient": "grad(var(x), x) == 2 * (x - mean(x)) / (n - 1)",
    # RMSNorm with LayerNorm's centring term
    "rms-backward": "grad(sum(g * rhat), x) == "
    "(g - mean(g) - rhat * mean(g * rhat)) / sqrt(mean(x**2) + eps)",
    # the residual's identity dropped
    "residual-jacobian": "jacobian(x + tanh(W @ x), x) == diag(1 - tanh(W @ x)**2) @ W",
    # W and diag in the wrong order: W diag(...) instead of diag(...) W
    "plain-jacobian": "jacobian(tanh(W @ x), x) == W @ diag(1 - tanh(W @ x)**2)",
    # GELU's derivative without the x phi(x) term
    "gelu-derivative": "grad(sum(g * gelu(x)), x) == g * (1 + erf(x / sqrt(2))) / 2",
    # SiLU's derivative as sigmoid alone
    "silu-derivative": "grad(sum(g * silu(x)), x) == g * sigmoid(x)",
    # SwiGLU's input gradient with untransposed weights' paths swapped
    "swiglu-input": "grad(sum(dh * (silu(u) * v)), x) == W_2.T @ (dh * v * sigmoid(u) * "
    "(1 + u * (1 - sigmoid(u)))) + W_1.T @ (dh * silu(u))",
    # the row-wise backward with whole-matrix means
    "ln-backward-rows": "grad(sum(G * Xhat), X) == (G - mean(G) - Xhat * mean(G * Xhat)) / "
    "sqrt(var(X, axis=-1, keepdims=True) + eps)",
}


@pytest.mark.parametrize("label", sorted(WRONG_FORMULAS))
def test_wrong_variant_of_a_key_step_fails(label):
    assert check(labelled(label)).passed
    wrong = check(Step(WRONG_FORMULAS[label], "deliberately wrong", label=label))
    assert wrong.verdict == "fail", wrong.report()
    assert wrong.counterexample is not None


# ---------------------------------------------------------------- the note agrees with derive


@pytest.mark.parametrize(
    ("loss", "wrt", "defs", "expected"),
    [
        (
            "sum(g * xhat)",
            "x",
            {"xhat": NOTE.defs["xhat"].replace("sigma", f"({NOTE.defs['sigma']})")},
            NOTE.defs["dx"].replace("sigma", f"({NOTE.defs['sigma']})"),
        ),
        (
            "sum(g * x / sqrt(mean(x**2) + eps))",
            "x",
            {"rhat": NOTE.defs["rhat"]},
            "(g - rhat * mean(g * rhat)) / sqrt(mean(x**2) + eps)",
        ),
    ],
)
def test_the_backward_pass_is_what_derive_prints(loss, wrt, defs, expected):
    from engine import derive

    variables = {k: v for k, v in NOTE.vars.items() if k in ("x", "g", "eps")}
    program = derive(loss, wrt=[wrt], vars=variables, defs=defs)
    line = next(ln for ln in program.to_text().splitlines() if ln.startswith(f"d{wrt} = "))
    # the same tree as the note's formula, printed by the same printer
    assert line == f"d{wrt} = " + to_text(parse_formula(expected, ENV))
    step = labelled("ln-backward" if "xhat" in defs else "rms-backward")
    rhs = parse_formula(step.sides()[1], ENV)
    assert to_text(rhs) in ("dx", to_text(parse_formula(expected, ENV)))


# ---------------------------------------------------------------- prose numbers, independently


def _numpy_jacobian_norms() -> dict[tuple[str, float], np.ndarray]:
    """The depth figure's data with hand-written NumPy Jacobians (not the engine's)."""

    def plain(x, w):
        return (1 - np.tanh(w @ x) ** 2)[:, None] * w

    return nm.jacobian_norms(plain, lambda x, w: np.eye(len(x)) + plain(x, w))


def test_prose_numbers_agree_with_hand_written_numpy():
    norms = _numpy_jacobian_norms()
    last = {k: float(v[-1]) for k, v in norms.items()}

    assert nm.NUMBERS["plain_small"] == sci(last[("plain", 0.5)])
    assert nm.NUMBERS["plain_large"] == sci(last[("plain", 2.0)])
    residual = [last[("residual", s)] for s in nm.WEIGHT_SCALES]
    assert nm.NUMBERS["residual_low"] == f"{min(residual):.0f}"
    assert nm.NUMBERS["residual_high"] == f"{max(residual):.0f}"
    # the plain network vanishes for small weights; the residual one never drops below 1 here
    assert last[("plain", 0.5)] < 1e-10
    assert min(float(v.min()) for (kind, _), v in norms.items() if kind == "residual") > 1


def test_gelu_extremes_are_at_plus_minus_sqrt_two():
    # d/dx (Phi + x phi) = phi (2 - x^2): the extremes of GELU's derivative are at x = ±sqrt(2)
    def slope(x):
        return mpmath.ncdf(x) + x * mpmath.npdf(x)

    root2 = mpmath.sqrt(2)
    assert nm.NUMBERS["gelu_peak"] == f"{float(slope(root2)):.2f}"  # 1.13
    assert nm.NUMBERS["gelu_dip"] == f"{float(slope(-root2)):.2f}"  # -0.13
    assert abs(float(nm.NUMBERS["gelu_peak_at"]) - math.sqrt(2)) < 5e-3
    assert abs(float(nm.NUMBERS["gelu_dip_at"]) + math.sqrt(2)) < 5e-3


def test_every_prose_number_appears_in_the_built_note():
    built = (Path(__file__).resolve().parent.parent / "output/md/normalization.md").read_text()
    for value in nm.NUMBERS.values():
        assert value in built, value


# ---------------------------------------------------------------- the figures


figure_context = UNDER_TEST.figure_context


def test_the_figure_jacobians_are_the_hand_written_ones():
    engine_norms = nm._networks(figure_context())
    hand = _numpy_jacobian_norms()
    for key, values in hand.items():
        np.testing.assert_allclose(engine_norms[key], values, rtol=1e-10)


def test_figures_draw():
    import matplotlib.pyplot as plt

    ctx = figure_context()
    for draw, lines in ((nm.draw_depth, (3, 3)), (nm.draw_activations, (4, 5))):
        fig = draw(ctx)
        try:
            assert tuple(len(ax.get_lines()) for ax in fig.axes) == lines
        finally:
            plt.close(fig)
