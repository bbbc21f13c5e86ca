"""What the verifier returns: a verdict, how each route went, and a counterexample."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Verdict = Literal["pass", "fail", "error"]


@dataclass(frozen=True)
class Counterexample:
    """Where the two sides of a false claim differ most."""

    check: str
    sizes: dict[str, int]
    inputs: dict[str, Any]
    entry: tuple[int, ...]
    lhs: float
    rhs: float
    difference: float
    profile: str | None = None
    # the values as text when a float cannot show them (1e-1700 underflows to 0.0)
    values_text: str | None = None
    # an inequality claim's relation: the entry is where `lhs REL rhs` is violated the most
    relation: str = "=="

    def describe(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items()) or "no sizes"
        where = f"entry [{', '.join(map(str, self.entry))}]" if self.entry else "value"
        profile = f", {self.profile} inputs" if self.profile else ""
        values = self.values_text or (
            f"lhs = {self.lhs:.10g}, rhs = {self.rhs:.10g}, difference = {self.difference:.3g}"
        )
        what = "differs" if self.relation == "==" else f"violates lhs {self.relation} rhs"
        lines = [f"{self.check} check at {sizes}{profile}: {where} {what}: {values}"]
        for name, value in self.inputs.items():
            lines.append(f"{name} = {_short(value)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class CheckReport:
    """One route of verification and how it went."""

    method: str  # "exact" or "numeric"
    passed: bool
    detail: str
    max_error: float


@dataclass(frozen=True)
class Result:
    """The verdict on one claim."""

    name: str
    verdict: Verdict
    message: str
    counterexample: Counterexample | None = None
    checks: tuple[CheckReport, ...] = field(default_factory=tuple)
    # The claim typeset (LaTeX), for display in notebooks; not part of the verdict or JSON.
    latex: str | None = field(default=None, compare=False, repr=False)
    # the claim's relation: "==" for an identity, "<=", ">=", "<" or ">" for an inequality
    relation: str = "=="

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def summary(self) -> str:
        """One line for a passing claim: how it was verified."""
        return "; ".join(c.detail for c in self.checks)

    def report(self) -> str:
        head = f"{self.verdict.upper()} {self.name}"
        if self.verdict == "pass":
            return f"{head}  [{self.summary()}]"
        if self.verdict == "error":
            return f"ERROR {self.name}: {self.message}"
        body = [self.message]
        if self.counterexample is not None:
            body.append(self.counterexample.describe())
        return head + "\n" + "\n".join("  " + line for b in body for line in b.splitlines())

    def _repr_markdown_(self) -> str:
        from engine.display import result_markdown

        return result_markdown(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "message": self.message,
            "counterexample": None if self.counterexample is None else asdict(self.counterexample),
            "checks": [asdict(c) for c in self.checks],
            "relation": self.relation,
        }


def _short(value: Any, limit: int = 8) -> str:
    flat = list(_flatten(value))
    if isinstance(value, list) and value and isinstance(value[0], list) and len(flat) <= 16:
        return "[" + ", ".join(_short(row, limit) for row in value) + "]"
    text = ", ".join(str(v) for v in flat[:limit])
    if isinstance(value, list):
        more = f", ... ({len(flat)} entries)" if len(flat) > limit else ""
        return f"[{text}{more}]"
    return text


def _flatten(value: Any):
    if isinstance(value, list):
        for v in value:
            yield from _flatten(v)
    else:
        yield value
