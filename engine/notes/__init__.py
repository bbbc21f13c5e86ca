"""Verified derivation notes: the source format (model, symbols) and the build pipeline."""

from engine.notes.model import Chain, Definition, Figure, Link, Note, Reference, Section, Step
from engine.notes.symbols import Named, array, delta, indices, param, size, sympy_latex, total

__all__ = [
    "Chain",
    "Definition",
    "Figure",
    "Link",
    "Named",
    "Note",
    "Reference",
    "Section",
    "Step",
    "array",
    "delta",
    "indices",
    "param",
    "size",
    "sympy_latex",
    "total",
]
