"""Printers: the expression tree as formula-language text and as LaTeX."""

from engine.printing.latex import to_latex
from engine.printing.text import to_text

__all__ = ["to_latex", "to_text"]
