"""The numeric route: NumPy at larger sizes, many input scales, derivatives by complex-step."""

from __future__ import annotations

import math

import numpy as np

from engine.backends import numpy_backend
from engine.backends.common import concrete_shape
from engine.expr import Call, Const, EngineError, Expr, contains_derivative
from engine.types import PROFILES
from engine.verify import precision
from engine.verify.result import CheckReport, Counterexample
from engine.verify.sampling import (
    SMALL_CLAIM_ENTRIES,
    SMALL_CLAIM_POINTS,
    KinkCoverage,
    Scale,
    describe_scales,
    input_scales,
    kink_arguments,
    kink_search,
    numeric_point,
    numeric_size_assignment,
)

# Tolerances, from the noise measured by benchmarks/noise.py over 100 seeds of every shipped
# example and of the adversarial corpus (benchmarks/RESULTS.md). Raw float64 errors (complex-step
# or plain) of true claims reach about 2e-11, 50x below 1e-9; a relative 1e-6 error planted in one
# entry shows as at least 5.8e-8 (softmax-jacobian), 58x above 1e-9. Nested derivatives (a
# Hessian) take complex-step over Richardson-extrapolated central differences (h^4 truncation);
# their rtol is NUMERIC_RTOL["nested"]. Whatever exceeds the tolerance after the float64 noise
# discount is re-evaluated at high precision (precision.py) before it is called a difference.
NUMERIC_RTOL = {"complex-step": 1e-9, "nested": 1e-7, "none": 1e-9}
# Entries smaller than SCALE_FLOOR times the largest compare in absolute terms: near-zero entries
# carry absolute, not relative, noise. attention-grad-Q's raw error is 1.1e-11 with 1e-3, 1.1e-8
# with 1e-6 (a false alarm at 1e-9) and 2.0 with no floor (20 seeds). The exact route has no
# floor, so a wrong tiny entry is still caught there.
SCALE_FLOOR = 1e-3
FULL_LIMIT = 4096  # a top-level grad of more coordinates is checked by directional probes
PROBES = 2  # random directions per profile when probing
SCALE_FULL_LIMIT = 64  # at extra scales and kink points, larger gradients are probed
# A probe compares two sums over every coordinate, <d, grad> by complex-step and <d, rhs>, relative
# to sum |d * rhs|; one entry off by a relative 1e-6 moves that by about 1e-6 / (number of
# coordinates), 2e-11 at n = 50,000. Measured at n = 50,000 and m, d = 256, 64
# (benchmarks/noise.py): true claims stay below 7.1e-16 (100 seeds), planted 1e-6 errors show as
# at least 1.5e-13 (20 seeds); 1e-14 sits about 15x from both.
PROBE_RTOL = {"complex-step": 1e-14, "nested": NUMERIC_RTOL["nested"]}
CONFIRM_ENTRIES = 2  # worst entries re-evaluated at high precision before a profile fails
# float64 error is taken as up to NOISE_SAFETY times the estimate (|float64 - long double| plus
# propagated_noise). Measured: wherever a true claim's raw error passed 1e-12, it was at most 0.63
# of the unscaled estimate (ce-grad; 0.55 attention-grad-Q, 0.28 temperature-entropy-derivative),
# so 8 leaves a margin of 12 or more and still caught every planted 1e-6 error.
NOISE_SAFETY = 8


class NotFinite(EngineError):
    """A side evaluated to inf or NaN in float64 at one input profile."""

    profile = ""

    def at(self, profile: str) -> NotFinite:
        self.profile = profile
        return self


def _label(profile) -> str:
    return f"scale {profile.value:.3g}" if isinstance(profile, Scale) else str(profile)


def numeric_check(
    lhs, rhs, used, order, seed, given, discount_noise=True
) -> tuple[CheckReport, Counterexample | None]:
    """Compare the two sides in float64 at the numeric sizes, at every profile and input scale."""
    nested = any(
        n.fn in ("grad", "jacobian") and contains_derivative(n.args[0])
        for side in (lhs, rhs)
        for n in side.walk()
        if isinstance(n, Call)
    )
    has_derivative = any(
        isinstance(n, Call) and n.fn in ("grad", "jacobian") for s in (lhs, rhs) for n in s.walk()
    )
    # a Jacobian of rank > 2 (a matrix of a matrix) has coordinates times outputs entries: the
    # nested table's sizes (9, 8, ...) keep it checkable at high precision, still above n = 4
    wide = any(
        isinstance(n, Call) and n.fn == "jacobian" and len(n.shape) > 2
        for s in (lhs, rhs)
        for n in s.walk()
    )
    sizes = numeric_size_assignment(order, given, nested or wide, has_derivative)
    method = "nested" if nested else ("complex-step" if has_derivative else "none")
    rtol = NUMERIC_RTOL[method]
    scales = input_scales(lhs, rhs)
    coverage = KinkCoverage.of(kink_arguments(lhs, rhs))
    entries = sum(math.prod(concrete_shape(v.shape, sizes)) for v in used.values())
    repeats = SMALL_CLAIM_POINTS if entries <= SMALL_CLAIM_ENTRIES else 1
    state = _State(sizes, method, scales, coverage)
    plan: list[tuple[object, np.random.Generator, dict | None]] = []
    for p, profile in enumerate([*PROFILES, *scales]):
        for r in range(repeats):
            plan.append((profile, np.random.default_rng([seed, 2, p, r]), None))
    search_rng = np.random.default_rng([seed, 3])
    i = 0
    while i < len(plan):
        profile, rng, values = plan[i]
        i += 1
        if values is None:
            values = numeric_point(used, sizes, rng, profile)
        if coverage.arguments:
            coverage.add(values, sizes)
        if i == len(plan) and coverage.arguments and profile != "kink":
            extra = kink_search(coverage, used, sizes, search_rng, scales)
            extra += coverage.boundary_points(used, sizes)
            plan += [("kink", search_rng, point) for point in extra]
        required = profile in PROFILES
        # the ordinary profiles check every coordinate up to FULL_LIMIT; the extra scales and kink
        # points, which look for where a formula changes rather than for a wrong entry, probe
        limit = FULL_LIMIT if required else SCALE_FULL_LIMIT
        probe_left = _probe_side(lhs) and _coords(lhs, values) > limit
        probe_right = _probe_side(rhs) and _coords(rhs, values) > limit
        try:
            if probe_left or probe_right:
                state.probed = True
                probe_rtol = PROBE_RTOL.get(method, rtol)
                err, cx = _probe_check(
                    lhs, rhs, probe_left, values, sizes, rng, probe_rtol, discount_noise
                )
                suspects = [] if cx is None else [cx.entry]
            else:
                err, cx, suspects = _full_check(lhs, rhs, values, sizes, rtol, discount_noise)
            if cx is not None and discount_noise:
                err, cx = _confirmed(lhs, rhs, values, sizes, err, cx, suspects, state, required)
        except NotFinite as e:
            # Float64 overflow at one input scale (say softmax of logits in the thousands) says
            # nothing about the claim; the other profiles still decide. The ordinary profiles
            # all failing is an error: then no numeric check happened.
            if required:
                state.skipped.append(_label(profile))
                state.overflowed = state.overflowed or values
                if len([s for s in state.skipped if s in PROFILES]) == len(PROFILES):
                    # float64 cannot evaluate the claim at any ordinary scale: decide the first
                    # such point at high precision instead (float64 never judges)
                    got = precision.compare_all(lhs, rhs, state.overflowed, sizes)
                    if got is None:
                        message = str(e).replace("at the sampled", "at every scale of sampled")
                        raise NotFinite(message) from None
                    rel, entry, ltext, rtext = got
                    state.high_precision_only = True
                    state.worst = max(state.worst, rel)
                    if rel > precision.CONFIRM_RTOL:
                        text = f"lhs = {ltext}, rhs = {rtext} (at {precision.HIGH_DIGITS} digits)"
                        cx = Counterexample(
                            "numeric",
                            dict(sizes),
                            _float_inputs(state.overflowed),
                            entry,
                            float("nan"),
                            float("nan"),
                            float("nan"),
                            PROFILES[0],
                            text,
                        )
                        return CheckReport("numeric", False, state.detail(), rel), cx
            else:
                state.outside += 1
            continue
        state.worst = max(state.worst, err)
        if cx is not None:
            cx = Counterexample(
                cx.check,
                dict(sizes),
                _float_inputs(values),
                cx.entry,
                cx.lhs,
                cx.rhs,
                cx.difference,
                _label(profile),
                cx.values_text,
            )
            return CheckReport("numeric", False, state.detail(), err), cx
    return CheckReport("numeric", True, state.detail(), state.worst), None


class _State:
    """What the numeric route reports: sizes, method, scales, kinks and what it left out."""

    def __init__(self, sizes, method, scales, coverage):
        self.sizes, self.method, self.scales, self.coverage = sizes, method, scales, coverage
        self.worst = 0.0
        self.probed = False
        self.skipped: list[str] = []
        self.outside = 0
        self.high_precision = 0
        self.overflowed: dict | None = None  # the first point float64 could not evaluate
        self.high_precision_only = False

    def detail(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.sizes.items()) or "scalars"
        how = ""
        if self.method != "none":
            name = "complex-step" if self.method == "complex-step" else "complex-step over central"
            how = f", {name}" + (" probes" if self.probed else "")
        extras = [describe_scales(self.scales), self.coverage.describe()]
        if self.high_precision:
            extras.append(f"{self.high_precision} float64 difference(s) undone at high precision")
        if self.outside:
            extras.append(f"{self.outside} point(s) outside float64 or the domain left out")
        extra = ", ".join(e for e in extras if e)
        left_out = ""
        if self.high_precision_only:
            left_out = (
                f" (float64 overflowed at every scale: decided at {precision.HIGH_DIGITS} digits)"
            )
        elif self.skipped:
            left_out = f" ({', '.join(self.skipped)} inputs overflowed float64, skipped)"
        tail = f" ({extra})" if extra else ""
        return f"numeric at {where}{how}, max rel. err {self.worst:.1e}{tail}{left_out}"


def _confirmed(
    lhs, rhs, values, sizes, err, cx, suspects, state, required=True
) -> tuple[float, Counterexample | None]:
    """Re-evaluate the worst entries at high precision: float64 is never the judge of a FAIL.
    A difference that rests on a kink's branch no precision tried could settle (precision.py)
    leaves a point at an extra scale or kink out, as an overflow does; an ordinary profile's
    point keeps it (the tie's convention)."""
    for entry in suspects:
        got = precision.confirm(lhs, rhs, values, sizes, entry)
        if got is None:
            raise EngineError(
                "the numeric check found a difference that float64 cannot settle and the point "
                f"is too large to re-evaluate at high precision (entry {list(entry)}); "
                "try smaller --size values"
            )
        rel, text, tied = got
        if rel > precision.CONFIRM_RTOL and tied and not required:
            raise NotFinite("a kink's branch within rounding of its tie at every precision tried")
        if rel > precision.CONFIRM_RTOL:
            return err, Counterexample(
                "numeric", {}, {}, entry, cx.lhs, cx.rhs, cx.difference, values_text=text
            )
    state.high_precision += 1
    return 0.0, None


def _probe_side(side: Expr) -> bool:
    return isinstance(side, Call) and side.fn in ("grad", "jacobian")


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


def _matched_infinities(lhs, rhs, left, right):
    """Where the claim writes `inf`, infinite entries are values: equal infinities on both sides
    agree (and compare as 0 here), any other infinity is a difference (returned as `apart`)."""
    written = any(
        isinstance(n, Const) and n.value.is_infinite for side in (lhs, rhs) for n in side.walk()
    )
    left, right = np.asarray(left), np.asarray(right)
    if not written or np.iscomplexobj(left) or np.iscomplexobj(right):
        return left, right, None
    left, right = np.broadcast_arrays(np.real(left), np.real(right))
    inf = np.isinf(left) | np.isinf(right)
    if not inf.any():
        return left, right, None
    apart = inf & (left != right)
    return np.where(inf, 0.0, left), np.where(inf, 0.0, right), (apart if apart.any() else None)


def _full_check(lhs, rhs, values, sizes, rtol, discount_noise=True):
    left, right, apart = _matched_infinities(
        lhs,
        rhs,
        numpy_backend.evaluate(lhs, values, sizes),
        numpy_backend.evaluate(rhs, values, sizes),
    )
    left = _finite(left, "left")
    right = _finite(right, "right")
    if apart is not None:
        k = int(np.argmax(apart.ravel()))
        idx = tuple(int(i) for i in np.unravel_index(k, apart.shape)) if apart.shape else ()
        lv = float(numpy_backend.evaluate(lhs, values, sizes)[idx])
        rv = float(numpy_backend.evaluate(rhs, values, sizes)[idx])
        return math.inf, Counterexample("numeric", {}, {}, idx, lv, rv, lv - rv), []
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
        return err, None, []
    worst = np.argsort(errors.ravel())[::-1][:CONFIRM_ENTRIES]
    suspects = [
        tuple(int(i) for i in np.unravel_index(j, left.shape)) if left.shape else ()
        for j in worst
        if errors.flat[j] > rtol
    ]
    idx = suspects[0]
    cx = Counterexample(
        "numeric",
        {},
        {},
        idx,
        float(left.flat[k]),
        float(right.flat[k]),
        float(left.flat[k] - right.flat[k]),
    )
    return err, cx, suspects


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
        rows = np.shape(other_value)[: np.ndim(other_value) - np.ndim(values[x.name])]
        u = rng.standard_normal(rows) if side.fn == "jacobian" else None
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
    if fn == "jacobian":  # J d contracts the trailing (variable) axes of J with d
        k = np.ndim(d)
        rd = np.tensordot(other_value, d, axes=k)
        scale = np.tensordot(np.abs(other_value), np.abs(d), axes=k)
        return np.sum(u * jd), np.sum(u * rd), np.sum(np.abs(u) * scale)
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
        flat = np.reshape(other_value, np.shape(column) + (w.size,))[..., k]
        row = int(np.argmax(np.abs(column - flat)))
        got, want = float(np.ravel(column)[row]), float(np.ravel(flat)[row])
        rows = np.unravel_index(row, np.shape(column)) if np.ndim(column) else ()
        idx = tuple(int(i) for i in rows) + tuple(int(i) for i in np.unravel_index(k, w.shape))
    else:
        got, want = float(column), float(other_value.flat[k])
        idx = tuple(int(i) for i in np.unravel_index(k, w.shape))
    left, right = (got, want) if probe_left else (want, got)
    return Counterexample("numeric", {}, {}, idx, left, right, left - right)


def _float_inputs(values: dict[str, np.ndarray]) -> dict[str, object]:
    return {k: np.round(np.asarray(v, dtype=float), 12).tolist() for k, v in values.items()}
