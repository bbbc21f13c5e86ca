"""Figures for the notes: matplotlib (Agg) drawn from verified formulas, saved deterministically."""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from engine.backends import numpy_backend  # noqa: E402
from engine.backends.common import infer_sizes  # noqa: E402
from engine.expr import EngineError, Expr  # noqa: E402
from engine.parser import Environment, parse_formula  # noqa: E402

# Fixed style and metadata: two builds write byte-identical SVG and PDF files.
STYLE = {
    "svg.hashsalt": "llm-math-notes",
    "svg.fonttype": "path",
    "pdf.fonttype": 42,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.6,
    "figure.dpi": 100,
    "savefig.bbox": "tight",
}
SVG_METADATA = {"Date": None, "Creator": "llm-math-notes"}
PDF_METADATA = {"CreationDate": None, "ModDate": None, "Creator": "llm-math-notes"}


class FigureContext:
    """What a note's `draw(ctx)` gets: the note's Environment and its verified steps."""

    def __init__(self, env: Environment, steps: Mapping[str, tuple[Any, Any]]):
        self.env = env
        self._steps = dict(steps)

    def figure(self, width: float = 5.5, height: float = 3.2):
        """A new matplotlib Figure in the house style (width and height in inches)."""
        return plt.figure(figsize=(width, height))

    def formula(self, text: str) -> Expr:
        """Parse formula-language text in the note's Environment."""
        return parse_formula(text, self.env)

    def step(self, label: str) -> tuple[Any, Any]:
        """The (lhs, rhs) of a labelled, verified step (parsed Expr for formula steps)."""
        if label not in self._steps:
            raise EngineError(f"no verified step labelled {label!r}")
        return self._steps[label]

    def evaluate(
        self,
        expr: Expr | str,
        values: Mapping[str, Any],
        sizes: Mapping[str, int] | None = None,
    ) -> np.ndarray:
        """Evaluate a formula with the NumPy backend (sizes inferred from the arrays)."""
        e = self.formula(expr) if isinstance(expr, str) else expr
        arrays = {k: np.asarray(v, dtype=float) for k, v in values.items()}
        found = infer_sizes(e, arrays)
        found.update(sizes or {})
        return np.real(numpy_backend.evaluate(e, arrays, found))


def save(fig) -> tuple[bytes, bytes]:
    """The figure as (SVG, PDF) bytes, with no timestamps; closes the figure."""
    try:
        svg, pdf = io.BytesIO(), io.BytesIO()
        fig.savefig(svg, format="svg", metadata=SVG_METADATA)
        fig.savefig(pdf, format="pdf", metadata=PDF_METADATA)
    finally:
        plt.close(fig)
    return svg.getvalue(), pdf.getvalue()


def style():
    """A context manager applying STYLE."""
    return matplotlib.rc_context(STYLE)


# ---------------------------------------------------------------- figure style checks

# Plain-text spellings of mathematics (outside $...$): a sub- or superscript, a TeX command, a
# function applied to an argument, a quotient of names (dH/dT), a lone letter that names a
# variable ("temperature T"; "a", "A" and "I" are English words).
PLAIN_MATH = re.compile(
    r"[\^_\\]"
    r"|\b[A-Za-z]+\([^()]*"
    r"|\b[A-Za-z]\w{0,2}/[A-Za-z]\w{0,2}\b"
    r"|(?<![\w.'])(?![aAI]\b)[A-Za-z](?![\w.'])"
)


def math_as_text(text: str) -> list[str]:
    """The pieces of a figure text outside $...$ that spell mathematics as plain text."""
    outside = re.split(r"(?<!\\)\$", text)[::2]
    return [m.group(0) for part in outside for m in PLAIN_MATH.finditer(part)]


def _texts(fig) -> list[tuple[str, str]]:
    """(where, text) of every label, title, legend entry and text of the figure."""
    out = []
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    for leg in legends:
        if leg is not None:
            out += [("legend", t.get_text()) for t in leg.get_texts()]
    for k, ax in enumerate(fig.axes, start=1):
        out += [
            (f"axes {k} x label", ax.get_xlabel()),
            (f"axes {k} y label", ax.get_ylabel()),
            (f"axes {k} title", ax.get_title()),
        ]
        out += [(f"axes {k} text", t.get_text()) for t in ax.texts]
    if fig._suptitle is not None:
        out.append(("title", fig._suptitle.get_text()))
    return [(where, text) for where, text in out if text]


def _display_points(line, step: float = 2.0) -> np.ndarray:
    """A line's vertices in display coordinates, with points every `step` pixels along its
    segments when it is drawn with a line style (markers alone: the vertices only)."""
    xy = np.asarray(line.get_xydata(), dtype=float)
    xy = xy[np.isfinite(xy).all(axis=1)] if xy.size else xy.reshape(0, 2)
    if len(xy) == 0:
        return xy
    pts = line.get_transform().transform(xy)
    if line.get_linestyle() in ("None", "none", " ", "") or len(pts) < 2:
        return pts
    out = [pts[:1]]
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        n = max(1, int(np.ceil(np.hypot(*(b - a)) / step)))
        out.append(a + (b - a) * (np.arange(1, n + 1)[:, None] / n))
    return np.concatenate(out)


def _inside(box, pts: np.ndarray) -> np.ndarray:
    x, y = pts[:, 0], pts[:, 1]
    return (x >= box.x0) & (x <= box.x1) & (y >= box.y0) & (y <= box.y1)


def legend_overlaps(fig) -> list[str]:
    """Legends whose box covers a plotted line's points (inside the axes that draw them)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for k, ax in enumerate(fig.axes, start=1):
        legends = [ax.get_legend()] if ax.get_legend() is not None else []
        legends += [leg for leg in fig.legends]
        clip = ax.get_window_extent(renderer)
        for leg in legends:
            box = leg.get_window_extent(renderer).padded(-1.0)
            for line in ax.get_lines():
                pts = _display_points(line)
                if len(pts) and (_inside(box, pts) & _inside(clip, pts)).any():
                    found.append(f"axes {k}: the legend covers the line {line.get_label()!r}")
    return found


def non_integer_ticks(fig) -> list[str]:
    """Axes whose plotted data are integers (three values or more: counts, ranks, steps) but
    whose ticks fall between them (e.g. 2.5)."""
    found = []
    for k, ax in enumerate(fig.axes, start=1):
        for name, axis, lim, column in (
            ("x", ax.xaxis, ax.get_xlim(), 0),
            ("y", ax.yaxis, ax.get_ylim(), 1),
        ):
            if axis.get_scale() != "linear":
                continue
            data = [
                np.asarray(line.get_xydata(), dtype=float)[:, column] for line in ax.get_lines()
            ]
            values = np.concatenate(data) if data else np.array([])
            values = values[np.isfinite(values)]
            if len(np.unique(values)) < 3 or not np.all(values == np.round(values)):
                continue
            lo, hi = sorted(lim)
            ticks = [t for t in axis.get_majorticklocs() if lo <= t <= hi]
            bad = [t for t in ticks if not np.isclose(t, round(t))]
            if bad:
                found.append(f"axes {k}: integer {name} axis has ticks at {bad[0]:g}")
    return found


def problems(fig) -> list[str]:
    """Style defects of a figure: a legend over the data, non-integer ticks on an integer axis,
    mathematics written as plain text instead of $...$ (mathtext). Empty when fine."""
    found = legend_overlaps(fig) + non_integer_ticks(fig)
    for where, text in _texts(fig):
        bad = math_as_text(text)
        if bad:
            found.append(f"{where} {text!r}: write {', '.join(map(repr, bad))} as $math$")
    return found
