"""Deciding a claim: the exact and numeric routes run in turn and must agree."""

from __future__ import annotations

import numbers
import sys
import warnings
from collections.abc import Mapping

import numpy as np

# Both routes draw points. Loaded with the engine (11 ms), not in each forked worker, where
# importing it copies pages on write: 35 to 45 ms of a 0.55 s `llm-math verify`.
import numpy.random  # noqa: F401
from threadpoolctl import threadpool_limits

from engine.expr import EngineError, Expr, Var, format_shape, free_vars, size_names
from engine.index_type import declared_shape
from engine.parser import Environment, build_environment, parse_claim
from engine.verify.exact import exact_check
from engine.verify.numeric import numeric_check
from engine.verify.result import CheckReport, Counterexample, Result


def verify(
    equation: str,
    vars: Mapping[str, str],
    defs: Mapping[str, str] | None = None,
    seed: int = 0,
    name: str = "claim",
    numeric_sizes: Mapping[str, int] | None = None,
    sizes: Mapping[str, str] | None = None,
) -> Result:
    """Check the claim `equation` (text `lhs == rhs`, or an inequality `lhs <= rhs`, `>=`, `<`,
    `>` holding entry by entry) over variables of the given types;
    `sizes` declares size relations such as {"d": "h * dh"} (engine.sizes)."""
    try:
        env = build_environment(vars, defs, sizes)
        lhs, relation, rhs = parse_claim(equation, env)
    except EngineError as e:
        return Result(name, "error", str(e))
    return verify_sides(
        lhs, rhs, env, seed=seed, name=name, numeric_sizes=numeric_sizes, relation=relation
    )


def assert_claim(
    equation: str,
    vars: Mapping[str, str],
    defs: Mapping[str, str] | None = None,
    seed: int = 0,
    name: str = "claim",
    sizes: Mapping[str, str] | None = None,
) -> Result:
    """Like `verify`, but raise AssertionError with the full report unless the claim passes."""
    result = verify(equation, vars, defs, seed=seed, name=name, sizes=sizes)
    if not result.passed:
        raise AssertionError(result.report())
    return result


def verify_sides(
    lhs: Expr,
    rhs: Expr,
    env: Environment,
    seed: int = 0,
    name: str = "claim",
    numeric_sizes: Mapping[str, int] | None = None,
    exact: bool = True,
    numeric: bool = True,
    relation: str = "==",
) -> Result:
    """Check two parsed sides against each other: exact at small sizes, numeric at larger ones.

    `exact=False` or `numeric=False` runs one route alone (for tests and benchmarks); a result
    shown to users always comes from both.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        return Result(name, "error", f"the seed must be a non-negative integer, got {seed!r}")
    if relation != "==":
        return _verify_inequality(
            lhs, rhs, relation, env, seed, name, numeric_sizes, exact, numeric
        )
    if lhs.shape != rhs.shape:
        return Result(
            name,
            "fail",
            f"the two sides have different shapes: {format_shape(lhs.shape)} "
            f"and {format_shape(rhs.shape)}",
        )
    from engine.functions.calculus import expand_hessians

    # hessian(f, x) is checked as the nested derivative jacobian(grad(f, x), x) by both routes
    lhs, rhs = expand_hessians(lhs), expand_hessians(rhs)
    used = {**free_vars(lhs), **free_vars(rhs)}
    if env.size_rels:  # the sizes a relation multiplies stay small (engine.sizes)
        from engine.sizes import relation_numeric_sizes

        numeric_sizes = {**relation_numeric_sizes(env), **(numeric_sizes or {})}
    order = [s for s in env.sizes if s in _all_size_names(lhs, rhs, used)]
    checks: list[CheckReport] = []
    failure: Counterexample | None = None
    try:
        # One BLAS thread: the checks make thousands of small complex matmuls, and OpenBLAS's
        # thread hand-off costs more than the work (attention-grad-Q numeric route: 0.55 s with
        # one thread, 14 s with two on a busy 2-core machine; benchmarks/RESULTS.md).
        with (
            warnings.catch_warnings(),
            np.errstate(all="ignore"),
            threadpool_limits(limits=1, user_api="blas"),
        ):
            warnings.simplefilter("ignore")
            both = exact and numeric
            ahead = _numeric_ahead(lhs, rhs, used, order, seed, numeric_sizes) if both else None
            try:
                if exact:
                    report, cx = exact_check(lhs, rhs, used, order, seed)
                    checks.append(report)
                    failure = failure or cx
                # Once the exact check has failed, the verdict is settled: skip the rounding-noise
                # discount (a long-double re-run) that only matters for telling noise from error.
                discount = all(c.passed for c in checks)
                if numeric and ahead is not None and discount:
                    report, cx = _numeric_result(ahead)
                elif numeric:
                    if ahead is not None:
                        ahead.cancel()  # it assumed the discount: its core is freed for this run
                    report, cx = numeric_check(lhs, rhs, used, order, seed, numeric_sizes, discount)
                if numeric:
                    checks.append(report)
                    failure = failure or cx
            finally:
                if ahead is not None:
                    ahead.cancel()
    except EngineError as e:
        return Result(name, "error", str(e), checks=tuple(checks))
    except (ZeroDivisionError, OverflowError, RecursionError, MemoryError) as e:
        return Result(name, "error", f"cannot evaluate the claim: {type(e).__name__}")
    if all(c.passed for c in checks):
        return Result(name, "pass", "verified", None, tuple(checks))
    failed = [c.method for c in checks if not c.passed]
    passed = [c.method for c in checks if c.passed]
    msg = f"the two sides differ ({' and '.join(failed)} check)"
    if passed:
        msg += f"; the {' and '.join(passed)} check passed, so the two routes disagree"
    return Result(name, "fail", msg, failure, tuple(checks))


def _numeric_ahead(lhs, rhs, used, order, seed, numeric_sizes):
    """The numeric route started in a second process while the exact route runs here, when this
    is the lone worker of a budgeted check with a core to spare (engine.budget.beside); else
    None. It runs as it would after a passing exact route (with the rounding-noise discount);
    after a failing one `verify_sides` discards it and runs the route itself without the
    discount, so the result is the same as one route after the other."""
    budget = sys.modules.get("engine.budget")  # not imported: no budgeted worker
    if budget is None or not budget._lone_worker:
        return None

    return budget.beside(
        lambda: numeric_check(lhs, rhs, used, order, seed, numeric_sizes, True), "the numeric route"
    )


def _numeric_result(ahead):
    """The numeric route's report from its process (a stack dumped here at a deadline names
    this function: the numeric route is what the check waits for)."""
    return ahead.result()


def _all_size_names(lhs: Expr, rhs: Expr, used: dict[str, Var]) -> set[str]:
    names = size_names(lhs) | size_names(rhs)
    for v in used.values():
        for d in declared_shape(v):  # an index variable's bound is a size too
            names.update(str(s) for s in d.free_symbols)
    return names


def _verify_inequality(
    lhs: Expr,
    rhs: Expr,
    relation: str,
    env: Environment,
    seed: int,
    name: str,
    numeric_sizes: Mapping[str, int] | None,
    exact: bool,
    numeric: bool,
) -> Result:
    """`lhs REL rhs` entry by entry (engine.verify.inequality), the two sides broadcasting."""
    from engine.functions.base import broadcast
    from engine.verify.inequality import RELATIONS, exact_inequality, numeric_inequality

    if relation not in RELATIONS:
        return Result(name, "error", f"unknown relation {relation!r}", relation=relation)
    try:
        broadcast(lhs.shape, rhs.shape)
    except EngineError:
        return Result(
            name,
            "fail",
            f"the two sides have shapes {format_shape(lhs.shape)} and "
            f"{format_shape(rhs.shape)}, which do not broadcast",
            relation=relation,
        )
    used = {**free_vars(lhs), **free_vars(rhs)}
    order = [s for s in env.sizes if s in _all_size_names(lhs, rhs, used)]
    checks: list[CheckReport] = []
    failure: Counterexample | None = None
    try:
        with (
            warnings.catch_warnings(),
            np.errstate(all="ignore"),
            threadpool_limits(limits=1, user_api="blas"),
        ):
            warnings.simplefilter("ignore")
            if exact:
                report, cx = exact_inequality(lhs, rhs, relation, used, order, seed)
                checks.append(report)
                failure = failure or cx
            if numeric:
                discount = all(c.passed for c in checks)
                report, cx = numeric_inequality(
                    lhs, rhs, relation, used, order, seed, numeric_sizes, discount
                )
                checks.append(report)
                failure = failure or cx
    except EngineError as e:
        return Result(name, "error", str(e), checks=tuple(checks), relation=relation)
    except (ZeroDivisionError, OverflowError, RecursionError, MemoryError) as e:
        return Result(
            name, "error", f"cannot evaluate the claim: {type(e).__name__}", relation=relation
        )
    if all(c.passed for c in checks):
        return Result(name, "pass", "verified", None, tuple(checks), relation=relation)
    failed = [c.method for c in checks if not c.passed]
    passed = [c.method for c in checks if c.passed]
    msg = f"the inequality lhs {relation} rhs is violated ({' and '.join(failed)} check)"
    if passed == ["numeric"] and relation in ("<", ">"):
        msg += "; the numeric check, which judges a strict inequality as non-strict, passed"
    elif passed:
        msg += f"; the {' and '.join(passed)} check passed, so the two routes disagree"
    return Result(name, "fail", msg, failure, tuple(checks), relation=relation)
