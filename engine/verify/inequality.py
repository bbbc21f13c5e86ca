"""Inequality claims (`lhs <= rhs`, `>=`, `<`, `>`, entry by entry): both routes, worst violation.

Exact route: the sides in SymPy at the small sizes, evaluated at rational points with a running
bound on each value's rounding error (as for identities). `lhs <= rhs` is violated where
lhs - rhs exceeds ROUNDING_SAFETY times the two bounds; `lhs < rhs` where lhs - rhs is not below
minus that (an equality that 50 digits cannot tell apart is not a strict inequality). Besides
random points it looks at coincidence points (sampling.coincidence_points: p = q, uniform rows,
x = 0), where an inequality holds with equality and a strict one fails.

Numeric route: float64 at the larger sizes and every profile and input scale, plus coincidence
points. An entry counts as violated only beyond the float64 noise of both sides (a long-double
re-run and the propagated rounding of every intermediate, as for identities: KL(p || q) at
p = q evaluates to -1e-17, which is rounding, not a violation) and beyond NUMERIC_RTOL relative
to the entries; the worst entry is then re-evaluated at high precision, which decides. Float64
cannot tell a strict inequality from equality, so this route judges `<` as `<=` (and `>` as
`>=`); strictness is decided by the exact route.

Both routes report the point of largest violation (relative to the two sides' magnitude).
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import sympy
from sympy.core.sympify import _sympify

from engine.backends import numpy_backend, sympy_backend
from engine.backends.common import concrete_shape
from engine.expr import Call, EngineError, Expr, contains_derivative
from engine.types import PROFILES
from engine.verify import precision
from engine.verify.exact import (
    EXACT_DIGITS,
    EXACT_MAX_ENTRIES,
    EXACT_POINTS,
    FAST_GUARD_DIGITS,
    ROUNDING_SAFETY,
    Sides,
    _as_float,
    _rational_list,
    _rationalize,
    _values_text,
    not_real_guard,
)
from engine.verify.kinks import ExactOrder, Undecided, exact_sign
from engine.verify.numeric import (
    NUMERIC_RTOL,
    SCALE_FLOOR,
    NotFinite,
    _finite,
    _float_inputs,
    _label,
    propagated_noise,
    rounding_noise,
)
from engine.verify.result import CheckReport, Counterexample
from engine.verify.sampling import (
    SMALL_CLAIM_ENTRIES,
    SMALL_CLAIM_POINTS,
    coincidence_points,
    constant_points,
    describe_scales,
    exact_point,
    exact_size_assignments,
    input_scales,
    numeric_point,
    numeric_size_assignment,
)
from engine.verify.search import searchable, violation_search

RELATIONS = ("<=", ">=", "<", ">")


class _Searched:
    """Marks a point of the violation search (engine.verify.search): not required (falsy),
    and a strict relation is judged there as non-strict (a tie is no violation)."""

    def __bool__(self) -> bool:
        return False


SEARCHED = _Searched()
STRICT = ("<", ">")
NON_STRICT = {"<": "<=", ">": ">="}


def oriented(relation: str, left, right):
    """lhs - rhs for `<=`/`<`, rhs - lhs for `>=`/`>`: the claim says it is <= 0 (< 0)."""
    return left - right if relation in ("<=", "<") else right - left


# ---------------------------------------------------------------- exact route


def exact_inequality(
    lhs: Expr, rhs: Expr, relation: str, used, order, seed
) -> tuple[CheckReport, Counterexample | None]:
    """Check `lhs REL rhs` at rational points of the small sizes; the worst violation."""
    assignments = exact_size_assignments(order)
    scales = input_scales(lhs, rhs)
    worst: tuple[float, Counterexample] | None = None
    done: list[dict[str, int]] = []
    skipped = outside = checked = 0
    tightest = math.inf  # the smallest margin (relative) of a satisfied entry
    searched = 0
    for a, sizes in enumerate(assignments):
        large = a == 2
        entries = sum(math.prod(concrete_shape(v.shape, sizes)) for v in used.values())
        if entries > EXACT_MAX_ENTRIES:
            if large:
                skipped += 1
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
            if large:
                skipped += 1
                continue
            raise
        done.append(sizes)
        rng = np.random.default_rng([seed, 1, *sizes.values()])
        points = [
            (exact_point(used, sizes, rng, None), True) for _ in range(1 if large else EXACT_POINTS)
        ]
        points += [(p, False) for p in coincidence_points(used, sizes, rng, exact=True)]
        if a == 0:
            points += [(exact_point(used, sizes, rng, s), False) for s in scales]
            points += [(p, False) for p in constant_points(used, sizes, rng, scales)]
            if searchable(lhs, rhs, entries):
                starts = [_as_float(p) for p, required in points if required]
                found = violation_search(lhs, rhs, relation, used, sizes, rng, starts)
                points += [(_rationalize(p, used, decimal=True), SEARCHED) for p in found]
                searched = len(found)
        for point, required in points:
            subs = {
                symbols[n][idx]: point[n][idx] for n in used for idx in np.ndindex(point[n].shape)
            }
            try:
                lv, le, rv, re = sides.values(subs)
            except (EngineError, ZeroDivisionError):
                if required:
                    raise
                outside += 1
                continue
            checked += 1
            lv, le, rv, re = np.broadcast_arrays(lv, le, rv, re)
            # A searched point shows a violation, never a tie: a strict relation is judged as
            # non-strict there. At s = -1e5 the difference of softplus(s) > 0 is exp(-1e5),
            # which evalf gives as 0, and tanh'(s) is 0 at 70 digits; ties are what the
            # coincidence points are for.
            here = NON_STRICT.get(relation, relation) if required is SEARCHED else relation
            decide = _ExactSign(sides, subs)
            for idx in np.ndindex(lv.shape):
                rel, violated = _exact_entry(
                    lv[idx], le[idx], rv[idx], re[idx], here, here in STRICT
                )
                text = None
                if rel is None:  # the sides within rounding of each other
                    violated, text = decide.violated(idx, here)
                    rel = 0.0
                if not violated:
                    tightest = min(tightest, -rel)
                    continue
                if worst is None or rel > worst[0]:
                    a_, b_ = lv[idx], rv[idx]
                    cx = Counterexample(
                        "exact",
                        dict(sizes),
                        {n: _rational_list(point[n]) for n in used},
                        tuple(int(i) for i in idx),
                        float(a_),
                        float(b_),
                        float(a_ - b_),
                        values_text=text or _values_text(a_, b_),
                        relation=relation,
                    )
                    worst = (rel, cx)
    where = " and ".join(", ".join(f"{k}={v}" for k, v in s.items()) for s in done) or "scalars"
    extras = [f"{checked} points incl. coincidences", describe_scales(scales)]
    if searched:
        extras.append(f"{searched} from a violation search")
    if skipped:
        extras.append("sizes >= 4 skipped (too large)")
    if outside:
        extras.append(f"{outside} point(s) outside the domain left out")
    detail = f"exact {relation} at {where} ({', '.join(e for e in extras if e)})"
    if worst is not None:
        return CheckReport("exact", False, detail, max(worst[0], 0.0)), worst[1]
    if math.isfinite(tightest):
        detail += f", tightest margin {max(tightest, 0.0) + 0.0:.1e}"
    return CheckReport("exact", True, detail, 0.0), None


class _ExactSign:
    """Decides an entry whose sides rounding cannot tell apart: the sign of lhs - rhs in SymPy
    at the rational point (engine/verify/kinks.py). Where it cannot (a gradient's placeholder
    values are not exact), such an entry satisfies `<=` and violates `<` (an equality 50
    digits cannot tell apart is not a strict inequality)."""

    def __init__(self, sides: Sides, subs: dict):
        self.sides = sides
        self.order = ExactOrder.of_substitutions(subs)
        self.pairs = None

    def violated(self, idx: tuple, relation: str) -> tuple[bool, str | None]:
        """(violated?, the difference as text where it was decided exactly)."""
        strict = relation in STRICT
        if self.pairs is None:
            self.pairs = np.broadcast_arrays(
                np.asarray(self.sides.left, dtype=object),
                np.asarray(self.sides.right, dtype=object),
            )
        left, right = self.pairs
        try:
            with sympy.evaluate(True):
                d = self.order.at(_sympify(left[idx])) - self.order.at(_sympify(right[idx]))
            sign = exact_sign(d)
        except (Undecided, EngineError):
            return strict, None
        if sign == 0:
            text = "lhs = rhs exactly"
        else:
            text = f"lhs - rhs = {mpmath.nstr(mpmath.mpf(sympy.N(d, 8)._mpf_), 6)}"
        text += " (decided in SymPy at the point: 50 digits cannot tell the two sides apart)"
        sign = sign if relation in ("<=", "<") else -sign  # the sign of oriented(lhs, rhs)
        return (sign >= 0 if strict else sign > 0), text


def _exact_entry(lv, le, rv, re, relation: str, strict: bool) -> tuple[float | None, bool]:
    """(signed violation relative to the entries, violated?) for one entry; the violation is
    None where the two sides lie within rounding of each other (for _ExactSign to decide)."""
    with mpmath.workdps(EXACT_DIGITS + FAST_GUARD_DIGITS):
        d = oriented(relation, lv, rv)
        bound = ROUNDING_SAFETY * (le + re)
        if mpmath.isnan(bound):  # 0 * inf in a bound's own arithmetic: the value is exact
            bound = mpmath.mpf(0)
        if bound > 0 and abs(d) <= bound:
            return None, strict
        size = max(abs(lv), abs(rv))
        violated = d >= -bound if strict else d > bound
        if size == 0:
            return 0.0, violated
        excess = d + bound if strict else d - bound
        return float(excess / size), violated


# ---------------------------------------------------------------- numeric route


def numeric_inequality(
    lhs: Expr, rhs: Expr, relation: str, used, order, seed, given, discount_noise: bool = True
) -> tuple[CheckReport, Counterexample | None]:
    """Check `lhs REL rhs` (strict as non-strict) in float64 at the numeric sizes. Once the
    exact route has failed (`discount_noise=False`) the verdict is settled, and the float64
    noise discount and the high-precision confirmation are skipped, as for identities."""
    nested = any(
        isinstance(n, Call) and n.fn in ("grad", "jacobian") and contains_derivative(n.args[0])
        for side in (lhs, rhs)
        for n in side.walk()
    )
    has_derivative = any(
        isinstance(n, Call) and n.fn in ("grad", "jacobian") for s in (lhs, rhs) for n in s.walk()
    )
    rtol = NUMERIC_RTOL["nested" if nested else ("complex-step" if has_derivative else "none")]
    sizes = numeric_size_assignment(order, given, nested)
    scales = input_scales(lhs, rhs)
    entries = sum(math.prod(concrete_shape(v.shape, sizes)) for v in used.values())
    repeats = SMALL_CLAIM_POINTS if entries <= SMALL_CLAIM_ENTRIES else 1
    plan: list[tuple[object, dict]] = []
    for p, profile in enumerate([*PROFILES, *scales]):
        for r in range(repeats):
            rng = np.random.default_rng([seed, 2, p, r])
            plan.append((profile, numeric_point(used, sizes, rng, profile)))
    rng = np.random.default_rng([seed, 4])
    plan += [("coincidence", p) for p in coincidence_points(used, sizes, rng, exact=False)]
    searched = 0  # once the exact route has failed, no violation needs looking for
    if discount_noise and searchable(lhs, rhs, entries):
        starts = [values for profile, values in plan if profile in PROFILES][:2]
        found = violation_search(lhs, rhs, relation, used, sizes, rng, starts)
        plan += [("searched", p) for p in found]
        searched = len(found)
    worst: tuple[float, Counterexample] | None = None
    skipped: list[str] = []
    outside = undone = 0
    for profile, values in plan:
        try:
            left = _finite(numpy_backend.evaluate(lhs, values, sizes), "left")
            right = _finite(numpy_backend.evaluate(rhs, values, sizes), "right")
        except (NotFinite, ArithmeticError, ValueError):
            if profile in PROFILES:
                skipped.append(str(profile))
            else:
                outside += 1
            continue
        found = _numeric_violation(
            lhs, rhs, relation, values, sizes, left, right, rtol, discount_noise
        )
        if found is None:
            continue
        rel, idx, text, confirmed = found
        if not confirmed:
            undone += 1
            continue
        if worst is None or rel > worst[0]:
            a_, b_ = np.broadcast_arrays(left, right)
            cx = Counterexample(
                "numeric",
                dict(sizes),
                _float_inputs(values),
                idx,
                float(a_[idx]),
                float(b_[idx]),
                float(a_[idx] - b_[idx]),
                _label(profile),
                text,
                relation=relation,
            )
            worst = (rel, cx)
    if len([s for s in skipped if s in PROFILES]) == len(PROFILES):
        raise EngineError(
            "the claim is not finite in float64 at any ordinary input profile (overflow, or "
            "log/sqrt of a negative value?)"
        )
    where = ", ".join(f"{k}={v}" for k, v in sizes.items()) or "scalars"
    judged = relation if relation not in STRICT else f"{relation} judged as {relation}="
    extras = [describe_scales(scales), "coincidence points"]
    if searched:
        extras.append(f"{searched} from a violation search")
    if undone:
        extras.append(f"{undone} float64 violation(s) undone at high precision")
    if outside:
        extras.append(f"{outside} point(s) outside float64 or the domain left out")
    detail = f"numeric {judged} at {where} ({', '.join(e for e in extras if e)})"
    if skipped:
        detail += f" ({', '.join(skipped)} inputs overflowed float64, skipped)"
    if worst is not None:
        return CheckReport("numeric", False, detail, worst[0]), worst[1]
    return CheckReport("numeric", True, detail, 0.0), None


def _numeric_violation(lhs, rhs, relation, values, sizes, left, right, rtol, discount=True):
    """None if no entry is violated beyond float64 noise; else (relative violation, entry,
    the two values at high precision as text, whether high precision confirms it)."""
    left, right = np.broadcast_arrays(left, right)
    d = oriented(relation, left, right)
    if not np.any(d > 0):
        return None
    noise = np.zeros(d.shape)
    for side in (lhs, rhs) if discount else ():
        noise = noise + rounding_noise(side, values, sizes) + propagated_noise(side, values, sizes)
    scale = max(float(np.max(np.abs(left), initial=0)), float(np.max(np.abs(right), initial=0)))
    denom = np.maximum(np.abs(left), np.abs(right)) + SCALE_FLOOR * scale + 1e-300
    rel = (d - noise) / denom
    k = int(np.argmax(rel))
    if rel.flat[k] <= rtol:
        return None
    idx = tuple(int(i) for i in np.unravel_index(k, d.shape)) if d.shape else ()
    if not discount:
        return float(rel.flat[k]), idx, None, True
    got = _high_precision(lhs, rhs, values, sizes, idx)
    if got is None:
        raise EngineError(
            "the numeric check found a violation that float64 cannot settle and the point is "
            f"too large to re-evaluate at high precision (entry {list(idx)}); try smaller --size "
            "values"
        )
    (hl, hr), digits = got
    with mpmath.workdps(digits):
        hd = oriented(relation, hl, hr)
        if not hd > precision.CONFIRM_RTOL * max(abs(hl), abs(hr)):
            return float(rel.flat[k]), idx, None, False
        text = f"lhs = {mpmath.nstr(hl, 12)}, rhs = {mpmath.nstr(hr, 12)} (at {digits} digits)"
    return float(rel.flat[k]), idx, text, True


def _high_precision(lhs, rhs, values, sizes, idx):
    """Both sides' entries at `idx` (broadcast) at high precision, real parts, and the digits
    used (more where a kink's comparison was a near tie); None if unknown."""
    entries = []
    for side in (lhs, rhs):
        shape = concrete_shape(side.shape, sizes)
        entries.append(
            tuple(
                0 if d == 1 else i for d, i in zip(shape, idx[len(idx) - len(shape) :], strict=True)
            )
        )
    return precision.entries_at_high_precision((lhs, rhs), values, sizes, entries)
