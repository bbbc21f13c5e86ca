"""Verified derivation notes: the source format (model, symbols) and the build pipeline."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported on first use, so `llm-math list` (engine.notes.listing) does not load SymPy.
_EXPORTS = {
    **dict.fromkeys(
        ("Chain", "Definition", "Figure", "Link", "Note", "Reference", "Section", "Step"),
        "engine.notes.model",
    ),
    **dict.fromkeys(
        ("Named", "array", "delta", "indices", "param", "size", "sympy_latex", "total"),
        "engine.notes.symbols",
    ),
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.notes' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from engine.notes.model import Chain, Definition, Figure, Link, Note, Reference, Section, Step
    from engine.notes.symbols import (
        Named,
        array,
        delta,
        indices,
        param,
        size,
        sympy_latex,
        total,
    )
