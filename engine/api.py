"""The public Python functions with an opt-in time budget: `timeout=` seconds, off by default.

`verify`, `assert_claim` and `derive` are those of engine.verify and engine.derive; with
`timeout=`, the work runs in a forked worker (engine.budget) that is stopped at the deadline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from engine import budget
from engine.derive import Program
from engine.derive import derive as _derive
from engine.expr import EngineError
from engine.verify import Result
from engine.verify import verify as _verify


def verify(
    equation: str,
    vars: Mapping[str, str],
    defs: Mapping[str, str] | None = None,
    seed: int = 0,
    name: str = "claim",
    numeric_sizes: Mapping[str, int] | None = None,
    *,
    timeout: float | None = None,
    sizes: Mapping[str, str] | None = None,
) -> Result:
    """Check the claim `equation`; past `timeout` seconds the result is an `error` naming the
    stage that ran out. `sizes` declares size relations, e.g. {"d": "h * dh"}."""

    def job() -> Result:
        return _verify(
            equation, vars, defs, seed=seed, name=name, numeric_sizes=numeric_sizes, sizes=sizes
        )

    result = budget.result_within(job, name, timeout, "the claim")
    return dataclasses.replace(result, latex=statement_latex(equation, vars, defs, sizes))


LATEX_RELATIONS = {"==": "=", "<=": r"\le", ">=": r"\ge", "<": "<", ">": ">"}


def statement_latex(
    equation: str,
    vars: Mapping[str, str],
    defs: Mapping[str, str] | None = None,
    sizes: Mapping[str, str] | None = None,
) -> str | None:
    """The claim typeset, `lhs = rhs` (or `lhs \\le rhs` ...); None if it does not parse (the
    result says why)."""
    from engine.parser import build_environment, parse_claim
    from engine.printing.latex import to_latex

    try:
        lhs, relation, rhs = parse_claim(equation, build_environment(vars, defs, sizes))
        return f"{to_latex(lhs)} {LATEX_RELATIONS[relation]} {to_latex(rhs)}"
    except (EngineError, RecursionError):
        return None


def assert_claim(
    equation: str,
    vars: Mapping[str, str],
    defs: Mapping[str, str] | None = None,
    seed: int = 0,
    name: str = "claim",
    *,
    timeout: float | None = None,
    sizes: Mapping[str, str] | None = None,
) -> Result:
    """Like `verify`, but raise AssertionError with the full report unless the claim passes."""
    result = verify(equation, vars, defs, seed=seed, name=name, timeout=timeout, sizes=sizes)
    if not result.passed:
        raise AssertionError(result.report())
    return result


def derive(
    expr: str,
    wrt: str | Iterable[str] | None = None,
    vars: Mapping[str, str] | None = None,
    defs: Mapping[str, str] | None = None,
    *,
    seed: int = 0,
    timeout: float | None = None,
    **options,
) -> Program:
    """engine.derive.derive; past `timeout` seconds raises engine.budget.BudgetExceeded."""
    return budget.run(
        lambda: _derive(expr, wrt, vars, defs, seed=seed, **options), timeout, "the derivation"
    )
