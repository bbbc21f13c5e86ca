"""Note 'transformer' (multi-head attention and the block): every step verifies, wrong variants
fail, the backward pass is exactly what `derive` prints, the counts and the figure agree with
independent arithmetic and NumPy."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sympy
from note_support import NoteUnderTest

from engine.notes import Step
from engine.parser import parse_formula
from engine.printing.latex import latex_name, to_latex
from engine.verify.exact import sharing

UNDER_TEST = NoteUnderTest("transformer")
tf = UNDER_TEST.module
NOTE = UNDER_TEST.note
ENV = UNDER_TEST.env
STEPS = UNDER_TEST.steps
check = UNDER_TEST.check
labelled = UNDER_TEST.labelled
GRADIENT_STEPS = [s for s in STEPS if s.label.startswith("grad-")]
OTHER_STEPS = [s for s in STEPS if not s.label.startswith("grad-")]


def test_note_is_well_formed():
    assert NOTE.problems() == []
    assert len(STEPS) == 17
    assert len(GRADIENT_STEPS) == len(tf.WRT) == 11
    assert [f.name for f in NOTE.figures()] == ["mask"]
    assert dict(NOTE.sizes) == {"d": "h * dh"}


@pytest.mark.parametrize("step", OTHER_STEPS, ids=[s.label for s in OTHER_STEPS])
def test_every_step_verifies(step):
    result = check(step)
    assert result.passed, result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]


def test_every_gradient_step_verifies():
    # the 11 gradients share the exact route's work (as `Program.verify` does); each claim is
    # still compared on its own
    with sharing():
        results = {s.label: check(s) for s in GRADIENT_STEPS}
    for label, result in results.items():
        assert result.passed, f"{label}: {result.report()}"
        assert [c.method for c in result.checks] == ["exact", "numeric"]


# ---------------------------------------------------------------- the note is derive's program


def test_backward_pass_is_what_derive_prints():
    program = tf.backward_program(verify=True)
    assert program.verified, program.verification_line()
    assert tf.program_text() == program.to_text()
    # every line of the program is a definition of the note, every gradient a checked step
    lines = dict(line.split(" = ", 1) for line in program.to_text().split("\n"))
    names = program.gradient_names()
    for a in program.steps:
        assert NOTE.defs[a.name] == lines[a.name]
    steps = {s.label: s for s in GRADIENT_STEPS}
    for w, _ in program.gradients:
        lhs, rhs = steps[f"grad-{w.lower()}"].sides()
        assert lhs == f"grad({tf.LOSS}, {w})"
        assert rhs == lines[names[w]]


def _strip_layout(latex: str) -> str:
    for token in (
        r"\begin{aligned}[t]",
        r"\begin{aligned}",
        r"\end{aligned}",
        "&",
        r"\\",
        " ",
        "\n",
    ):
        latex = latex.replace(token, "")
    return latex


def _program_rows() -> dict[str, str]:
    rows = tf.PROGRAM.to_latex().split(" \\\\\n")
    rows[0] = rows[0].removeprefix("\\begin{aligned}\n")
    rows[-1] = rows[-1].removesuffix("\n\\end{aligned}")
    return dict(row.split(" &= ", 1) for row in rows)


def test_printed_backward_pass_is_derive_latex_up_to_line_breaks():
    rows = _program_rows()
    blocks = [item for s in NOTE.sections for item in s.items if isinstance(item, str)]
    shown = [b for b in blocks if b.startswith("$$")]
    shown_rows = {}
    for block in shown:
        body = block.removeprefix("$$\n\\begin{aligned}\n").removesuffix("\n\\end{aligned}\n$$")
        for row in body.split(" \\\\\n\\mathrm"):
            name, _, rhs = row.partition(" &\\mathrel{:=} ")
            shown_rows[_strip_layout(name).removeprefix("\\mathrm")] = rhs
    for a in tf.PROGRAM.steps:
        key = _strip_layout(latex_name(a.name)).removeprefix("\\mathrm")
        assert _strip_layout(shown_rows[key]) == _strip_layout(rows[latex_name(a.name)]), a.name
    names = tf.PROGRAM.gradient_names()
    for step in GRADIENT_STEPS:
        w = next(w for w in tf.WRT if step.label == f"grad-{w.lower()}")
        lhs = to_latex(parse_formula(step.sides()[0], ENV))
        printed = rows[latex_name(names[w])]
        assert _strip_layout(step.display) == _strip_layout(f"{lhs}={printed}")


def test_long_sums_are_broken_term_by_term():
    long_sum = next(a.expr for a in tf.PROGRAM.steps if a.name == "dX2")
    broken = tf.broken_latex(long_sum)
    # G, then the LayerNorm backward over s2, its numerator's three terms one per line
    assert [sign for sign, _ in tf.terms(long_sum)] == ["+", "+"]
    assert broken.count(r"\\") == len(tf.terms(long_sum)) - 1 + 2 == 3
    assert r"\frac{\begin{aligned} & \mathrm{d}A_{2} \\ & - " in broken
    assert tf.broken_fraction(r"- \frac{a - \frac{b}{c} + d}{w}") == (
        r"- \frac{\begin{aligned} & a \\ & - \frac{b}{c} \\ & + d \end{aligned}}{w}"
    )
    assert tf.broken_fraction(r"\frac{a}{w} + x") == r"\frac{a}{w} + x"
    assert " ".join(tf.split_top_level(to_latex(long_sum))) == to_latex(long_sum)
    assert tf.split_top_level(r"a + \frac{b - c}{d} - \left(e + f\right)") == [
        "a",
        r"+ \frac{b - c}{d}",
        r"- \left(e + f\right)",
    ]
    short = next(a.expr for a in tf.PROGRAM.steps if a.name == "dA1")
    assert tf.broken_latex(short) == to_latex(short)


# ---------------------------------------------------------------- wrong variants are caught

WRONG_FORMULAS = {
    # heads concatenated without moving the head axis: tokens and heads mixed up
    "heads-sum": "reshape(Z, (n, d)) @ reshape(Wh, (d, d)) == sum(Z @ Wh, axis=0)",
    # the weight split into heads along the wrong axis
    "heads-split-weights": "Q == H1 @ reshape(Wq, (h, d, dh))",
    # the unmasked softmax cut to the past: its rows no longer sum to one
    "mask-rows": "sum(softmax(S) * tril(n), axis=-1) == ones(h, n)",
    # dWo from the upstream gradient alone, forgetting the MLP path through X2
    "grad-wo": f"grad({tf.LOSS}, Wo) == O.T @ G",
}


@pytest.mark.parametrize("label", sorted(WRONG_FORMULAS))
def test_wrong_variant_of_a_key_step_fails(label):
    wrong = check(Step(WRONG_FORMULAS[label], "deliberately wrong", label=label))
    assert wrong.verdict == "fail", wrong.report()
    assert wrong.counterexample is not None


def test_wrong_counts_fail():
    h, dh, n, L, b = (sympy.Symbol(x) for x in ("h", "dh", "n", "L", "b"))
    for side, wrong in (
        (tf.weight_count, 8 * (h * dh) ** 2),  # the MLP counted once
        (tf.forward_multiply_adds, 12 * n * (h * dh) ** 2),  # attention scores forgotten
        (tf.kv_cache_bytes, L * h * n * dh * b),  # keys only
    ):
        result = check(Step((side, wrong), "deliberately wrong", label="x"))
        assert result.verdict == "fail", result.report()


# ---------------------------------------------------------------- counts by hand


def test_counts_by_hand():
    one = {"h": 1, "dh": 1, "n": 1}
    # d = 1, m = 4: Wq Wk Wv Wo are 1 each, W1 and W2 4 each
    assert tf.weight_count(one) == 12
    # three projections, QK^T, PV, Wo (1 each), W1 and W2 (4 each)
    assert tf.forward_multiply_adds(one) == 3 + 1 + 1 + 1 + 4 + 4
    assert tf.weight_count({"h": 2, "dh": 3}) == 4 * 36 + 2 * 6 * 24
    assert tf.kv_cache_bytes({"h": 2, "dh": 3, "n": 5, "L": 7, "b": 2}) == 2 * 7 * 2 * 3 * 5 * 2


def test_prose_numbers():
    d, n, L = 32 * 128, 4096, 32
    assert tf.NUMBERS["d"] == "4096"
    assert tf.NUMBERS["per_block"] == str(round(12 * d * d / 1e6))
    assert tf.NUMBERS["all_blocks"] == f"{L * 12 * d * d / 1e9:.2f}"
    kv = 2 * L * 32 * 128 * n * 2
    assert tf.NUMBERS["kv_gib"] == str(round(kv / 2**30))
    assert tf.NUMBERS["kv_token_kib"] == str(round(kv / n / 2**10))
    flops = 24 * d * d + 4 * n * d
    assert tf.NUMBERS["flops_token"] == str(round(flops / 1e6))
    assert tf.NUMBERS["flops_share"] == str(round(100 * 4 * n * d / flops))
    # and the prose quotes them
    prose = " ".join(i for s in NOTE.sections for i in s.items if isinstance(i, str))
    for key in ("per_block", "all_blocks", "kv_gib", "kv_token_kib", "flops_token"):
        assert tf.NUMBERS[key] in prose


# ---------------------------------------------------------------- the figure


def test_figure_weights_are_causal_distributions():
    import matplotlib.pyplot as plt

    ctx = UNDER_TEST.figure_context()
    fig = tf.draw_mask(ctx)
    try:
        assert len(fig.axes) == 3
        weights = np.asarray(fig.axes[0].images[0].get_array())
    finally:
        plt.close(fig)
    assert weights.shape == (8, 8)
    assert np.allclose(weights.sum(axis=-1), 1.0)
    assert np.all(np.triu(weights, 1) == 0.0)
    # independently: head 1 from NumPy
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 12))
    wq = rng.standard_normal((12, 12)) / np.sqrt(12)
    wk = rng.standard_normal((12, 12)) / np.sqrt(12)
    xh = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    q, k = (xh @ wq)[:, :4], (xh @ wk)[:, :4]
    s = np.where(np.tril(np.ones((8, 8))) > 0, q @ k.T / 2.0, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    assert np.allclose(weights, p / p.sum(-1, keepdims=True))


def test_cross_references_name_existing_equations():
    texts = [i for s in NOTE.sections for i in s.items if isinstance(i, str)]
    texts += [s.why for s in STEPS]
    refs = {r for t in texts for r in re.findall(r"\[\[([a-z-]+):([a-z0-9-]+)\]\]", t)}
    assert {note for note, _ in refs} == {"attention", "normalization"}
    for note, label in refs:
        other = NoteUnderTest(note)
        assert any(s.label == label for s in other.steps), f"{note}:{label}"


def test_size_relations_reach_the_environment_and_the_cached_claim():
    import dataclasses

    from engine.notes.cache import step_claim

    assert set(ENV.size_rels) == {"d"}
    step = labelled("heads-sum")
    assert step_claim(NOTE, step, "fp")["sizes"] == [["d", "h * dh"]]
    # a note without relations keeps the claim it had before the field existed
    assert "sizes" not in step_claim(dataclasses.replace(NOTE, sizes={}), step, "fp")
