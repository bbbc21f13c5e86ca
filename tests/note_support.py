"""Shared by the tests of individual notes: load a note's source and check its steps."""

from __future__ import annotations

from pathlib import Path

from engine.notes import Step
from engine.notes.build import load_module
from engine.notes.check import check_step, environment
from engine.notes.figures import FigureContext
from engine.parser import parse_formula

ROOT = Path(__file__).resolve().parent.parent


class NoteUnderTest:
    """A note's module, its steps, and the checker applied to them."""

    def __init__(self, name: str):
        self.module = load_module(ROOT / "derivations" / f"{name}.py")
        self.note = self.module.NOTE
        self.env = environment(self.note)
        self.steps = self.note.steps()

    def check(self, step: Step):
        return check_step(self.note, step, self.env, f"test: {step.label}")

    def labelled(self, label: str) -> Step:
        return next(s for s in self.steps if s.label == label)

    def figure_context(self) -> FigureContext:
        """What the note's figures get: its Environment and its labelled formula steps."""
        steps = {}
        for s in self.steps:
            if s.label and s.resolved_kind == "formula":
                lhs, rhs = s.sides()
                steps[s.label] = (parse_formula(lhs, self.env), parse_formula(rhs, self.env))
        return FigureContext(self.env, steps)
