"""Symbolic reverse-mode differentiation to short, verified backward programs."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Imported on first use, so the `llm-math derive` command (engine.derive.cli) loads without SymPy.
_EXPORTS = {
    "DerivationFailed": "engine.derive.core",
    "DeriveError": "engine.derive.core",
    "build_program": "engine.derive.core",
    "derive": "engine.derive.core",
    "Assignment": "engine.derive.program",
    "Program": "engine.derive.program",
}

__all__ = ["Assignment", "DerivationFailed", "DeriveError", "Program", "build_program", "derive"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.derive' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


if TYPE_CHECKING:
    from engine.derive.core import DerivationFailed, DeriveError, build_program, derive
    from engine.derive.program import Assignment, Program
