"""Figures for the notes: matplotlib (Agg) drawn from verified formulas, saved deterministically."""

from __future__ import annotations

import io
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
