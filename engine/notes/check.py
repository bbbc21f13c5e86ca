"""Checks every step of a note: formula steps by the verifier, index steps and identities here."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import mpmath
import numpy as np
import sympy
from sympy.core.sympify import _sympify

from engine import budget
from engine.expr import EngineError
from engine.notes.cache import (  # noqa: F401 - re-exported: the cache's public names
    ResultCache,
    checker_sources,
    engine_fingerprint,
    step_claim,
    step_key,
    write_atomic,
)
from engine.notes.model import Note, Step
from engine.parser import Environment, build_environment, parse_formula, parse_type
from engine.types import PROFILES, TYPES
from engine.verify import (
    EXACT_DIGITS,
    EXACT_RTOL,
    NUMERIC_RTOL,
    CheckReport,
    Counterexample,
    Result,
    verify_sides,
)

INDEX_EXACT_SIZES = (2, 3, 4)  # every size symbol takes each of these (distinct when several)
INDEX_EXACT_POINTS = 2  # random rational points per size assignment
INDEX_MAX_TUPLES = 64  # free-index values tried per size assignment (all of them up to this)
INDEX_NUMERIC_SIZE = 9  # the numeric check's size (further sizes count down from it)
INDEX_NUMERIC_TUPLES = 6  # random free-index values in the numeric check
IDENTITY_POINTS = 6  # random parameter values, exact and numeric each
INTEGER_RANGE = (1, 6)  # an `integer` parameter is tried at each of these in turn


@dataclass(frozen=True)
class StepResult:
    """A step, where it sits in its note, and the verifier's verdict on it."""

    note: str
    number: int  # 1-based position among the note's checked steps
    step: Step
    result: Result
    cached: bool = False

    @property
    def title(self) -> str:
        return step_title(self.step, self.number)


def step_title(step: Step, number: int) -> str:
    """How a step is named in messages: its label, else its number and claim."""
    tag = f"[{step.label}]" if step.label else f"#{number}"
    lhs, rhs = step.sides()
    return f"step {tag} {_side_text(lhs)} == {_side_text(rhs)}"


def _side_text(side: Any) -> str:
    if callable(side) and not isinstance(side, sympy.Basic):
        return getattr(side, "__name__", "<function>") + "(...)"
    text = str(side)
    return text if len(text) <= 90 else text[:87] + "..."


# ---------------------------------------------------------------- environment


def environment(note: Note) -> Environment:
    """The formula-language Environment of a note."""
    return build_environment(dict(note.vars), dict(note.defs), dict(note.sizes) or None)


# ---------------------------------------------------------------- checking a note


def check_step(note: Note, step: Step, env: Environment, name: str) -> Result:
    """Check one step of `note` by its kind; an exception becomes an `error` verdict."""
    kind = step.resolved_kind
    lhs, rhs = step.sides()
    try:
        if kind != "formula" and (isinstance(lhs, str) or isinstance(rhs, str)):
            raise EngineError(
                f"an {kind} step takes SymPy expressions, not text (text is the formula "
                "language: leave kind unset; build SymPy sides with engine.notes.symbols)"
            )
        if kind == "formula":
            left, right = parse_formula(str(lhs), env), parse_formula(str(rhs), env)
            return verify_sides(left, right, env, seed=note.seed, name=name)
        if kind == "index":
            return check_index(note, lhs, rhs, name)
        return check_identity(note, lhs, rhs, name, step.numeric)
    except EngineError as e:
        return Result(name, "error", str(e))
    except (ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError) as e:
        return Result(name, "error", f"cannot check the step: {type(e).__name__}: {e}")


def check_note(
    note: Note,
    cache: ResultCache | None = None,
    fingerprint: str = "",
    note_source: str = "",
    progress: Callable[[StepResult], None] | None = None,
    parallel: int = 1,
) -> list[StepResult]:
    """Check every step of `note`; a step whose passing result is cached (a record that
    certifies exactly this step, see `ResultCache`) is not checked again. With `parallel` > 1,
    up to that many steps are checked at once, each in its own forked worker; the results (in
    step order) do not depend on it, and `progress` is called as each step finishes."""
    env = environment(note)
    out: list[StepResult | None] = []
    todo: list[tuple[int, str, dict]] = []  # (position, name, claim) of the steps to check
    for number, step in enumerate(note.steps(), start=1):
        name = f"{note.name}: {step_title(step, number)}"
        claim = step_claim(note, step, fingerprint, note_source) if cache else {}
        result = cache.get(claim, name) if cache else None
        if result is None:
            todo.append((number - 1, name, claim))
            out.append(None)
            continue
        out.append(StepResult(note.name, number, step, result, True))
        if progress:
            progress(out[-1])
    steps = note.steps()

    def finished(k: int, outcome: tuple[bool, object]) -> None:
        position, name, claim = todo[k]
        ok, value = outcome
        if not ok:
            if not isinstance(value, budget.BudgetExceeded):
                raise value  # as budget.result_within would
            value = Result(name, "error", str(value))
        if cache:
            cache.put(claim, value)
        out[position] = StepResult(note.name, position + 1, steps[position], value, False)
        if progress:
            progress(out[position])

    jobs = [partial(check_step, note, steps[p], env, name) for p, name, _ in todo]
    budget.run_all(jobs, budget.current_timeout(), "the step", parallel, done=finished)
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------- index notation


def _declared_arrays(note: Note) -> tuple[dict[str, tuple[str, tuple]], list[str]]:
    """name -> (type, symbolic shape), and the size names in declaration order."""
    scratch = Environment()
    arrays = {}
    for name, text in note.arrays.items():
        var = parse_type(name, text, scratch)
        arrays[name] = (var.vtype, var.shape)
    sizes = list(scratch.sizes)
    for size in note.indices.values():
        if size not in sizes:
            sizes.append(size)
    return arrays, sizes


def _size_assignments(order: list[str], values: tuple[int, ...]) -> list[dict[str, int]]:
    """One assignment per value; several sizes get distinct values (a rotation)."""
    out = []
    for a in range(len(values)):
        out.append({name: values[(a + b) % len(values)] for b, name in enumerate(order)})
    return out


def _by_name(exprs: list[Any]) -> dict[str, sympy.Symbol]:
    """The symbols a step uses freely, by name.

    `free_symbols` misses the index of a derivative variable (j in d/dz_j), so take every
    Symbol and drop the ones bound by a Sum and the labels of Named quantities.
    """
    from engine.notes.symbols import Named

    syms: dict[str, sympy.Symbol] = {}
    for e in exprs:
        if not isinstance(e, sympy.Basic):
            continue
        bound = {lim[0] for s in e.atoms(sympy.Sum) for lim in s.limits}
        labels = {a.args[0] for a in e.atoms(Named)}
        for s in e.atoms(sympy.Symbol) - bound - labels:
            syms.setdefault(s.name, s)
    return syms


def as_sympy(x: Any) -> sympy.Basic:
    """A SymPy object from a SymPy object or a number; text is refused, never parsed (SymPy
    would evaluate it as Python)."""
    if isinstance(x, str):
        raise EngineError(f"expected a SymPy expression, got text {_side_text(x)!r}")
    try:
        return _sympify(x)
    except sympy.SympifyError as e:
        raise EngineError(f"expected a SymPy expression, got {type(x).__name__}") from e


def _instantiate(side: sympy.Basic, subs: dict) -> sympy.Expr:
    return as_sympy(side).xreplace(subs).doit()


def _entries(expr: sympy.Basic) -> set[sympy.Indexed]:
    return {a for a in expr.atoms(sympy.Indexed)}


def _entry_values(
    entries: set[sympy.Indexed], arrays: dict[str, np.ndarray]
) -> dict[sympy.Indexed, Any]:
    subs = {}
    for e in entries:
        name = e.base.label.name
        if name not in arrays:
            raise EngineError(f"array {name!r} is not declared in the note's `arrays`")
        idx = tuple(int(i) for i in e.indices)
        try:
            subs[e] = arrays[name][idx]
        except IndexError as err:
            raise EngineError(f"{e} is out of range at the sizes tried") from err
    return subs


def _exact(expr: sympy.Expr, subs: dict, side: str) -> mpmath.mpf:
    v = as_sympy(expr).xreplace(subs).evalf(EXACT_DIGITS)
    if v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo) or v.free_symbols:
        raise EngineError(f"the {side} side does not evaluate to a finite number: {v}")
    re, im = v.as_real_imag()
    if not re.is_number or (im != 0 and abs(im) > 1e-40 * max(1, abs(re))):
        raise EngineError(f"the {side} side is not real at the sampled inputs")
    return mpmath.mpf(sympy.Float(re, EXACT_DIGITS)._mpf_)


def _rel(a: Any, b: Any) -> float:
    scale = max(abs(a), abs(b), mpmath.mpf(1e-10))
    return float(abs(a - b) / scale)


def check_index(note: Note, lhs: sympy.Basic, rhs: sympy.Basic, name: str) -> Result:
    """Exact at sizes 2, 3, 4 and every free-index value, numeric at a larger size."""
    arrays, size_order = _declared_arrays(note)
    # Sample only the arrays this step uses: others may have sizes the step never assigns.
    used = {e.base.label.name for side in (lhs, rhs) for e in _entries(as_sympy(side))}
    arrays = {k: v for k, v in arrays.items() if k in used}
    syms = _by_name([lhs, rhs])
    used_sizes = [s for s in size_order if s in syms or _size_in_arrays(s, arrays, lhs, rhs)]
    free_idx = [syms[i] for i in note.indices if i in syms]
    for s in free_idx:
        if note.indices[s.name] not in used_sizes:
            used_sizes.append(note.indices[s.name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact, cx = _index_exact(note, lhs, rhs, arrays, used_sizes, free_idx, syms)
        if cx is not None:
            return Result(name, "fail", "the two sides differ (exact check)", cx, (exact,))
        numeric, cx = _index_numeric(note, lhs, rhs, arrays, used_sizes, free_idx, syms)
    if cx is not None:
        msg = "the two sides differ (numeric check); the exact check passed"
        return Result(name, "fail", msg, cx, (exact, numeric))
    return Result(name, "pass", "verified", None, (exact, numeric))


def _size_in_arrays(size: str, arrays, lhs, rhs) -> bool:
    used = {e.base.label.name for side in (lhs, rhs) for e in _entries(as_sympy(side))}
    return any(size in {str(s) for d in arrays[a][1] for s in d.free_symbols} for a in used)


def _index_tuples(free_idx, sizes, note, limit, rng=None) -> list[tuple[int, ...]]:
    ranges = [range(sizes[note.indices[s.name]]) for s in free_idx]
    total = math.prod(len(r) for r in ranges)
    if total <= limit and rng is None:
        return list(itertools.product(*ranges))
    rng = rng or np.random.default_rng(0)
    return [tuple(int(rng.integers(len(r))) for r in ranges) for _ in range(min(limit, total))]


def _sample_arrays(arrays, sizes, rng, exact: bool, profile: str = "unit"):
    out = {}
    for name, (vtype, shape) in arrays.items():
        concrete = tuple(int(as_sympy(d).subs(_size_subs(sizes))) for d in shape)
        t = TYPES[vtype]
        out[name] = t.exact(rng, concrete) if exact else t.numeric(rng, concrete, profile)
    return out


def _size_subs(sizes: Mapping[str, int]) -> dict:
    return {sympy.Symbol(k, positive=True, integer=True): v for k, v in sizes.items()}


def _index_subs(syms, sizes, free_idx, values) -> dict:
    subs = {syms[k]: sympy.Integer(v) for k, v in sizes.items() if k in syms}
    subs.update({s: sympy.Integer(v) for s, v in zip(free_idx, values, strict=True)})
    return subs


def _index_exact(note, lhs, rhs, arrays, used_sizes, free_idx, syms):
    assignments = _size_assignments(used_sizes, INDEX_EXACT_SIZES) if used_sizes else [{}]
    worst = 0.0
    for sizes in assignments:
        tuples = _index_tuples(free_idx, sizes, note, INDEX_MAX_TUPLES)
        pairs = []
        for values in tuples:
            subs = _index_subs(syms, sizes, free_idx, values)
            pairs.append((values, _instantiate(lhs, subs), _instantiate(rhs, subs)))
        rng = np.random.default_rng([note.seed, 11, *sizes.values()])
        for k in range(INDEX_EXACT_POINTS):
            point = _sample_arrays(arrays, sizes, rng, exact=True)
            pvals = _index_params(note, syms, rng, k, exact=True)
            point.update({s.name: v for s, v in pvals.items()})
            for values, left, right in pairs:
                subs = _entry_values(_entries(left) | _entries(right), point)
                subs.update(pvals)
                lv, rv = _exact(left, subs, "left"), _exact(right, subs, "right")
                err = _rel(lv, rv)
                worst = max(worst, err)
                if err > EXACT_RTOL:
                    detail = _index_detail("exact", assignments, free_idx)
                    cx = _index_cx("exact", sizes, point, free_idx, values, lv, rv, exact=True)
                    return CheckReport("exact", False, detail, err), cx
    return CheckReport("exact", True, _index_detail("exact", assignments, free_idx), worst), None


NON_ANALYTIC = (sympy.Abs, sympy.sign, sympy.Heaviside, sympy.Max, sympy.Min, sympy.floor)
COMPLEX_STEP = 1e-20


class _NumericSide:
    """One side at concrete sizes and index values, as float64 code.

    Derivatives are taken by complex step on the unfolded expression, not by SymPy, so this
    route does not share the exact route's symbolic differentiation. A side with nested or
    higher derivatives, or with a non-analytic function under a derivative, falls back to
    SymPy's derivative (`method` says which was used).
    """

    def __init__(self, side: sympy.Basic, subs: dict, params: list[sympy.Symbol]):
        expr = as_sympy(side).xreplace(subs)
        expr = expr.replace(lambda e: isinstance(e, sympy.Sum), lambda e: e.doit(deep=False))
        derivs = sorted(expr.atoms(sympy.Derivative), key=sympy.default_sort_key)
        self.method = "complex-step" if derivs else "none"
        if any(not self._simple(d) for d in derivs):
            self.method, derivs = "symbolic", []
            expr = expr.doit()
        marks = [sympy.Symbol(f"_deriv{m:03d}") for m in range(len(derivs))]
        top = expr.xreplace(dict(zip(derivs, marks, strict=True))).doit()
        inners = [d.expr.doit() for d in derivs]
        self.wrt = [d.variables[0] for d in derivs]
        found = set().union(*(_entries(e) for e in [top, *inners]))
        self.entries = sorted(found, key=sympy.default_sort_key) + [
            q for q in params if any(e.has(q) for e in [top, *inners])
        ]
        # Named symbols, not Dummy: a Dummy's sort key depends on how many were made before
        # in the process, which reorders the float operations and changes the reported error.
        names = [sympy.Symbol(f"_entry{m:05d}") for m in range(len(self.entries))]
        swap = dict(zip(self.entries, names, strict=True))
        self.top = sympy.lambdify(names + marks, top.xreplace(swap), "numpy", cse=True)
        self.inner = [sympy.lambdify(names, e.xreplace(swap), "numpy", cse=True) for e in inners]

    @staticmethod
    def _simple(d: sympy.Derivative) -> bool:
        return (
            len(d.variables) == 1
            and isinstance(d.variables[0], sympy.Indexed | sympy.Symbol)
            and not d.expr.has(sympy.Derivative)
            and not d.expr.has(*NON_ANALYTIC)
        )

    def __call__(self, value_of: Callable[[Any], float]) -> tuple[complex, float]:
        """The value, and a scale: the largest of |value| and the derivatives it combines
        (a side that is a sum of derivatives cancelling to zero is compared at their size)."""
        x = np.array([value_of(e) for e in self.entries], dtype=float)
        steps = []
        for var, fn in zip(self.wrt, self.inner, strict=True):
            if var not in self.entries:
                steps.append(0.0)
                continue
            xc = x.astype(complex)
            xc[self.entries.index(var)] += 1j * COMPLEX_STEP
            steps.append(float(np.imag(fn(*xc))) / COMPLEX_STEP)
        value = complex(self.top(*x, *steps))
        return value, max([abs(value), *map(abs, steps)])


def _index_numeric(note, lhs, rhs, arrays, used_sizes, free_idx, syms):
    sizes = {s: INDEX_NUMERIC_SIZE - k for k, s in enumerate(used_sizes)}
    rng = np.random.default_rng([note.seed, 12])
    tuples = _index_tuples(free_idx, sizes, note, INDEX_NUMERIC_TUPLES, rng)
    params = [syms[n] for n in note.params if n in syms and n not in note.indices]
    compiled = []
    for values in tuples:
        subs = _index_subs(syms, sizes, free_idx, values)
        compiled.append((values, _NumericSide(lhs, subs, params), _NumericSide(rhs, subs, params)))
    methods = {side.method for _, left, right in compiled for side in (left, right)} - {"none"}
    method = "symbolic" if "symbolic" in methods else next(iter(methods), "none")
    worst = 0.0
    for p, profile in enumerate(PROFILES):
        prng = np.random.default_rng([note.seed, 13, p])
        point = _sample_arrays(arrays, sizes, prng, False, profile)
        pvals = _index_params(note, syms, prng, p, exact=False)
        point.update({s.name: float(v) for s, v in pvals.items()})

        def value_of(e, pvals=pvals, point=point) -> float:
            if e in pvals:
                return float(pvals[e])
            return float(point[e.base.label.name][_int_tuple(e.indices)])

        for values, left, right in compiled:
            with np.errstate(all="ignore"):
                (lv, lscale), (rv, rscale) = left(value_of), right(value_of)
            if not (np.isfinite(lv) and np.isfinite(rv)):
                raise EngineError("a side is not finite at the numeric inputs")
            err = abs(lv.real - rv.real) / max(lscale, rscale, 1e-300)
            worst = max(worst, err)
            if err > NUMERIC_RTOL["complex-step"]:
                detail = _index_detail("numeric", [sizes], free_idx, worst, method)
                cx = _index_cx("numeric", sizes, point, free_idx, values, lv.real, rv.real, False)
                return CheckReport("numeric", False, detail, err), cx
    detail = _index_detail("numeric", [sizes], free_idx, worst, method)
    return CheckReport("numeric", True, detail, worst), None


def _index_params(note: Note, syms, rng, k: int, exact: bool) -> dict[sympy.Symbol, Any]:
    """Values for the note's scalar `params` that an index step uses (e.g. beta1 in a sum).

    They are substituted after the sums are expanded, so a parameter cannot be a sum's limit.
    A name the note also declares as an index (say the step number t) is an index here.
    """
    used = [n for n in note.params if n in syms and n not in note.indices]
    if not used:
        return {}
    values = _param_values(note, rng, k, exact)
    return {syms[n]: values[n] for n in used}


def _int_tuple(idx) -> tuple[int, ...]:
    return tuple(int(i) for i in idx)


def _index_detail(method, assignments, free_idx, worst=None, derivatives="none") -> str:
    names = list(assignments[0])
    if not names:
        where = "scalars"
    elif len(names) == 1:
        where = f"{names[0]}={', '.join(str(a[names[0]]) for a in assignments)}"
    else:
        where = " and ".join(", ".join(f"{k}={v}" for k, v in a.items()) for a in assignments)
    if method == "exact":
        idx = f", every {', '.join(s.name for s in free_idx)}" if free_idx else ""
        return f"exact at {where}{idx}"
    how = {"none": "", "complex-step": ", complex-step", "symbolic": ", SymPy derivatives"}
    return f"numeric at {where}, float64{how[derivatives]}, max rel. err {worst:.1e}"


def _index_cx(check, sizes, point, free_idx, values, lv, rv, exact: bool) -> Counterexample:
    inputs: dict[str, Any] = {s.name: int(v) for s, v in zip(free_idx, values, strict=True)}
    for name, arr in point.items():
        if exact:
            inputs[name] = np.vectorize(str, otypes=[object])(arr).tolist()
        else:
            inputs[name] = np.round(np.asarray(arr, dtype=float), 12).tolist()
    return Counterexample(check, dict(sizes), inputs, (), float(lv), float(rv), float(lv - rv))


# ---------------------------------------------------------------- identities in parameters


def _param_values(note: Note, rng, k: int, exact: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for j, (name, kind) in enumerate(note.params.items()):
        if kind == "integer":
            lo, hi = INTEGER_RANGE
            out[name] = sympy.Integer(lo + (k + j) % (hi - lo + 1))
            continue
        lo, hi = {"real": (-3, 3), "positive": (0, 4), "unit": (0, 1)}[kind]
        if exact:
            while True:
                den = int(rng.integers(2, 17))
                num = int(rng.integers(int(lo * den), int(hi * den) + 1))
                if num != 0 and lo < num / den < hi:
                    out[name] = sympy.Rational(num, den)
                    break
        else:
            out[name] = sympy.Float(float(rng.uniform(lo, hi) or 0.5), 17)
    return out


def _evaluate_side(side: Any, values: dict[str, Any], digits: int, which: str) -> mpmath.mpf:
    if callable(side) and not isinstance(side, sympy.Basic):
        expr = as_sympy(side(dict(values)))
    else:
        syms = _by_name([side])
        unknown = [n for n in syms if n not in values]
        if unknown:
            raise EngineError(f"undeclared parameter(s) {', '.join(sorted(unknown))} in `params`")
        expr = as_sympy(side).xreplace({syms[n]: values[n] for n in syms})
    expr = expr.doit()
    if digits == EXACT_DIGITS:
        return _exact(expr, {}, which)
    v = sympy.N(expr, digits)
    if not v.is_number or v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        raise EngineError(f"the {which} side is not a finite number: {v}")
    return mpmath.mpf(float(sympy.re(v)))


def check_identity(
    note: Note, lhs: Any, rhs: Any, name: str, independent: Callable | None = None
) -> Result:
    """Exact at random rational parameter values (50 digits), then in float64 at other values:
    the left side by the step's `independent` route (its own float computation) when it has
    one, else the same two SymPy sides re-evaluated (a guard against evaluation slips, not a
    second, independent route: its mark says so)."""
    reports = []
    for method in ("exact", "numeric"):
        exact = method == "exact"
        rng = np.random.default_rng([note.seed, 21 if exact else 22])
        worst = 0.0
        digits = EXACT_DIGITS if exact else 15
        tol = EXACT_RTOL if exact else NUMERIC_RTOL["none"]
        for k in range(IDENTITY_POINTS):
            values = _param_values(note, rng, k, exact)
            if independent is not None and not exact:
                lv = _independent_value(independent, values)
            else:
                lv = _evaluate_side(lhs, values, digits, "left")
            rv = _evaluate_side(rhs, values, digits, "right")
            err = _rel(lv, rv)
            worst = max(worst, err)
            if err > tol:
                detail = _identity_detail(note, method, worst, independent)
                reports.append(CheckReport(method, False, detail, err))
                inputs = {n: str(v) for n, v in values.items()}
                cx = Counterexample(method, {}, inputs, (), float(lv), float(rv), float(lv - rv))
                msg = f"the two sides differ ({method} check)"
                return Result(name, "fail", msg, cx, tuple(reports))
        detail = _identity_detail(note, method, worst, independent)
        reports.append(CheckReport(method, True, detail, worst))
    return Result(name, "pass", "verified", None, tuple(reports))


def _independent_value(route: Callable, values: dict[str, Any]) -> mpmath.mpf:
    """The left side by the step's own float64 computation, at the parameter values."""
    floats = {n: int(v) if v.is_Integer else float(v) for n, v in values.items()}
    value = float(route(floats))
    if not np.isfinite(value):
        raise EngineError(f"the independent route gave {value}, not a finite number")
    return mpmath.mpf(value)


def _route_name(route: Callable) -> str:
    doc = (route.__doc__ or "").strip().splitlines()
    if not doc:
        raise EngineError(
            f"independent route {route.__name__}: say what it computes in a docstring"
        )
    return doc[0].rstrip(".")


def _identity_detail(note: Note, method: str, worst: float, route: Callable | None = None) -> str:
    n = IDENTITY_POINTS
    if method == "exact":
        return f"exact at {n} random rational parameter values, {EXACT_DIGITS} digits"
    if route is not None:
        return (
            f"float64 at {n} other random values, the left side by an independent route "
            f"({_route_name(route)}), max rel. err {worst:.1e}"
        )
    # Not an independent route: the same SymPy expressions, evaluated again in float64 at other
    # values. The mark says so (issue 11: a reader must not count it as a second check).
    return (
        f"float64 re-evaluation of the same expressions at {n} other random values "
        f"(not an independent route), max rel. err {worst:.1e}"
    )
