"""High-precision re-evaluation of a point where float64 saw a difference: float64 never judges.

The numeric route's own NumPy forms are run on object arrays of `HP` numbers (mpmath complex
numbers at a chosen precision), so the high-precision value is computed by the same formulas at
the same inputs (the float64 numbers drawn, exact binary values) with only the rounding changed.
Derivatives are complex steps of 10**-(digits/2) (truncation 10**-digits), taken only along the
coordinates the failing entry needs.

A kink's branch (relu, clip, max, sort, where) is taken by comparing two values. Where they
agree to within the working precision (1 + e^-300 against 1 ties at 80 digits), rounding chose
the branch; such a near tie is recorded, and the point is evaluated again at ESCALATION times the
digits (and that again), where a difference of 10**-(ESCALATION**2 * HIGH_DIGITS - 8) shows. A
tie that remains is taken as a tie (the kink's convention); `confirm` says so, and the numeric
route leaves such a point out unless it is one of the ordinary (required) profiles.
"""

from __future__ import annotations

import contextvars

import mpmath
import numpy as np
import sympy

from engine.backends.common import resolve_params
from engine.expr import Call, Const, EngineError, Expr, Ref, Size, Var
from engine.functions.base import SMOOTH_BRANCH

# Evaluated at LOW_DIGITS and at HIGH_DIGITS; what changes between the two is rounding, and a
# difference within ROUNDING_SAFETY times that change is not a difference. What remains, relative
# to the entries' own magnitude, is a real difference when it exceeds CONFIRM_RTOL.
LOW_DIGITS = 40
HIGH_DIGITS = 80
ROUNDING_SAFETY = 1000
CONFIRM_RTOL = 1e-25
MAX_WORK = 2_000_000  # input entries times evaluations; beyond this the point is too large
ESCALATION = 4  # the precision factor of each further evaluation, where a near tie was recorded
TIE_GUARD = 8  # digits of the working precision below which two compared values are a near tie

# Set while a point is evaluated: a list that comparisons of HP numbers append near ties to.
_NEAR_TIES: contextvars.ContextVar[list | None] = contextvars.ContextVar("near_ties", default=None)


def _compared(a, b) -> None:
    """Record a comparison of the real parts a and b that rounding may have decided: they agree
    to within TIE_GUARD digits of the working precision (relative, or absolute below 1)."""
    ties = _NEAR_TIES.get()
    if ties is not None and not ties and not SMOOTH_BRANCH.get():
        scale = max(abs(a), abs(b), 1)
        if abs(a - b) <= scale * mpmath.mpf(10) ** (TIE_GUARD - mpmath.mp.dps):
            ties.append((a, b))


class HP:
    """A number at high precision that NumPy's object arrays can compute with (np.exp calls
    `.exp()`); complex, so that complex steps go through, compared by its real part."""

    __slots__ = ("v",)
    ordered_by_real_part = True  # engine/functions/sorting.py sorts HP arrays by themselves

    def __init__(self, v):
        self.v = v if isinstance(v, mpmath.mpc) else mpmath.mpc(v)

    @staticmethod
    def _of(o):
        if isinstance(o, np.ndarray) and o.shape == ():
            o = o[()]
        return o.v if isinstance(o, HP) else o

    def __add__(self, o):
        return HP(self.v + HP._of(o))

    def __radd__(self, o):
        return HP(HP._of(o) + self.v)

    def __sub__(self, o):
        return HP(self.v - HP._of(o))

    def __rsub__(self, o):
        return HP(HP._of(o) - self.v)

    def __mul__(self, o):
        return HP(self.v * HP._of(o))

    def __rmul__(self, o):
        return HP(HP._of(o) * self.v)

    def __truediv__(self, o):
        return HP(self.v / HP._of(o))

    def __rtruediv__(self, o):
        return HP(HP._of(o) / self.v)

    def __pow__(self, o):
        o = HP._of(o)
        if isinstance(o, int | float) and float(o).is_integer():
            return HP(self.v ** int(o))
        return HP(mpmath.power(self.v, o))

    def __rpow__(self, o):
        return HP(mpmath.power(HP._of(o), self.v))

    def __neg__(self):
        return HP(-self.v)

    def __pos__(self):
        return self

    def __abs__(self):  # |x| continued for complex steps: the sign of the real part
        _compared(self.v.real, 0)
        return HP(self.v if self.v.real >= 0 else -self.v)

    @staticmethod
    def _re(o):
        """The real part of a number, an HP or a 0-d array of either, as an mpmath number."""
        if isinstance(o, np.ndarray):
            o = o[()]
        if isinstance(o, HP):
            return o.v.real
        return mpmath.mpf(float(np.real(o)))

    def __lt__(self, o):
        b = HP._re(o)
        _compared(self.v.real, b)
        return self.v.real < b

    def __le__(self, o):
        b = HP._re(o)
        _compared(self.v.real, b)
        return self.v.real <= b

    def __gt__(self, o):
        b = HP._re(o)
        _compared(self.v.real, b)
        return self.v.real > b

    def __ge__(self, o):
        b = HP._re(o)
        _compared(self.v.real, b)
        return self.v.real >= b

    def __eq__(self, o):
        b = HP._of(o)
        if isinstance(b, mpmath.mpc | mpmath.mpf | int | float):
            _compared(self.v.real, mpmath.mpc(b).real)
        return self.v == b

    def __hash__(self):
        return hash(self.v)

    def __float__(self):
        return float(self.v.real)

    def _real_domain(self):
        if self.v.real < 0 and abs(self.v.imag) <= abs(self.v.real):
            raise ArithmeticError("outside the real domain")

    def exp(self):
        return HP(mpmath.exp(self.v))

    def log(self):
        self._real_domain()
        return HP(mpmath.log(self.v))

    def log1p(self):
        return HP(mpmath.log(1 + self.v))

    def expm1(self):
        return HP(mpmath.expm1(self.v))

    def sqrt(self):
        self._real_domain()
        return HP(mpmath.sqrt(self.v))

    def tanh(self):
        return HP(mpmath.tanh(self.v))

    def sin(self):
        return HP(mpmath.sin(self.v))

    def cos(self):
        return HP(mpmath.cos(self.v))

    def erf(self):
        return HP(mpmath.erf(self.v))

    def conjugate(self):
        return HP(mpmath.conj(self.v))


def confirm(
    lhs: Expr, rhs: Expr, values: dict[str, np.ndarray], sizes: dict[str, int], entry: tuple
) -> tuple[float, str, bool] | None:
    """The relative difference of the two sides at `entry` at high precision (0 when float64
    rounding explains it), the two values and the digits as text, and whether a kink's branch
    stayed within rounding of its tie at the highest precision tried; None when it cannot be
    decided."""

    def pair(digits: int):
        out = [_entry(side, values, sizes, entry, digits) for side in (lhs, rhs)]
        return None if any(p is None for p in out) else out

    got = _at_two_precisions(pair)
    if got is None:
        return None
    (l1, r1), (l2, r2), high, tied = got
    with mpmath.workdps(high):
        if any(abs(v.imag) > 1e-20 * max(1, abs(v.real)) for v in (l2, r2)):
            return None
        l1, r1, l2, r2 = (v.real for v in (l1, r1, l2, r2))
        noise = abs(l1 - l2) + abs(r1 - r2)
        diff = max(abs(l2 - r2) - ROUNDING_SAFETY * noise, 0)
        err = 0.0 if diff == 0 else float(diff / max(abs(l2), abs(r2)))
        text = f"lhs = {mpmath.nstr(l2, 12)}, rhs = {mpmath.nstr(r2, 12)} (at {high} digits)"
        return err, text, tied


def compare_all(
    lhs: Expr, rhs: Expr, values: dict[str, np.ndarray], sizes: dict[str, int]
) -> tuple[float, tuple, str, str] | None:
    """Every entry of both sides at high precision, where float64 overflowed at every input
    scale (exp(1e6 * a) * exp(-1e6 * a)): (largest relative difference after the rounding
    discount, its entry, the two values as text), or None when the point is too large."""
    work = sum(np.size(v) for v in values.values())
    shapes = []

    def pair(digits: int):
        hp = {k: _hp(v) for k, v in values.items()}
        out = [
            np.asarray(_evaluate(side, hp, sizes, digits, work), dtype=object)
            for side in (lhs, rhs)
        ]
        shapes.append(out[0].shape)
        if any(_scalar(x) is None for v in out for x in v.flat):
            return None
        return [[_scalar(x) for x in v.flat] for v in out]

    got = _at_two_precisions(pair)
    if got is None:
        return None
    (l1, r1), (l2, r2), high, _ = got
    shape = shapes[-1]
    worst, where = 0.0, 0
    with mpmath.workdps(high):
        for i, (a1, b1, a2, b2) in enumerate(zip(l1, r1, l2, r2, strict=True)):
            noise = abs(a1 - a2) + abs(b1 - b2)
            diff = max(abs(a2 - b2) - ROUNDING_SAFETY * noise, 0)
            err = 0.0 if diff == 0 else float(diff / max(abs(a2), abs(b2)))
            if err > worst:
                worst, where = err, i
        entry = tuple(int(i) for i in np.unravel_index(where, shape)) if shape else ()
        return worst, entry, mpmath.nstr(l2[where].real, 12), mpmath.nstr(r2[where].real, 12)


def _at_two_precisions(evaluate, low: bool = True):
    """(evaluate(LOW_DIGITS), evaluate(HIGH_DIGITS), HIGH_DIGITS, False), or both ESCALATION
    (then ESCALATION**2) times finer while a comparison at the higher one was a near tie, the
    last item then saying whether one still was; None where either gives None or cannot be
    evaluated. Without `low`, the first item is None (only the higher precision is evaluated)."""
    for factor in (1, ESCALATION, ESCALATION**2):
        ties: list = []
        coarse = _evaluated(evaluate, LOW_DIGITS * factor, None) if low else None
        if low and coarse is None:
            return None
        fine = _evaluated(evaluate, HIGH_DIGITS * factor, ties)
        if fine is None:
            return None
        if not ties:
            break
    return coarse, fine, HIGH_DIGITS * factor, bool(ties)


def _evaluated(evaluate, digits: int, ties: list | None):
    """evaluate(digits) at that working precision, its near ties recorded in `ties`; None where
    it gives None or cannot be evaluated."""
    token = _NEAR_TIES.set(ties)
    try:
        with mpmath.workdps(digits):
            return evaluate(digits)
    except (EngineError, ArithmeticError, TypeError, ValueError, AttributeError):
        return None
    finally:
        _NEAR_TIES.reset(token)


def entries_at_high_precision(sides, values, sizes, entries) -> tuple[list, int] | None:
    """The real parts of `sides[i]` at `entries[i]` at HIGH_DIGITS (finer while a kink's
    comparison is a near tie) and the digits used; None where they cannot be evaluated."""

    def evaluate(digits: int):
        out = [
            _entry(side, values, sizes, entry, digits)
            for side, entry in zip(sides, entries, strict=True)
        ]
        return None if any(v is None for v in out) else [v.real for v in out]

    got = _at_two_precisions(evaluate, low=False)
    return None if got is None else (got[1], got[2])


def _hp(x) -> np.ndarray:
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=object)
    for idx in np.ndindex(x.shape):
        v = x[idx]
        out[idx] = HP(mpmath.mpc(mpmath.mpf(float(np.real(v))), mpmath.mpf(float(np.imag(v)))))
    return out


def _entry(side: Expr, values, sizes, entry: tuple, digits: int):
    """One entry of `side` at high precision (an mpmath complex), or None when unknown."""
    work = sum(np.size(v) for v in values.values())
    hp_values = {k: _hp(v) for k, v in values.items()}
    if isinstance(side, Call) and side.fn in ("grad", "jacobian"):
        # only the column the entry needs: one directional derivative
        f, x = side.args
        shape = np.shape(values[x.name])
        k = entry[-len(shape) :] if shape else ()
        e = np.zeros(shape)
        e[k] = 1.0
        column = _directional(f, x, e, hp_values, sizes, digits)
        v = column[entry[: -len(shape)]] if shape and side.fn == "jacobian" else column
        return _scalar(v)
    full = _evaluate(side, hp_values, sizes, digits, work)
    return _scalar(full[entry] if np.ndim(full) else full)


def _scalar(v):
    v = v[()] if isinstance(v, np.ndarray) else v
    v = v.v if isinstance(v, HP) else mpmath.mpc(v)
    return v if mpmath.isfinite(v.real) and mpmath.isfinite(v.imag) else None


def _evaluate(expr: Expr, values, sizes, digits: int, work: int) -> np.ndarray:
    memo: dict[int, np.ndarray] = {}
    for node in expr.walk():
        memo[id(node)] = _eval_node(node, memo, values, sizes, digits, work)
    return memo[id(expr)]


def _eval_node(node, memo, values, sizes, digits, work):
    if isinstance(node, Call) and node.fn == "hessian":
        from engine.functions.calculus import expand_hessians

        return _evaluate(expand_hessians(node), values, sizes, digits, work)
    if isinstance(node, Call) and node.fn in ("grad", "jacobian"):
        f, x = node.args
        shape = np.shape(values[x.name])
        if work * (int(np.prod(shape)) + 1) > MAX_WORK:
            raise EngineError("too large to re-evaluate at high precision")
        columns = []
        for k in np.ndindex(shape):
            e = np.zeros(shape)
            e[k] = 1.0
            columns.append(_directional(f, x, e, values, sizes, digits))
        if node.fn == "grad":
            out = np.empty(shape, dtype=object)
            for k, c in zip(np.ndindex(shape), columns, strict=True):
                out[k] = c[()] if isinstance(c, np.ndarray) else c
            return out
        return np.stack(columns, axis=-1).reshape(np.shape(columns[0]) + shape)
    if isinstance(node, Var):
        return values[node.name]
    if isinstance(node, Ref):
        return memo[id(node.body)]
    if isinstance(node, Const):
        return _hp_number(node.value)
    if isinstance(node, Size):
        return _hp_number(sympy.Integer(sizes[node.name]))
    args = [memo[id(a)] for a in node.args]
    out = node.spec.numpy(*args, **resolve_params(node, sizes))
    return _map(out, lambda v: v)  # a plain number from np.where(..., 0) becomes an HP too


def _hp_number(value) -> np.ndarray:
    """An exact constant (a SymPy Rational or pi) at the working precision, as a 0-d array."""
    out = np.empty((), dtype=object)
    if value.is_Rational:
        out[()] = HP(mpmath.mpf(int(value.p)) / int(value.q))
    elif value in (sympy.oo, -sympy.oo):  # `inf` (where(mask, S, -inf))
        out[()] = HP(mpmath.inf if value == sympy.oo else -mpmath.inf)
    else:
        out[()] = HP(mpmath.mpf(sympy.Float(value, mpmath.mp.dps + 5)._mpf_))
    return out


def _directional(f: Expr, x: Var, direction, values, sizes, digits) -> np.ndarray:
    """d/dt f(x + t direction) at high precision: a complex step of 10**-(digits/2) on the real
    parts, or central differences when the inputs already carry a complex step (nested)."""
    x0 = values[x.name]
    nested = any(
        isinstance(v, HP) and v.v.imag != 0 for arr in values.values() for v in np.ravel(arr)
    )
    work = sum(np.size(v) for v in values.values())
    if not nested:
        h = mpmath.mpf(10) ** (-(digits // 2))
        xc = x0 + direction * HP(mpmath.mpc(0, h))
        out = _evaluate(f, {**values, x.name: xc}, sizes, digits, work)
        return _map(out, lambda v: HP(mpmath.mpc(v.v.imag / h, 0)))
    h = mpmath.mpf(10) ** (-(digits // 4))
    plus = _evaluate(f, {**values, x.name: x0 + direction * HP(h)}, sizes, digits, work)
    minus = _evaluate(f, {**values, x.name: x0 - direction * HP(h)}, sizes, digits, work)
    return (np.asarray(plus, dtype=object) - np.asarray(minus, dtype=object)) / (2 * h)


def _mp(v):
    """A plain number (int, float, NumPy scalar) as an mpmath complex, exactly."""
    return mpmath.mpc(mpmath.mpf(float(np.real(v))), mpmath.mpf(float(np.imag(v))))


def _map(arr, fn) -> np.ndarray:
    arr = np.asarray(arr, dtype=object)
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        v = arr[idx]
        out[idx] = fn(v if isinstance(v, HP) else HP(_mp(v)))
    return out
