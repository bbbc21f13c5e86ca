"""The exact route: both sides in SymPy at small concrete sizes, compared at rational points."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any

import mpmath
import numpy as np
import sympy
from sympy.core.sympify import _sympify

from engine.backends import sympy_backend
from engine.backends.common import concrete_shape
from engine.backends.sympy_backend import MAX_DAG_SIZE, MAX_TREE_SIZE, dag_size, too_large
from engine.expr import Call, Const, EngineError, contains_derivative
from engine.functions.base import obj
from engine.functions.elementwise import Absolute, Relu, Sign, Step
from engine.functions.probability import XLogY
from engine.types import TYPES
from engine.verify.adjoint import NoAdjoint, gradient_at
from engine.verify.kinks import ExactOrder, Undecided, jumps
from engine.verify.result import CheckReport, Counterexample
from engine.verify.sampling import (
    KinkCoverage,
    constant_points,
    describe_scales,
    exact_point,
    exact_size_assignments,
    input_scales,
    kink_arguments,
    kink_search,
)

# Every size assignment is tried at EXACT_POINTS random rational points of unit magnitude (the
# first assignment also at one point per input scale and at the kink-search points), evaluated
# with EXACT_DIGITS significant digits plus FAST_GUARD_DIGITS, each value carrying a running
# bound on its rounding error. Entries are compared relative to their own magnitude, with no
# absolute floor (a factor 2 between two values of 1e-44 is a difference), after discounting
# ROUNDING_SAFETY times the two bounds (1 - sigmoid(2500) is 0 at 70 digits, a cancellation, not
# a value). A false formula that is analytic in its inputs differs at a random point with
# probability one. Measured (benchmarks/noise.py, RESULTS.md): true claims differ by at most
# 2.0e-57 relative; a relative 1e-6 error planted in one entry shows as about 1e-6: EXACT_RTOL
# = 1e-30 sits far from both.
EXACT_DIGITS = 50
FAST_GUARD_DIGITS = 20  # extra working digits of the mpmath pass over EXACT_DIGITS
ROUNDING_SAFETY = 10
EXACT_POINTS = 2
EXACT_RTOL = 1e-30
# A difference that involves a grad/jacobian placeholder is re-checked with the placeholders also
# computed RECHECK_DIGITS finer: what moves between the two is rounding (Sides._measured_bounds).
RECHECK_DIGITS = 30
# Input entries at the small sizes; beyond this use size symbols. Multi-head attention over
# Q, K, V, G of shape [B, h, n, dh] has 480 at B, h, n, dh = 2, 3, 4, 5; its derived program
# verifies in about 25 s (exact and numeric, tests/test_tensor.py). The large assignment (every
# size >= 4) keeps the older bound: it is an addition, skipped beyond it, and at 1000 entries
# it alone took 15 s of a 20 s attention-gradient claim.
EXACT_MAX_ENTRIES = 1000
EXACT_MAX_LARGE_ENTRIES = 400


def exact_check(lhs, rhs, used, order, seed) -> tuple[CheckReport, Counterexample | None]:
    """Compare the two sides exactly at the small size assignments (see the module docstring)."""
    worst = 0.0
    assignments = exact_size_assignments(order)
    scales = input_scales(lhs, rhs)
    coverage = KinkCoverage.of(kink_arguments(lhs, rhs))
    done: list[dict[str, int]] = []
    skipped: list[dict[str, int]] = []
    outside = 0
    for a, sizes in enumerate(assignments):
        entries = sum(math.prod(concrete_shape(v.shape, sizes)) for v in used.values())
        large = a == 2
        if entries > (EXACT_MAX_LARGE_ENTRIES if large else EXACT_MAX_ENTRIES):
            if large:
                skipped.append(sizes)
                continue
            raise EngineError(
                f"too many input entries ({entries}) for the exact check; use size symbols "
                "instead of large literal sizes"
            )
        symbols = sympy_backend.symbol_arrays(used, sizes)
        try:
            with not_real_guard():
                sides = Sides.build(lhs, rhs, symbols, sizes)
        except EngineError:
            if large:  # the large assignment is an addition; too big a claim skips it
                skipped.append(sizes)
                continue
            raise
        done.append(sizes)
        rng = np.random.default_rng([seed, 1, *sizes.values()])
        # (point, required): a point at an extra scale or from the kink search may lie outside
        # the claim's domain (log(x + 5) at x = -15); it is then left out, not an error
        points = [
            (exact_point(used, sizes, rng, None), True) for _ in range(1 if large else EXACT_POINTS)
        ]
        if a == 0:
            points += [(exact_point(used, sizes, rng, s), False) for s in scales]
            kinked = bool(coverage.arguments)
            points += [(p, False) for p in constant_points(used, sizes, rng, scales, kinked)]
            if coverage.arguments:
                for point, _ in points:
                    coverage.add(_as_float(point), sizes)
                extra = kink_search(coverage, used, sizes, rng, scales)
                extra += coverage.boundary_points(used, sizes)
                points += [(_rationalize(p, used), False) for p in extra]
        for point, required in points:
            subs = {
                symbols[n][idx]: point[n][idx] for n in used for idx in np.ndindex(point[n].shape)
            }
            try:
                err, k, lv, rv = sides.compare(subs)
            except EngineError:
                if required:
                    raise
                outside += 1
                continue
            worst = max(worst, err)
            if err > EXACT_RTOL:
                idx = np.unravel_index(k, lv.shape) if lv.shape else ()
                cx = Counterexample(
                    "exact",
                    dict(sizes),
                    {n: _rational_list(point[n]) for n in used},
                    tuple(int(i) for i in idx),
                    float(lv.flat[k]),
                    float(rv.flat[k]),
                    float(lv.flat[k] - rv.flat[k]),
                    values_text=_values_text(lv.flat[k], rv.flat[k]),
                )
                detail = _detail(order, done, skipped, scales, coverage, outside)
                return CheckReport("exact", False, detail, err), cx
    return CheckReport(
        "exact", True, _detail(order, done, skipped, scales, coverage, outside), worst
    ), None


def _as_float(point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, dtype=float) for k, v in point.items()}


def _rationalize(
    point: dict[str, np.ndarray], used, decimal: bool = False
) -> dict[str, np.ndarray]:
    """A float point as exact rationals; rows of simplex variables renormalized exactly. With
    `decimal`, each entry is the shortest decimal that rounds to the float (-1.3 as -13/10,
    not -5854679515581645/4503599627370496): a counterexample the reader can retype."""
    out = {}
    for name, v in point.items():
        own = TYPES[used[name].vtype].rationalize
        if own is not None:  # orthogonal: exactly of its kind, not entry by entry
            out[name] = own(v)
            continue
        arr = np.empty(np.shape(v), dtype=object)
        for idx in np.ndindex(arr.shape):
            f = float(v[idx])
            arr[idx] = sympy.Rational(repr(f)) if decimal else sympy.Rational(f)
        if TYPES[used[name].vtype].sums_to_one and arr.ndim:
            for idx in np.ndindex(arr.shape[:-1]):
                total = sympy.Add(*arr[idx].tolist())
                arr[idx] = np.array([x / total for x in arr[idx]], dtype=object)
        out[name] = arr
    return out


class SharedWork:
    """What the exact checks of one derived program share (`sharing()`): every gradient's claim
    is `grad(L, x) == dx` with the same L and steps, at the same size assignments and points.

    `exprs` maps a size assignment to the SymPy arrays of the claims' expression nodes (by node
    identity; `alive` keeps every node referenced, so no identity is reused while sharing), except
    derivative nodes, whose placeholders belong to one claim. `gradients` maps (a scalar's SymPy
    expression, a point) to the gradient of that scalar with respect to every symbol of the point,
    from one reverse sweep (`adjoint.gradient_at`): the sweep that gives dL/dWq gives dL/dX too.
    `values` maps a point to the mpmath values of right-side subexpressions (a right side holds
    no placeholder, so its values depend on the point alone). Each claim is still compared on its
    own: its left side's placeholders come from the sweep, its right side from the values."""

    def __init__(self) -> None:
        self.exprs: dict[tuple, dict[int, np.ndarray]] = {}
        self.gradients: dict[tuple, dict[sympy.Symbol, tuple[Any, Any]]] = {}
        self.values: dict[tuple, dict[int, tuple[Any, Any]]] = {}
        self.alive: list[Any] = []


_SHARED: contextvars.ContextVar[SharedWork | None] = contextvars.ContextVar(
    "exact_shared", default=None
)


@contextlib.contextmanager
def sharing() -> Iterator[SharedWork]:
    """Share the exact route's expressions and reverse sweeps between the claims checked inside
    (see SharedWork); each claim is still compared on its own."""
    work = SharedWork()
    token = _SHARED.set(work)
    try:
        yield work
    finally:
        _SHARED.reset(token)


class Sides:
    """Both sides in SymPy at one size assignment. A grad/jacobian whose body holds no further
    derivative is left as placeholder symbols whose values `adjoint.gradient_at` supplies at each
    point (exact to the working precision); where it cannot, the sides are rebuilt with
    `sympy.diff` (slow on large trees, but it differentiates anything SymPy can)."""

    def __init__(self, lhs, rhs, symbols, sizes, deferred: bool = True):
        self.lhs, self.rhs, self.symbols, self.sizes = lhs, rhs, symbols, sizes
        self.deferred: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        self.errors: dict[sympy.Symbol, Any] = {}  # rounding bound of each placeholder's value
        # a claim that writes `inf` may have infinite entries: equal infinities then agree
        self.infinite = any(
            isinstance(n, Const) and n.value.is_infinite for side in (lhs, rhs) for n in side.walk()
        )
        if not deferred:
            self.left = sympy_backend.evaluate(lhs, symbols, sizes)
            self.right = sympy_backend.evaluate(rhs, symbols, sizes)
            return
        # Unevaluated: SymPy's automatic evaluation on construction (Mul.flatten's `e.is_zero`
        # on the exponent of exp(u), erf.eval's assumptions, logcombine) walks the tree of its
        # arguments, minutes per entry for a transformer block whose tree has more than 1e12
        # nodes and whose DAG has about 1e5. Both fast passes only evaluate the expressions at
        # points, so the values are the same; the limit is on the DAG (MAX_DAG_SIZE).
        with sympy.evaluate(False):
            self._build()

    @classmethod
    def build(cls, lhs, rhs, symbols, sizes) -> Sides:
        # a nested derivative (a Hessian) differentiates its inner one: both symbolic, by diff
        nested = any(
            isinstance(n, Call) and n.fn in ("grad", "jacobian") and contains_derivative(n.args[0])
            for side in (lhs, rhs)
            for n in side.walk()
        )
        return cls(lhs, rhs, symbols, sizes, deferred=not nested)

    def _build(self) -> None:
        shared = _SHARED.get()
        memo: dict[int, np.ndarray] = {}
        common = memo
        if shared is not None:
            shared.alive.append((self.lhs, self.rhs))
            common = shared.exprs.setdefault(tuple(sorted(self.sizes.items())), {})
        self.left = self._evaluate(self.lhs, memo, common)
        self.right = self._evaluate(self.rhs, memo, common)

    def _evaluate(self, expr, memo, common) -> np.ndarray:
        """`memo` holds this claim's placeholders; `common` everything else (shared)."""
        seen: set[int] = set()
        size = 0
        for node in expr.walk():
            if id(node) in memo:
                continue
            if id(node) in common:
                memo[id(node)] = common[id(node)]
            elif (
                isinstance(node, Call)
                and node.fn in ("grad", "jacobian")
                and not contains_derivative(node.args[0])
            ):
                memo[id(node)] = self._placeholders(node, memo)
            else:
                value = sympy_backend._eval_node(node, memo, self.symbols, self.sizes)
                memo[id(node)] = common[id(node)] = value
            # the fast passes walk the DAG; the slow fallbacks check the tree (values_at)
            size += sum(dag_size(v, seen) for v in memo[id(node)].flat)
            if size > MAX_DAG_SIZE:
                raise too_large(MAX_DAG_SIZE, "distinct subexpressions")
        return memo[id(expr)]

    def _placeholders(self, node: Call, memo) -> np.ndarray:
        f = memo[id(node.args[0])]
        xs = obj(self.symbols[node.args[1].name])
        shape = xs.shape if node.fn == "grad" else f.shape + xs.shape
        k = len(self.deferred)
        marks = np.empty(shape, dtype=object)
        for idx in np.ndindex(shape):
            marks[idx] = sympy.Symbol(f"_d{k}_{'_'.join(map(str, idx))}", real=True)
        self.deferred.append((node.fn, f, xs, marks))
        return obj(marks)

    def _with_derivatives(self, subs: dict, digits: int) -> dict:
        """`subs` plus the value of every placeholder at that point, to `digits` digits."""
        if not self.deferred:
            return subs
        out = dict(subs)
        with mpmath.workdps(digits + FAST_GUARD_DIGITS):
            point = {s: mpmath.mpf(v.p) / v.q for s, v in subs.items()}
            shared = _SHARED.get()
            at = frozenset(subs.items()) if shared is not None else None
            for fn, f, xs, marks in self.deferred:
                wrt = list(xs.flat)
                rows = [f[()]] if fn == "grad" else list(f.flat)
                for i, row in enumerate(rows):
                    if shared is None:
                        grad = gradient_at(_sympify(row), wrt, point, subs)
                    else:  # one sweep for every symbol of the point, kept for the other claims
                        key = (id(row), digits, at)
                        every = shared.gradients.get(key)
                        if every is None:
                            names = list(point)
                            pairs = gradient_at(_sympify(row), names, point, subs)
                            every = shared.gradients[key] = dict(zip(names, pairs, strict=True))
                            shared.alive.append(row)
                        zero = (mpmath.mpf(0), mpmath.mpf(0))  # (a symbol f lacks)
                        grad = [every.get(x, zero) for x in wrt]
                    targets = marks.reshape(len(rows), -1)[i]
                    for mark, (g, err) in zip(targets, grad, strict=True):
                        out[mark] = sympy.Float(g, digits + FAST_GUARD_DIGITS)
                        self.errors[mark] = err
        return out

    def compare(self, subs: dict) -> tuple[float, int, np.ndarray, np.ndarray]:
        """(largest relative error, its flat index, lhs, rhs) at one rational point."""
        try:
            return self._compare(subs)
        except NoAdjoint:
            rebuilt = Sides(self.lhs, self.rhs, self.symbols, self.sizes, deferred=False)
            self.left, self.right, self.deferred = rebuilt.left, rebuilt.right, []
            return self._compare(subs)

    def values(self, subs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(lhs, its rounding bounds, rhs, its rounding bounds) at one rational point."""
        try:
            return self._values(subs)
        except NoAdjoint:
            rebuilt = Sides(self.lhs, self.rhs, self.symbols, self.sizes, deferred=False)
            self.left, self.right, self.deferred = rebuilt.left, rebuilt.right, []
            return self._values(subs)

    def _values(
        self, subs: dict, recheck: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        with not_real_guard():
            at = self._with_derivatives(subs, EXACT_DIGITS)
            if recheck and self.deferred:
                self._measured_bounds(subs, at)
            lv, le = values_at(self.left, at, EXACT_DIGITS, "left", self.errors, self.infinite)
            shared, memo, known = _SHARED.get(), None, self.errors
            if shared is not None and not contains_derivative(self.rhs):
                # a right side without placeholders depends on the point alone: its values are
                # shared with the other claims (a derived program's gradients share its steps)
                key = (EXACT_DIGITS, self.infinite, frozenset(subs.items()))
                memo, known = shared.values.setdefault(key, {}), {}
            rv, re = values_at(self.right, at, EXACT_DIGITS, "right", known, self.infinite, memo)
        return lv, le, rv, re

    def _measured_bounds(self, subs: dict, at: dict) -> None:
        """Widen each placeholder's rounding bound by how far its value moves at RECHECK_DIGITS
        more digits. The sweep's own bound covers the rounding of its products along paths, not
        that of the forward values its partials are: in jacobian(c * sum(c), x) with
        c = log_softmax(x) - mean(log_softmax(x)), sum(c) is 0 plus 1e-70 of rounding, and
        that residue times dc/dx made an exact zero Jacobian read -4.5e-72."""
        low = dict(self.errors)
        finer = self._with_derivatives(subs, EXACT_DIGITS + RECHECK_DIGITS)
        with mpmath.workdps(EXACT_DIGITS + FAST_GUARD_DIGITS):
            for mark, err in low.items():
                moved = abs(_mp_number(at[mark]) - _mp_number(finer[mark]))
                self.errors[mark] = err + moved

    def _compare(self, subs: dict) -> tuple[float, int, np.ndarray, np.ndarray]:
        lv, le, rv, re = self._values(subs)
        with not_real_guard():
            errors = own_relative_errors(lv, rv, le + re)
        if self.deferred and errors.size and float(np.max(errors)) > EXACT_RTOL:
            # a difference to report: first make sure it is not the sweep's own rounding
            lv, le, rv, re = self._values(subs, recheck=True)
            with not_real_guard():
                errors = own_relative_errors(lv, rv, le + re)
        k = int(np.argmax(errors)) if errors.size else 0
        return (float(errors[k]) if errors.size else 0.0), k, lv, rv


def _mp_number(v: sympy.Expr) -> Any:
    """A point's entry (a Rational) or a placeholder's value (a Float) as an mpmath number, at
    the working precision."""
    return mpmath.mpf(v.p) / v.q if v.is_Rational else mpmath.mpf(v._mpf_)


def own_relative_errors(lv: np.ndarray, rv: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """|lhs - rhs| per entry, less ROUNDING_SAFETY times the two entries' rounding bounds,
    relative to the larger of the two entries themselves (no absolute floor)."""
    out = np.zeros(lv.size)
    with mpmath.workdps(EXACT_DIGITS + FAST_GUARD_DIGITS):
        bound = np.asarray(bound, dtype=object)
    for i, (a, b, e) in enumerate(zip(lv.flat, rv.flat, bound.flat, strict=True)):
        if mpmath.isinf(a) or mpmath.isinf(b):  # (only where the claim writes `inf`)
            out[i] = 0.0 if a == b else math.inf
            continue
        diff = abs(a - b) - ROUNDING_SAFETY * e
        if diff <= 0:
            continue
        out[i] = float(diff / max(abs(a), abs(b)))
    return out


def values_at(
    arr: np.ndarray,
    subs: dict,
    digits: int,
    side: str,
    known: dict | None = None,
    infinite: bool = False,
    memo: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The entries of `arr` at the rational point `subs` and a bound on each one's rounding
    error; `known` holds the bounds of substituted values that are not exact (placeholders).
    With `infinite` (the claim writes `inf`), an entry may be +-inf (never NaN)."""
    fast = _fast_values(arr, subs, digits + FAST_GUARD_DIGITS, known or {}, infinite, memo)
    if fast is not None:
        return fast
    # entry-by-entry substitution and evalf walk each entry as a tree
    seen: dict[int, int] = {}
    if sum(sympy_backend.tree_size(v, seen) for v in arr.flat) > MAX_TREE_SIZE:
        raise too_large(MAX_TREE_SIZE, "terms")
    values = _exact_values(arr, subs, side, digits, infinite)
    # evalf gives `digits` correct digits (relative); placeholders' own error comes on top
    extra = sum(known.values(), mpmath.mpf(0)) if known else 0
    bound = np.empty(values.shape, dtype=object)
    for idx in np.ndindex(values.shape):
        finite = mpmath.isfinite(values[idx])
        bound[idx] = abs(values[idx]) * mpmath.mpf(10) ** (1 - digits) + extra if finite else 0
    return values, bound


@contextlib.contextmanager
def not_real_guard() -> Iterator[None]:
    """SymPy raises ValueError when relu/step/abs/sign meet a complex value (say relu(log(x))
    at a negative x): report that as the clean error it is, not as a traceback."""
    try:
        yield
    except (ValueError, TypeError) as e:
        if "comparable" not in str(e) and "Real" not in str(e) and "relational" not in str(e):
            raise
        raise EngineError(
            "the claim is not real at the sampled inputs (a complex value reached relu, step, "
            "abs or sign: log or sqrt of a negative value?); declare such variables 'positive'"
        ) from None


def _detail(order, done, skipped, scales, coverage, outside) -> str:
    if not order:
        head = f"exact at {EXACT_POINTS} rational points, {EXACT_DIGITS} digits"
    else:
        head = "exact at " + " and ".join(", ".join(f"{k}={v}" for k, v in a.items()) for a in done)
    extras = [describe_scales(scales), coverage.describe()]
    if skipped:
        extras.append("sizes >= 4 skipped (too large)")
    if outside:
        extras.append(f"{outside} point(s) outside the domain left out")
    extra = ", ".join(e for e in extras if e)
    return f"{head} ({extra})" if extra else head


def _values_text(a, b) -> str | None:
    """The two values as text when floats cannot show them apart."""
    if 1e-300 < abs(float(a)) < 1e300 and 1e-300 < abs(float(b)) < 1e300:
        return None
    with mpmath.workdps(12):
        diff = mpmath.nstr(a - b, 3)
        return f"lhs = {mpmath.nstr(a, 10)}, rhs = {mpmath.nstr(b, 10)}, difference = {diff}"


def _mp_relu(v):
    return v if v > 0 else mpmath.mpf(0)


def _mp_step(v):
    return mpmath.mpf(1) if v > 0 else mpmath.mpf(0)


def _mp_sign(v):
    return mpmath.mpf(mpmath.sign(v))


_MPMATH = {
    sympy.exp: mpmath.exp,
    sympy.log: mpmath.log,
    sympy.tanh: mpmath.tanh,
    sympy.sin: mpmath.sin,
    sympy.cos: mpmath.cos,
    sympy.erf: mpmath.erf,
    sympy.Abs: abs,
    Absolute: abs,
    Relu: _mp_relu,
    Step: _mp_step,
    Sign: _mp_sign,
}


# |f'(a)| for the running error bound (f(a) = r); None for a step or sign (a jump at 0).
_SLOPES = {
    sympy.exp: lambda a, r: r,
    sympy.log: lambda a, r: 1 / a,
    sympy.tanh: lambda a, r: 1 - r * r,
    sympy.sin: lambda a, r: mpmath.cos(a),
    sympy.cos: lambda a, r: mpmath.sin(a),
    sympy.erf: lambda a, r: 2 * mpmath.exp(-a * a),
    sympy.Abs: lambda a, r: 1,
    Absolute: lambda a, r: 1,
    Relu: lambda a, r: 1,
    Step: lambda a, r: None,
    Sign: lambda a, r: None,
}


class _NotFast(Exception):
    """An entry the mpmath pass leaves to SymPy's evalf (complex, infinite or unknown)."""


def _fast_values(
    arr: np.ndarray,
    subs: dict,
    digits: int,
    known: dict,
    infinite: bool = False,
    memo: dict | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The entries at the rational point `subs`, by one mpmath pass at `digits` digits that
    evaluates each common subexpression once (an entry-by-entry `evalf` redoes the softmax
    denominators in every entry: 4x slower on attention-grad-Q), with a running bound on each
    value's rounding error (first-order error analysis: 1 - sigmoid(2500) is 0 at 70 digits,
    with a bound of 1e-70, not a value to compare).

    Functions other than + * ** and those in _MPMATH are evaluated by `evalf`. A jump's branch
    (step, sign, where) that rounding leaves open is decided exactly (engine/verify/kinks.py).
    Returns None when a value is complex, infinite or undefined, or such a branch depends on a
    placeholder's value; the caller then uses `_exact_values`.
    """
    memo = {} if memo is None else memo  # (id of a node -> (value, bound)); may be shared
    u = mpmath.mpf(10) ** (-digits)
    orders: list[ExactOrder] = []  # made on the first jump only (a pass over the point)

    def decided(e: sympy.Basic, args: list, errs: list) -> list:
        """A jump's arguments with the compared ones in the exact order where rounding leaves
        it open (engine/verify/kinks.py); a placeholder among them leaves it to evalf."""
        if not orders:
            orders.append(ExactOrder.of_substitutions(subs))
        try:
            out = orders[0].surrogates(e, args, errs)
        except Undecided:
            raise _NotFast from None
        return args if out is None else out

    def value(e: sympy.Basic):
        # keyed by identity: the exact route's expressions are unevaluated and so not hash-consed;
        # a lookup by value compares equal-looking subtrees node by node (39 million __eq__ calls
        # for A^20 == A^10 @ A^10)
        got = memo.get(id(e))
        if got is not None:
            return got
        if e.is_Symbol:
            r = point[e]
            err = known.get(e, u * abs(r))
        elif e.is_Rational:
            r = mpmath.mpf(e.p) / e.q
            err = u * abs(r)
        elif infinite and e in (sympy.oo, -sympy.oo):
            r, err = (mpmath.inf if e == sympy.oo else -mpmath.inf), mpmath.mpf(0)
        elif e.is_Add:
            parts = [value(a) for a in e.args]
            r = mpmath.fsum(v for v, _ in parts)
            err = mpmath.fsum(x for _, x in parts) + u * abs(r)
        elif e.is_Mul:
            parts = [value(a) for a in e.args]
            r = mpmath.fprod(v for v, _ in parts)
            err = u * abs(r)
            for i, (_, x) in enumerate(parts):
                if x:
                    err += x * abs(mpmath.fprod(v for j, (v, _) in enumerate(parts) if j != i))
        elif e.is_Pow:
            base, power = e.args
            b, eb = value(base)
            if power.is_Integer:
                k = int(power)
                r = b**k
                err = u * abs(r)
                if eb:
                    err += abs(k) * abs(b ** (k - 1)) * eb
            else:
                p, ep = value(power)
                r = mpmath.power(b, p)
                err = u * abs(r)
                if eb:
                    err += abs(p * mpmath.power(b, p - 1)) * eb
                if ep and r:  # 0 ** p is 0 for every p > 0: no error from the exponent
                    err += abs(r * mpmath.log(b)) * ep
        elif e.func in _MPMATH and len(e.args) == 1:
            a, ea = value(e.args[0])
            if jumps(e.func):  # step, sign: the branch decided exactly where rounding cannot
                a = decided(e, [a], [ea])[0]
            r = _MPMATH[e.func](a)
            slope = _SLOPES[e.func](a, r)
            err = u * abs(r)
            if slope is not None and ea:
                err += abs(slope) * ea
        elif hasattr(e.func, "mp_value"):  # maximum, clip, where (engine/functions/select.py)
            parts = [value(a) for a in e.args]
            args = [v for v, _ in parts]
            if jumps(e.func):  # where, a sort's slot, argmax: a branch rounding cannot settle
                args = decided(e, args, [x for _, x in parts])
            r = e.func.mp_value(*args)
            err = u * abs(r) if mpmath.isfinite(r) else mpmath.mpf(0)
            for (_, ea), slope in zip(parts, e.func.mp_partials(r, *args), strict=True):
                if slope is not None and ea and slope:  # (None: a mask, decided above)
                    err += abs(slope) * ea
        elif e.func is XLogY:
            x, ex = value(e.args[0])
            y, ey = value(e.args[1])
            if x == 0 and not ex:
                r, err = mpmath.mpf(0), mpmath.mpf(0)
            else:
                r = x * mpmath.log(y)
                err = abs(mpmath.log(y)) * ex + abs(x / y) * ey + u * abs(r)
        else:
            v = e.xreplace(subs).evalf(digits)
            if infinite and v in (sympy.oo, -sympy.oo):
                v = sympy.Float(v)
            if not v.is_Float:
                raise _NotFast
            r = mpmath.mpf(v._mpf_)
            err = 10 * u * abs(r) + sum(known.values(), mpmath.mpf(0))
        if isinstance(r, mpmath.mpc):
            if r.imag != 0:
                raise _NotFast
            r = r.real
        if infinite and mpmath.isinf(r):
            err = mpmath.mpf(0)  # an infinity is exact (exp(-inf) = 0 carries no error)
        memo[id(e)] = (r, err)
        return r, err

    out = np.empty(arr.shape, dtype=object)
    bound = np.empty(arr.shape, dtype=object)
    try:
        with mpmath.workdps(digits):
            point = {s: _mp_number(v) for s, v in subs.items()}
            for idx in np.ndindex(arr.shape):
                r, err = value(_sympify(arr[idx]))
                if not mpmath.isfinite(r) and not (infinite and mpmath.isinf(r)):
                    return None
                out[idx], bound[idx] = r, err
    except (_NotFast, ZeroDivisionError, RecursionError, ValueError, TypeError, KeyError):
        return None
    return out, bound


def _undecided_jump(v: sympy.Expr) -> bool:
    """Whether a step or sign in `v` stayed a call at numbers (engine.functions.elementwise's
    evalf leaves one undecided within rounding of 0)."""
    from engine.functions.elementwise import Sign, Step

    return any(not a.free_symbols for f in v.atoms(Sign, Step) for a in f.args)


def _exact_values(
    arr: np.ndarray, subs: dict, side: str, digits: int, infinite: bool = False
) -> np.ndarray:
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        # strict conversion (numbers only, never text): user input is never sympified
        v = _sympify(arr[idx]).xreplace(subs).evalf(digits)
        if infinite and v in (sympy.oo, -sympy.oo):
            out[idx] = mpmath.inf if v == sympy.oo else -mpmath.inf
            continue
        if v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
            raise EngineError(f"the {side} side is not finite at the sampled inputs")
        re, im = v.as_real_imag()
        # an unevaluated part (Heaviside of a complex value) is not a Number: not real either
        numbers = isinstance(re, sympy.Number) and isinstance(im, sympy.Number)
        if not numbers and _undecided_jump(v):
            raise EngineError(
                f"the {side} side has a step or sign whose argument is within rounding of its "
                "jump at 0 at the sampled inputs (an exact zero the check cannot prove)"
            )
        if not numbers or (im != 0 and abs(im) > 1e-40 * max(1, abs(re))):
            raise EngineError(
                f"the {side} side is not real at the sampled inputs (log or sqrt of a negative "
                "value?); declare such variables 'positive'"
            )
        # mpf() rounds to the working precision, which is float64's (15 digits) by default
        with mpmath.workdps(digits):
            out[idx] = mpmath.mpf(sympy.Float(re, digits)._mpf_)
    return out


def _rational_list(arr: np.ndarray) -> Any:
    if arr.ndim == 0:
        return str(arr[()])
    return [_rational_list(np.asarray(a, dtype=object)) for a in arr]
