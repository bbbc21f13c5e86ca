"""The verifier: decides `lhs == rhs` by an exact SymPy check and an independent NumPy check."""

from __future__ import annotations

import contextlib
import math
import numbers
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import mpmath
import numpy as np
import sympy
from sympy.core.sympify import _sympify
from threadpoolctl import threadpool_limits

from engine.backends import numpy_backend, sympy_backend
from engine.backends.common import concrete_shape
from engine.expr import Call, EngineError, Expr, Var, format_shape, free_vars, size_names
from engine.parser import Environment, build_environment, parse_equation
from engine.types import PROFILES, TYPES

# Exact check: every size assignment is tried at EXACT_POINTS random rational points, evaluated
# with EXACT_DIGITS significant digits. A difference below EXACT_RTOL (relative to the largest
# entry of the two sides) is rounding at that precision; a false formula that is analytic in its
# inputs vanishes at a random point with probability zero, so the only way past is a difference
# smaller than 1e-30 at every point tried. Measured (benchmarks/noise.py, RESULTS.md): true
# claims differ by at most 2.0e-57 over 100 seeds (2.8e-52 with evalf alone); a relative 1e-6
# error planted in one entry shows as at least 1.5e-8, and 'sum(softmax(z)) == 1 + 1e-20' as
# 1e-20: 1e-30 sits at least ten orders from both.
EXACT_DIGITS = 50
EXACT_POINTS = 2
EXACT_RTOL = 1e-30
EXACT_MAX_ENTRIES = 400  # input entries at the small sizes; beyond this use size symbols

# Numeric check: size symbols take these distinct values in declaration order.
NUMERIC_SIZES = (64, 24, 16, 12, 10, 9, 8, 7)
# Tolerances, from the noise measured by benchmarks/noise.py over 100 seeds x 3 profiles of every
# shipped example (benchmarks/RESULTS.md). Raw float64 errors (complex-step or plain) of the true
# claims reach 1.9e-11 (ce-grad) and 1.1e-11 (attention-grad-Q), 50x below 1e-9; the one
# ill-conditioned claim, temperature-entropy-derivative (E[z^2] - E[z]^2 at T down to 0.01), reaches
# 9.2e-10 and, at extreme points, 1.5, which only the rounding-noise discount (NOISE_SAFETY)
# tells from an error. A relative 1e-6 error planted in one entry shows as at least 5.8e-8
# (softmax-jacobian), 58x above 1e-9, and was caught at 20 of 20 seeds for every gradient claim.
# Central differences (used only for nested derivatives; no shipped claim has one) are not
# measured here; at n = 50,000 they miss the 1e-6 error entirely (benchmarks/verify_bench.py).
NUMERIC_RTOL = {"complex-step": 1e-9, "central": 1e-5, "none": 1e-9}
# Entries smaller than SCALE_FLOOR times the largest compare in absolute terms: near-zero entries
# carry absolute, not relative, noise. attention-grad-Q's raw error is 1.1e-11 with 1e-3, 1.1e-8
# with 1e-6 (a false alarm at 1e-9) and 2.0 with no floor (20 seeds).
SCALE_FLOOR = 1e-3
FULL_LIMIT = 4096  # a top-level grad of more coordinates is checked by directional probes
PROBES = 2  # random directions per profile when probing
# A probe compares two sums over every coordinate, <d, grad> by complex-step and <d, rhs>, relative
# to sum |d * rhs|; one entry off by a relative 1e-6 moves that by about 1e-6 / (number of
# coordinates), 2e-11 at n = 50,000, which NUMERIC_RTOL never saw (it passed). Measured at
# n = 50,000 and m, d = 256, 64 (benchmarks/noise.py): true claims stay below 7.1e-16 (100 seeds),
# planted 1e-6 errors show as at least 1.5e-13 (20 seeds); 1e-14 sits about 15x from both. Above
# it, the float64-versus-long-double difference (times NOISE_SAFETY) is discounted as noise.
PROBE_RTOL = {"complex-step": 1e-14, "central": NUMERIC_RTOL["central"]}

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

    def describe(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.sizes.items()) or "no sizes"
        where = f"entry [{', '.join(map(str, self.entry))}]" if self.entry else "value"
        profile = f", {self.profile} inputs" if self.profile else ""
        lines = [
            f"{self.check} check at {sizes}{profile}: {where} differs: "
            f"lhs = {self.lhs:.10g}, rhs = {self.rhs:.10g}, difference = {self.difference:.3g}"
        ]
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

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "message": self.message,
            "counterexample": None if self.counterexample is None else asdict(self.counterexample),
            "checks": [asdict(c) for c in self.checks],
        }


def verify(
    equation: str,
    vars: Mapping[str, str],
    defs: Mapping[str, str] | None = None,
    seed: int = 0,
    name: str = "claim",
    numeric_sizes: Mapping[str, int] | None = None,
) -> Result:
    """Check the claim `equation` (text `lhs == rhs`) over variables of the given types."""
    try:
        env = build_environment(vars, defs)
        lhs, rhs = parse_equation(equation, env)
    except EngineError as e:
        return Result(name, "error", str(e))
    return verify_sides(lhs, rhs, env, seed=seed, name=name, numeric_sizes=numeric_sizes)


def assert_claim(
    equation: str,
    vars: Mapping[str, str],
    defs: Mapping[str, str] | None = None,
    seed: int = 0,
    name: str = "claim",
) -> Result:
    """Like `verify`, but raise AssertionError with the full report unless the claim passes."""
    result = verify(equation, vars, defs, seed=seed, name=name)
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
) -> Result:
    """Check two parsed sides against each other: exact at small sizes, numeric at larger ones.

    `exact=False` or `numeric=False` runs one route alone (for tests and benchmarks); a result
    shown to users always comes from both.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        return Result(name, "error", f"the seed must be a non-negative integer, got {seed!r}")
    if lhs.shape != rhs.shape:
        return Result(
            name,
            "fail",
            f"the two sides have different shapes: {format_shape(lhs.shape)} "
            f"and {format_shape(rhs.shape)}",
        )
    used = {**free_vars(lhs), **free_vars(rhs)}
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
            if exact:
                report, cx = _exact_check(lhs, rhs, used, order, seed)
                checks.append(report)
                failure = failure or cx
            # Once the exact check has failed, the verdict is settled: skip the rounding-noise
            # discount (a long-double re-run) that only matters for telling noise from error.
            discount = all(c.passed for c in checks)
            if numeric:
                report, cx = _numeric_check(lhs, rhs, used, order, seed, numeric_sizes, discount)
                checks.append(report)
                failure = failure or cx
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


def _all_size_names(lhs: Expr, rhs: Expr, used: dict[str, Var]) -> set[str]:
    names = size_names(lhs) | size_names(rhs)
    for v in used.values():
        for d in v.shape:
            names.update(str(s) for s in d.free_symbols)
    return names


# ---------------------------------------------------------------- exact check


def exact_size_assignments(order: list[str]) -> list[dict[str, int]]:
    """Two assignments, both with pairwise distinct sizes >= 2 (so transpositions show)."""
    if not order:
        return [{}]
    base = list(range(2, 2 + len(order)))
    rotated = base[1:] + base[:1] if len(order) > 1 else [3]
    return [dict(zip(order, base, strict=True)), dict(zip(order, rotated, strict=True))]


def _exact_check(lhs, rhs, used, order, seed) -> tuple[CheckReport, Counterexample | None]:
    worst = 0.0
    assignments = exact_size_assignments(order)
    for sizes in assignments:
        entries = sum(math.prod(concrete_shape(v.shape, sizes)) for v in used.values())
        if entries > EXACT_MAX_ENTRIES:
            raise EngineError(
                f"too many input entries ({entries}) for the exact check; use size symbols "
                "instead of large literal sizes"
            )
        symbols = sympy_backend.symbol_arrays(used, sizes)
        with _not_real_guard():
            left = sympy_backend.evaluate(lhs, symbols, sizes)
            right = sympy_backend.evaluate(rhs, symbols, sizes)
        rng = np.random.default_rng([seed, 1, *sizes.values()])
        for _ in range(EXACT_POINTS):
            point = {
                name: TYPES[v.vtype].exact(rng, concrete_shape(v.shape, sizes))
                for name, v in used.items()
            }
            subs = {
                symbols[n][idx]: point[n][idx] for n in used for idx in np.ndindex(point[n].shape)
            }
            with _not_real_guard():
                lv, rv = _fast_values(left, subs), _fast_values(right, subs)
                errors = None if lv is None or rv is None else _relative_errors(lv, rv)
                if errors is None or (errors.size and float(np.max(errors)) > EXACT_RTOL):
                    # every failure (and anything mpmath cannot do) is decided by SymPy's evalf
                    lv, rv = _exact_values(left, subs, "left"), _exact_values(right, subs, "right")
                    errors = _relative_errors(lv, rv)
            k = int(np.argmax(errors)) if errors.size else 0
            err = float(errors[k]) if errors.size else 0.0
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
                )
                return CheckReport("exact", False, _exact_detail(order, assignments), err), cx
    return CheckReport("exact", True, _exact_detail(order, assignments), worst), None


@contextlib.contextmanager
def _not_real_guard() -> Iterator[None]:
    """SymPy raises ValueError when relu/step/abs/sign meet a complex value (say relu(log(x))
    at a negative x): report that as the clean error it is, not as a traceback."""
    try:
        yield
    except ValueError as e:
        if "comparable" not in str(e) and "Real" not in str(e):
            raise
        raise EngineError(
            "the claim is not real at the sampled inputs (a complex value reached relu, step, "
            "abs or sign: log or sqrt of a negative value?); declare such variables 'positive'"
        ) from None


def _exact_detail(order, assignments) -> str:
    if not order:
        return f"exact at {EXACT_POINTS} rational points, {EXACT_DIGITS} digits"
    sizes = " and ".join(", ".join(f"{k}={v}" for k, v in a.items()) for a in assignments)
    return f"exact at {sizes}"


def _relative_errors(lv: np.ndarray, rv: np.ndarray) -> np.ndarray:
    """|lhs - rhs| per entry, relative to the largest entry of the two sides."""
    with mpmath.workdps(EXACT_DIGITS):
        scale = max([abs(v) for v in (*lv.flat, *rv.flat)] + [mpmath.mpf(1e-10)])
        return np.array([abs(a - b) / scale for a, b in zip(lv.flat, rv.flat, strict=True)])


class _NotFast(Exception):
    """An entry the mpmath pass leaves to SymPy's evalf (complex, infinite or unknown)."""


FAST_GUARD_DIGITS = 20  # extra working digits of the mpmath pass over EXACT_DIGITS
_MPMATH = {
    sympy.exp: mpmath.exp,
    sympy.log: mpmath.log,
    sympy.tanh: mpmath.tanh,
    sympy.sin: mpmath.sin,
    sympy.cos: mpmath.cos,
    sympy.erf: mpmath.erf,
    sympy.Abs: abs,
}


def _fast_values(arr: np.ndarray, subs: dict) -> np.ndarray | None:
    """The entries at the rational point `subs`, by one mpmath pass at EXACT_DIGITS +
    FAST_GUARD_DIGITS digits that evaluates each common subexpression once (an entry-by-entry
    `evalf` redoes the softmax denominators in every entry: 4x slower on attention-grad-Q).

    Functions other than + * ** exp log tanh sin cos erf abs are evaluated by `evalf`. Returns
    None when a value is complex, infinite or undefined; the caller then uses `_exact_values`,
    which also confirms every failure, so a claim is never called false on this pass alone.
    """
    memo: dict[sympy.Basic, Any] = {}
    digits = EXACT_DIGITS + FAST_GUARD_DIGITS

    def value(e: sympy.Basic):
        got = memo.get(e)
        if got is not None:
            return got
        if e.is_Symbol:
            r = point[e]
        elif e.is_Rational:
            r = mpmath.mpf(e.p) / e.q
        elif e.is_Add:
            r = mpmath.fsum(value(a) for a in e.args)
        elif e.is_Mul:
            r = mpmath.fprod(value(a) for a in e.args)
        elif e.is_Pow:
            base, power = e.args
            b = value(base)
            r = b ** int(power) if power.is_Integer else mpmath.power(b, value(power))
        elif e.func in _MPMATH and len(e.args) == 1:
            r = _MPMATH[e.func](value(e.args[0]))
        else:
            v = e.xreplace(subs).evalf(digits)
            if not v.is_Float:
                raise _NotFast
            r = mpmath.mpf(v._mpf_)
        if isinstance(r, mpmath.mpc):
            if r.imag != 0:
                raise _NotFast
            r = r.real
        memo[e] = r
        return r

    out = np.empty(arr.shape, dtype=object)
    try:
        with mpmath.workdps(digits):
            point = {s: mpmath.mpf(v.p) / v.q for s, v in subs.items()}
            for idx in np.ndindex(arr.shape):
                r = value(_sympify(arr[idx]))
                if not mpmath.isfinite(r):
                    return None
                out[idx] = r
    except (_NotFast, ZeroDivisionError, RecursionError, ValueError, TypeError, KeyError):
        return None
    return out


def _exact_values(arr: np.ndarray, subs: dict, side: str) -> np.ndarray:
    out = np.empty(arr.shape, dtype=object)
    for idx in np.ndindex(arr.shape):
        # strict conversion (numbers only, never text): user input is never sympified
        v = _sympify(arr[idx]).xreplace(subs).evalf(EXACT_DIGITS)
        if v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
            raise EngineError(f"the {side} side is not finite at the sampled inputs")
        re, im = v.as_real_imag()
        # an unevaluated part (Heaviside of a complex value) is not a Number: not real either
        numbers = isinstance(re, sympy.Number) and isinstance(im, sympy.Number)
        if not numbers or (im != 0 and abs(im) > 1e-40 * max(1, abs(re))):
            raise EngineError(
                f"the {side} side is not real at the sampled inputs (log or sqrt of a negative "
                "value?); declare such variables 'positive'"
            )
        # mpf() rounds to the working precision, which is float64's (15 digits) by default
        with mpmath.workdps(EXACT_DIGITS):
            out[idx] = mpmath.mpf(sympy.Float(re, EXACT_DIGITS)._mpf_)
    return out


def _rational_list(arr: np.ndarray) -> Any:
    if arr.ndim == 0:
        return str(arr[()])
    return [_rational_list(np.asarray(a, dtype=object)) for a in arr]


# ---------------------------------------------------------------- numeric check


def numeric_size_assignment(order: list[str], given: Mapping[str, int] | None) -> dict[str, int]:
    sizes = {name: NUMERIC_SIZES[i % len(NUMERIC_SIZES)] for i, name in enumerate(order)}
    sizes.update({k: int(v) for k, v in (given or {}).items() if k in sizes})
    return sizes


def _sample(used, sizes, rng, profile) -> dict[str, np.ndarray]:
    return {
        name: TYPES[v.vtype].numeric(rng, concrete_shape(v.shape, sizes), profile)
        for name, v in used.items()
    }


def _probe_side(side: Expr) -> bool:
    return isinstance(side, Call) and side.fn in ("grad", "jacobian")


def _numeric_check(
    lhs, rhs, used, order, seed, given, discount_noise=True
) -> tuple[CheckReport, Counterexample | None]:
    sizes = numeric_size_assignment(order, given)
    methods = {
        numpy_backend.derivative_method(n.args[0])
        for side in (lhs, rhs)
        for n in side.walk()
        if isinstance(n, Call) and n.fn in ("grad", "jacobian")
    }
    method = "central" if "central" in methods else ("complex-step" if methods else "none")
    rtol = NUMERIC_RTOL[method]
    worst = 0.0
    probed = False
    skipped: list[NotFinite] = []
    for p, profile in enumerate(PROFILES):
        rng = np.random.default_rng([seed, 2, p])
        values = _sample(used, sizes, rng, profile)
        probe_left = _probe_side(lhs) and _coords(lhs, values) > FULL_LIMIT
        probe_right = _probe_side(rhs) and _coords(rhs, values) > FULL_LIMIT
        try:
            if probe_left or probe_right:
                probed = True
                probe_rtol = PROBE_RTOL.get(method, rtol)
                err, cx = _probe_check(
                    lhs, rhs, probe_left, values, sizes, rng, probe_rtol, discount_noise
                )
            else:
                err, cx = _full_check(lhs, rhs, values, sizes, rtol, discount_noise)
        except NotFinite as e:
            # Float64 overflow at one input scale (say softmax of logits in the thousands) says
            # nothing about the claim; the other profiles still decide. All of them failing is
            # an error: then no numeric check happened.
            skipped.append(e.at(profile))
            if len(skipped) == len(PROFILES):
                message = str(skipped[0]).replace("at the sampled", "at every scale of sampled")
                raise NotFinite(message) from None
            continue
        worst = max(worst, err)
        if cx is not None:
            cx = Counterexample(
                cx.check,
                dict(sizes),
                _float_inputs(values),
                cx.entry,
                cx.lhs,
                cx.rhs,
                cx.difference,
                profile,
            )
            detail = _numeric_detail(sizes, method, probed, worst, skipped)
            return CheckReport("numeric", False, detail, err), cx
    detail = _numeric_detail(sizes, method, probed, worst, skipped)
    return CheckReport("numeric", True, detail, worst), None


def _numeric_detail(sizes, method, probed, worst, skipped=()) -> str:
    where = ", ".join(f"{k}={v}" for k, v in sizes.items()) or "scalars"
    how = "" if method == "none" else f", {method}" + (" probes" if probed else "")
    left_out = ""
    if skipped:
        left_out = f" ({', '.join(e.profile for e in skipped)} inputs overflowed float64, skipped)"
    return f"numeric at {where}{how}, max rel. err {worst:.1e}{left_out}"


class NotFinite(EngineError):
    """A side evaluated to inf or NaN in float64 at one input profile."""

    profile = ""

    def at(self, profile: str) -> NotFinite:
        self.profile = profile
        return self


def _coords(side: Call, values) -> int:
    return int(np.size(values[side.args[1].name]))


def _finite(arr: np.ndarray, side: str) -> np.ndarray:
    if not np.all(np.isfinite(arr)):
        raise NotFinite(
            f"the {side} side is not finite at the sampled inputs "
            "(overflow, or log/sqrt of a negative value?)"
        )
    return np.real(arr).astype(float)


def entry_errors(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Relative error per entry, with a floor at SCALE_FLOOR times the largest entry."""
    scale = max(float(np.max(np.abs(left), initial=0)), float(np.max(np.abs(right), initial=0)))
    denom = np.maximum(np.abs(left), np.abs(right)) + SCALE_FLOOR * scale + 1e-300
    return np.abs(left - right) / denom


def _full_check(lhs, rhs, values, sizes, rtol, discount_noise=True):
    left = _finite(numpy_backend.evaluate(lhs, values, sizes), "left")
    right = _finite(numpy_backend.evaluate(rhs, values, sizes), "right")
    errors = entry_errors(left, right)
    if discount_noise and errors.size and float(np.max(errors)) > rtol:
        # Before calling it false, discount float64 rounding noise: ill-conditioned sides (say a
        # variance computed as E[z^2] - E[z]^2 at extreme inputs) are noisy, not wrong.
        noise = rounding_noise(lhs, values, sizes) + rounding_noise(rhs, values, sizes)
        noise = noise + propagated_noise(lhs, values, sizes) + propagated_noise(rhs, values, sizes)
        errors = (
            np.maximum(np.abs(left - right) - noise, 0) / (np.abs(left - right) + 1e-300) * errors
        )
    k = int(np.argmax(errors)) if errors.size else 0
    err = float(errors.flat[k]) if errors.size else 0.0
    if err <= rtol:
        return err, None
    idx = tuple(int(i) for i in np.unravel_index(k, left.shape)) if left.shape else ()
    return err, Counterexample(
        "numeric",
        {},
        {},
        idx,
        float(left.flat[k]),
        float(right.flat[k]),
        float(left.flat[k] - right.flat[k]),
    )


# float64 error is taken as up to NOISE_SAFETY times the estimate (|float64 - long double| plus
# propagated_noise). Measured: wherever a true claim's raw error passed 1e-12, it was at most 0.63
# of the unscaled estimate (ce-grad; 0.55 attention-grad-Q, 0.28 temperature-entropy-derivative),
# so 8 leaves a margin of 12 or more and still caught every planted 1e-6 error.
NOISE_SAFETY = 8


def rounding_noise(side: Expr, values, sizes) -> np.ndarray:
    """An estimate of float64 rounding noise in `side`: how far it is from a long-double run.

    Long double carries 11 more bits, so its difference from float64 is float64's own error.
    Where a function has no long-double form the estimate is zero (no discount is given).
    """
    base = np.real(numpy_backend.evaluate(side, values, sizes))
    try:
        wide = {k: np.asarray(v, dtype=np.longdouble) for k, v in values.items()}
        extended = np.real(numpy_backend.evaluate(side, wide, sizes))
    except (TypeError, EngineError):
        return np.zeros(np.shape(base))
    if extended.dtype != np.longdouble:
        return np.zeros(np.shape(base))
    noise = np.abs(base.astype(np.longdouble) - extended).astype(float)
    return np.nan_to_num(NOISE_SAFETY * noise, nan=0.0, posinf=0.0)


def propagated_noise(side: Expr, values, sizes) -> np.ndarray:
    """First-order effect on `side` of a rounding error of one unit (eps) in every entry of every
    intermediate value, found by complex-step through the rest of the tree (times NOISE_SAFETY).

    This sees what the long-double re-run cannot: a cancellation that both precisions round the
    same way. At T = 0.04, q = softmax(z / T) is exactly one-hot in float64 and in long double,
    so sum(q * z**2) - sum(q * z)**2 is exactly 0 in both, while the true value is 1.8e-17 and
    an error of eps in sum(q * z**2) = 76 moves the side by eps * 76 / T**3 = 3e-10.
    Derivative nodes count as inputs here (their own noise is the long-double estimate's).
    """
    order = list(side.walk())
    inside: set[int] = set()
    for node in order:
        if isinstance(node, Call) and node.fn in ("grad", "jacobian"):
            inside.update(id(n) for a in node.args for n in a.walk())
    base: dict[int, np.ndarray] = {}
    for node in order:
        base[id(node)] = numpy_backend._eval_node(node, base, values, sizes)
    total = np.zeros(np.shape(base[id(side)]))
    if np.iscomplexobj(base[id(side)]):
        return total
    rng = np.random.default_rng(0)
    for k, v in enumerate(order):
        if not isinstance(v, Call) or v.fn in ("grad", "jacobian") or id(v) in inside:
            continue
        value = np.asarray(base[id(v)], dtype=float)
        signs = rng.choice([-1.0, 1.0], size=value.shape)
        memo = dict(base)
        memo[id(v)] = value + 1j * numpy_backend.COMPLEX_STEP * signs * np.abs(value)
        dirty = {id(v)}
        for node in order[k + 1 :]:
            if any(id(c) in dirty for c in node.children()):
                memo[id(node)] = numpy_backend._eval_node(node, memo, values, sizes)
                dirty.add(id(node))
        effect = np.abs(np.imag(memo[id(side)])) / numpy_backend.COMPLEX_STEP
        total = total + np.nan_to_num(effect, nan=0.0, posinf=0.0)
    return NOISE_SAFETY * np.finfo(float).eps * total


def _probe_check(lhs, rhs, probe_left, values, sizes, rng, rtol, discount_noise=True):
    """Compare <V, lhs> with <V, rhs> for random directions V; localize a failure by bisection."""
    side, other = (lhs, rhs) if probe_left else (rhs, lhs)
    other_value = _finite(numpy_backend.evaluate(other, values, sizes), "other")
    f, x = side.args
    worst = 0.0
    for _ in range(PROBES):
        u = rng.standard_normal(side.shape[:1]) if side.fn == "jacobian" else None
        w = probe_direction(rng, np.shape(values[x.name]))
        mask = np.ones(w.shape, dtype=bool)
        err = _probe(f, x, side.fn, u, w, mask, other_value, values, sizes)
        if discount_noise and err > rtol:
            err = _probe_discounted(f, x, side.fn, u, w, other, other_value, values, sizes)
        worst = max(worst, err)
        if err > rtol:
            return err, _localize(f, x, side, u, w, other_value, values, sizes, probe_left)
    return worst, None


def probe_direction(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Random signs times magnitudes in [1/2, 3/2]: every coordinate weighs in (a Gaussian
    direction gives 8% of coordinates a weight below 0.1), and errors in several entries cancel
    with probability zero."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 1.5, size=shape)


def _probe_terms(fn, u, jd, other_value, d):
    """(got, want, scale) of one probe: u.J d against u.R d, or <grad, d> against <R, d>."""
    if fn == "jacobian":
        return u @ jd, u @ (other_value @ d), np.abs(u) @ (np.abs(other_value) @ np.abs(d))
    return np.sum(jd), np.sum(d * other_value), np.sum(np.abs(d * other_value))


def _probe(f, x, fn, u, w, mask, other_value, values, sizes) -> float:
    d = w * mask
    jd = numpy_backend.directional(f, x, d, values, sizes)  # J d, or the directional derivative
    got, want, scale = (float(t) for t in _probe_terms(fn, u, jd, other_value, d))
    return abs(got - want) / (scale + 1e-300)


def _probe_discounted(f, x, fn, u, d, other, other_value, values, sizes) -> float:
    """The probe error after discounting float64 rounding noise, as `_full_check` does: both
    sums are recomputed in long double and NOISE_SAFETY times the change is taken as noise, plus
    the `propagated_noise` of the other side, summed along the direction."""
    jd = numpy_backend.directional(f, x, d, values, sizes)
    got, want, scale = (float(t) for t in _probe_terms(fn, u, jd, other_value, d))
    spread = propagated_noise(other, values, sizes)
    _, noise, _ = _probe_terms(fn, None if u is None else np.abs(u), 0.0, spread, np.abs(d))
    noise = float(noise) if math.isfinite(noise) else 0.0
    try:
        wide = {k: np.asarray(v, dtype=np.longdouble) for k, v in values.items()}
        jd_wide = np.real(numpy_backend.directional(f, x, d, wide, sizes))
        other_wide = np.real(numpy_backend.evaluate(other, wide, sizes))
    except (TypeError, EngineError):
        jd_wide = other_wide = np.zeros(0)
    if jd_wide.dtype == np.longdouble and other_wide.dtype == np.longdouble:
        got_wide, want_wide, _ = _probe_terms(fn, u, jd_wide, other_wide, d)
        wide_noise = float(abs(got - got_wide) + abs(want - want_wide))
        noise += NOISE_SAFETY * wide_noise if math.isfinite(wide_noise) else 0.0
    return max(abs(got - want) - noise, 0.0) / (scale + 1e-300)


def _localize(f, x, side, u, w, other_value, values, sizes, probe_left) -> Counterexample:
    """Halve the support of the failing direction until one coordinate is left."""
    candidates = np.arange(w.size)
    while candidates.size > 1:
        half = candidates[: candidates.size // 2]
        mask = np.zeros(w.size, dtype=bool)
        mask[half] = True
        err_half = _probe(f, x, side.fn, u, w, mask.reshape(w.shape), other_value, values, sizes)
        mask2 = np.zeros(w.size, dtype=bool)
        mask2[candidates[candidates.size // 2 :]] = True
        err_rest = _probe(f, x, side.fn, u, w, mask2.reshape(w.shape), other_value, values, sizes)
        candidates = half if err_half >= err_rest else candidates[candidates.size // 2 :]
    k = int(candidates[0])
    e = np.zeros(w.shape)
    e.flat[k] = 1.0
    column = numpy_backend.directional(f, x, e, values, sizes)
    if side.fn == "jacobian":
        row = int(np.argmax(np.abs(column - other_value[:, k])))
        got, want, idx = float(column[row]), float(other_value[row, k]), (row, k)
    else:
        got, want = float(column), float(other_value.flat[k])
        idx = tuple(int(i) for i in np.unravel_index(k, w.shape))
    left, right = (got, want) if probe_left else (want, got)
    return Counterexample("numeric", {}, {}, idx, left, right, left - right)


def _float_inputs(values: dict[str, np.ndarray]) -> dict[str, Any]:
    return {k: np.round(np.asarray(v, dtype=float), 12).tolist() for k, v in values.items()}


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
