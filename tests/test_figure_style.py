"""Figure style checks (engine.notes.figures.problems): a legend over the data, non-integer ticks
on an integer axis, mathematics written as plain text; every figure of the notes passes them."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.ticker import MaxNLocator

from engine.notes import figures as figs
from engine.notes.build import CACHE, BuildError, _draw, _figure_context, load_notes
from engine.notes.cache import ResultCache, engine_fingerprint
from engine.notes.check import check_note
from engine.notes.model import Figure

NOTES = load_notes()
FIGURES = [(x, f) for x in NOTES for f in x.note.figures()]


@pytest.fixture
def figure():
    with figs.style():
        fig = figs.plt.figure(figsize=(4, 3))
        yield fig
    figs.plt.close(fig)


@pytest.mark.parametrize("x, f", FIGURES, ids=lambda v: getattr(v, "name", None))
def test_every_figure_of_the_notes_passes_the_style_checks(x, f):
    results = check_note(
        x.note, ResultCache(CACHE / "steps", CACHE), engine_fingerprint(), x.source
    )
    with figs.style():
        fig = f.draw(_figure_context(x.note, results))
        try:
            assert figs.problems(fig) == []
        finally:
            figs.plt.close(fig)


def test_a_legend_over_a_line_is_found_and_one_clear_of_it_is_not(figure):
    ax = figure.add_subplot()
    t = np.linspace(0, 1, 50)
    ax.plot(t, t, label="rising")
    ax.plot(t, 1 - t, label="falling")
    ax.legend(loc="center")  # both lines cross the centre
    found = figs.legend_overlaps(figure)
    assert len(found) == 2 and "'rising'" in found[0] and "'falling'" in found[1]
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0))  # above the axes
    assert figs.legend_overlaps(figure) == []


def test_a_segment_crossing_the_legend_counts_even_without_a_vertex_inside(figure):
    ax = figure.add_subplot()
    ax.plot([0, 1], [0.5, 0.5], label="flat")  # two vertices, far left and right
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(0, 1)
    ax.legend(loc="center")
    assert figs.legend_overlaps(figure) != []
    ax.lines[0].set_linestyle("none")
    ax.lines[0].set_marker("o")  # markers only: nothing under the legend now
    assert figs.legend_overlaps(figure) == []


def test_an_integer_axis_must_have_integer_ticks(figure):
    ax = figure.add_subplot()
    ax.plot(np.arange(0, 4), [0.1, 0.4, 0.2, 0.3], "o-")
    assert figs.non_integer_ticks(figure) == ["axes 1: integer x axis has ticks at 0.5"]
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    assert figs.non_integer_ticks(figure) == []


def test_a_real_valued_axis_may_have_any_ticks(figure):
    ax = figure.add_subplot()
    ax.plot(np.linspace(1, 8, 30), np.linspace(0, 1, 30))
    assert figs.non_integer_ticks(figure) == []


@pytest.mark.parametrize(
    "text, bad",
    [
        ("temperature T", ["T"]),
        ("dH/dT", ["dH/dT"]),
        ("Var/T^3 (verified)", ["Var/T", "^"]),
        ("logsumexp(z) - m", ["logsumexp(z", "m"]),
        ("x_1", ["_"]),
        (r"\alpha", ["\\"]),
        ("T=0.3", ["T"]),
        ("temperature $T$", []),
        (r"$\mathrm{d}H / \mathrm{d}T$", []),
        ("entropy $H$ (nats)", []),
        ("a step of size 0.1", []),
        ("token (by logit)", []),
        ("weight on the relevant token", []),
        ("I read a book; A grade", []),
        (r"cost \$5", ["\\"]),
    ],
)
def test_math_written_as_plain_text_is_found(text, bad):
    assert figs.math_as_text(text) == bad


def test_problems_names_the_text_and_a_build_refuses_the_figure(figure):
    ax = figure.add_subplot()
    ax.plot([0.0, 1.0], [0.0, 1.0])
    ax.set_xlabel("temperature T")
    assert figs.problems(figure) == ["axes 1 x label 'temperature T': write 'T' as $math$"]

    def draw(ctx):
        fig = ctx.figure()
        fig.add_subplot().set_ylabel("dH/dT")
        return fig

    note = NOTES[0].note
    with pytest.raises(BuildError, match=r"figure 'bad': axes 1 y label 'dH/dT'"):
        _draw(note, Figure("bad", "A bad figure.", draw), figs.FigureContext(None, {}))
