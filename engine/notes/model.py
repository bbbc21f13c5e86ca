"""The derivation source format: a note is prose sections, definitions and checked steps."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy

# A side of a step: formula-language text (checked by the verifier against the note's
# Environment) or a SymPy expression (index notation, or an identity in symbolic parameters).
# An identity side may also be a callable `f(values) -> sympy.Expr` of the concrete parameter
# values, for statements that only make sense once a parameter is a number (sympy.stats, sums
# whose length is a parameter).
Side = str | sympy.Basic | Callable[[Mapping[str, Any]], sympy.Basic]

KINDS = ("formula", "index", "identity")
PARAM_KINDS = ("real", "positive", "unit", "integer")
_LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def step_kind(lhs: Side, rhs: Side) -> str:
    """`formula` for text, `index` when a side has an Indexed entry, else `identity`."""
    if isinstance(lhs, str) or isinstance(rhs, str):
        return "formula"
    for side in (lhs, rhs):
        if isinstance(side, sympy.Basic) and side.has(sympy.Indexed):
            return "index"
    return "identity"


@dataclass(frozen=True)
class Step:
    """One checked equation `lhs = rhs` with a one-line justification.

    `claim` is either formula text `"lhs == rhs"` or a pair `(lhs, rhs)` of SymPy expressions
    (never `sympy.Eq`, which evaluates itself). `why` is short Markdown ("chain rule",
    "$\\sum_i y_i = 1$"). `label` (lower-case, digits, dashes) lets prose cite the equation as
    `[[label]]`. `display` replaces the printed LaTeX of the whole equation (use sparingly: the
    printed form must state exactly what is checked). `kind` is inferred (see `step_kind`).
    `numeric` (identity steps) computes the left side in float64 by an independent route,
    `numeric(values) -> float` of the parameter values as floats (direct summation, an
    enumeration in plain Python): the numeric check then compares it with the right side, and
    its mark names the route by the first line of `numeric`'s docstring.
    """

    claim: str | tuple[Side, Side]
    why: str
    label: str | None = None
    display: str | None = None
    kind: str | None = None
    numeric: Callable[[Mapping[str, float]], float] | None = None

    def sides(self) -> tuple[Side, Side]:
        if isinstance(self.claim, str):
            if self.claim.count("==") != 1:
                raise ValueError(f"step {self.claim!r}: write exactly one '==' (or use a Chain)")
            lhs, rhs = self.claim.split("==")
            return lhs.strip(), rhs.strip()
        lhs, rhs = self.claim
        return lhs, rhs

    @property
    def resolved_kind(self) -> str:
        return self.kind or step_kind(*self.sides())


@dataclass(frozen=True)
class Link:
    """One row `= rhs` of a Chain, with its justification and optional label."""

    rhs: Side
    why: str
    label: str | None = None


@dataclass(frozen=True)
class Chain:
    """`lhs = rhs_1 = rhs_2 = ...`, one row per link, rendered as one aligned display.

    Each row is checked as its own step `lhs == rhs_k` (so a wrong row is named exactly).
    """

    lhs: Side
    links: tuple[Link | tuple, ...]
    kind: str | None = None

    def rows(self) -> tuple[Link, ...]:
        return tuple(x if isinstance(x, Link) else Link(*x) for x in self.links)

    def __post_init__(self) -> None:
        object.__setattr__(self, "links", tuple(self.links))

    def steps(self) -> tuple[Step, ...]:
        return tuple(
            Step((self.lhs, row.rhs), row.why, row.label, kind=self.kind) for row in self.rows()
        )


@dataclass(frozen=True)
class Definition:
    """`lhs := rhs`, shown but not checked.

    `Definition("p")` shows the note's formula-language definition `p` (from `Note.defs`);
    `Definition(lhs, rhs)` with SymPy expressions shows an index-notation definition.
    """

    lhs: str | sympy.Basic
    rhs: str | sympy.Basic | None = None
    why: str = ""


@dataclass(frozen=True)
class Figure:
    """A matplotlib figure drawn from the note's verified formulas.

    `draw(ctx)` receives an `engine.notes.figures.FigureContext` and returns a matplotlib
    Figure (make it with `ctx.figure()`); it is written as SVG (Markdown) and PDF (LaTeX).
    `name` (lower-case, dashes) names the files; `label` lets prose cite it as `[[label]]`.
    """

    name: str
    caption: str
    draw: Callable[[Any], Any]
    label: str | None = None


@dataclass(frozen=True)
class Reference:
    """A reference cited in prose as `[@key]`."""

    key: str
    text: str
    url: str | None = None


Item = str | Step | Chain | Definition | Figure


@dataclass(frozen=True)
class Section:
    """A titled section: prose paragraphs (Markdown strings) interleaved with blocks."""

    title: str
    items: tuple[Item, ...]

    def __init__(self, title: str, *items: Item):
        object.__setattr__(self, "title", title)
        object.__setattr__(self, "items", tuple(items))


@dataclass(frozen=True)
class Note:
    """One derivation note; a module in `derivations/` defines it as `NOTE`.

    `vars`/`defs` make the formula-language Environment (as in `engine.verify.verify`);
    `arrays` ("z": "real[n]"), `indices` ("i": "n") and `params` ("T": "positive") declare the
    names used by index-notation steps and identities (matched by symbol name).
    """

    name: str
    order: int
    title: str
    summary: str
    sections: tuple[Section, ...]
    vars: Mapping[str, str] = field(default_factory=dict)
    defs: Mapping[str, str] = field(default_factory=dict)
    arrays: Mapping[str, str] = field(default_factory=dict)
    indices: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    references: tuple[Reference, ...] = ()
    seed: int = 0
    # Size relations of the formula language ("d": "h * dh"), as `llm-math derive --size-rel`.
    sizes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sections = (self.sections,) if isinstance(self.sections, Section) else self.sections
        object.__setattr__(self, "sections", tuple(sections))
        object.__setattr__(self, "references", tuple(self.references))

    def steps(self) -> list[Step]:
        """Every checked step, in reading order."""
        out: list[Step] = []
        for section in self.sections:
            for item in section.items:
                if isinstance(item, Step):
                    out.append(item)
                elif isinstance(item, Chain):
                    out.extend(item.steps())
        return out

    def figures(self) -> list[Figure]:
        return [i for s in self.sections for i in s.items if isinstance(i, Figure)]

    def problems(self) -> list[str]:
        """Format errors (bad labels, duplicate labels, unknown references); empty when fine."""
        errs: list[str] = []
        if not _LABEL_RE.match(self.name):
            errs.append(f"note name {self.name!r}: use lower-case letters, digits and dashes")
        labels: list[str] = [s.label for s in self.steps() if s.label]
        labels += [f.label for f in self.figures() if f.label]
        for label in labels:
            if not _LABEL_RE.match(label):
                errs.append(f"label {label!r}: use lower-case letters, digits and dashes")
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            errs.append(f"duplicate labels: {', '.join(dup)}")
        for f in self.figures():
            if not _LABEL_RE.match(f.name):
                errs.append(f"figure name {f.name!r}: use lower-case letters, digits and dashes")
        for name, kind in self.params.items():
            if kind not in PARAM_KINDS:
                errs.append(f"param {name!r}: kind {kind!r} is not one of {', '.join(PARAM_KINDS)}")
        for step in self.steps():
            if step.kind is not None and step.kind not in KINDS:
                errs.append(f"step kind {step.kind!r} is not one of {', '.join(KINDS)}")
            try:
                step.sides()
            except ValueError as e:
                errs.append(str(e))
                continue
            if step.numeric is not None and step.resolved_kind != "identity":
                errs.append(f"step {step.label or step.why!r}: numeric= is for identity steps")
        keys = {r.key for r in self.references}
        texts = [self.summary] + [i for s in self.sections for i in s.items if isinstance(i, str)]
        texts += [s.why for s in self.steps()]
        for text in texts:
            for key in re.findall(r"\[@([^\]]+)\]", text):
                if key not in keys:
                    errs.append(f"citation [@{key}] has no Reference")
            for label in re.findall(r"\[\[([^\]]+)\]\]", text):
                if ":" in label:  # another note's equation: resolved (and checked) when rendered
                    continue
                if label not in labels:
                    errs.append(f"cross-reference [[{label}]]: no step or figure has that label")
        return errs
