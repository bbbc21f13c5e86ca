"""Symbolic reverse-mode differentiation to short, verified backward programs."""

from engine.derive.program import Assignment, Program

__all__ = ["Assignment", "Program"]
