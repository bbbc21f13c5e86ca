"""Symbolic reverse-mode differentiation to short, verified backward programs."""

from engine.derive.core import DerivationFailed, DeriveError, build_program, derive
from engine.derive.program import Assignment, Program

__all__ = ["Assignment", "DerivationFailed", "DeriveError", "Program", "build_program", "derive"]
