"""Where the verifier looks: size assignments, input scales from the claim, kink coverage."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sympy

from engine.backends import numpy_backend
from engine.backends.common import concrete_shape
from engine.expr import Call, Const, EngineError, Expr, Var
from engine.index_type import declared_shape
from engine.types import PROFILES, TYPES

# Numeric check: size symbols take these distinct values in declaration order.
NUMERIC_SIZES = (64, 24, 16, 12, 10, 9, 8, 7)
# A nested derivative (a Hessian) costs coordinates squared evaluations: smaller, still larger
# than every exact size (n = 9 against n = 2, 3, 4). A Jacobian of rank > 2 uses them too.
NESTED_SIZES = (9, 8, 7, 10, 11, 12, 13, 14)
# The exact check's size assignments: two small ones with pairwise distinct sizes >= 2 (so a
# transposition or an axis mix-up cannot hide), and one with every size >= LARGE_EXACT_FROM, where
# terms that vanish at small sizes (a Hessian entry that needs three other coordinates) show.
LARGE_EXACT_FROM = 4
# Beyond the largest constant of a claim: inputs reach BEYOND times it (a clamp at 30 is crossed).
BEYOND = 4
# Below the smallest constant (or 1): inputs reach TINY times it (a floor at 1e-12 is crossed).
TINY = sympy.Rational(1, 1000)
MAX_CONSTANT_SCALES = 4  # constants of a claim used as input scales (smallest and largest first)
# A claim with few input entries is cheap to check: every profile draws several points, so a
# scalar formula wrong on half the line is not missed by a handful of draws.
SMALL_CLAIM_ENTRIES = 16
SMALL_CLAIM_POINTS = 4
KINK_SEARCH_TRIES = 96  # random points tried to put a kink argument on a side not yet reached
KINK_SEARCH_POINTS = 2  # extra points kept from that search


def exact_size_assignments(order: list[str]) -> list[dict[str, int]]:
    """Two assignments with pairwise distinct sizes >= 2 and one with every size >= 4."""
    if not order:
        return [{}]
    base = list(range(2, 2 + len(order)))
    rotated = base[1:] + base[:1] if len(order) > 1 else [3]
    large = list(range(LARGE_EXACT_FROM, LARGE_EXACT_FROM + len(order)))
    return [dict(zip(order, s, strict=True)) for s in (base, rotated, large)]


def numeric_size_assignment(
    order: list[str],
    given: Mapping[str, int] | None,
    nested: bool = False,
    derivative: bool = False,
) -> dict[str, int]:
    """The numeric route's sizes: NUMERIC_SIZES (NESTED_SIZES for a Hessian), or `given`.

    A claim with a derivative node (a Jacobian or Hessian) is checked at sizes of at least
    LARGE_EXACT_FROM even when smaller ones are given: the exact route's large assignment may be
    skipped as too costly, and an entry that needs four coordinates must still be seen by a route.
    """
    table = NESTED_SIZES if nested else NUMERIC_SIZES
    sizes = {name: table[i % len(table)] for i, name in enumerate(order)}
    floor = LARGE_EXACT_FROM if derivative else 1
    sizes.update({k: max(int(v), floor) for k, v in (given or {}).items() if k in sizes})
    return sizes


def claim_constants(*sides: Expr) -> list[sympy.Rational]:
    """The magnitudes of the numbers written in a claim (30 in `relu(x - 30)`, 1e-12, pi), as
    exact rationals, without 0 and 1."""
    found: set[sympy.Rational] = set()
    for side in sides:
        for node in side.walk():
            if isinstance(node, Const) and node.value.is_number and node.value.is_finite:
                v = abs(node.value)
                if v.is_Rational:
                    r = v
                else:
                    r = sympy.Rational(str(sympy.Float(v, 20)))
                if r != 0 and r != 1 and sympy.Rational(1, 10**300) < r < 10**300:
                    found.add(r)
    return sorted(found)


@dataclass(frozen=True)
class Scale:
    """An input magnitude the verifier samples at, and why."""

    magnitude: sympy.Rational
    why: str  # "tiny", "constant", "beyond"

    @property
    def value(self) -> float:
        return float(self.magnitude)


def input_scales(*sides: Expr) -> list[Scale]:
    """The magnitudes, besides the ordinary profiles, at which inputs are drawn: far below the
    smallest constant (or 1), at each constant, and beyond the largest."""
    consts = claim_constants(*sides)
    picked = consts
    if len(consts) > MAX_CONSTANT_SCALES:
        # the extremes first (they bound where kinks can sit), then spread through the rest
        inner = consts[1:-1]
        step = max(1, len(inner) // (MAX_CONSTANT_SCALES - 2))
        picked = [consts[0], *inner[::step][: MAX_CONSTANT_SCALES - 2], consts[-1]]
    lo = min([sympy.Integer(1), *consts])
    hi = max([sympy.Integer(1), *consts])
    scales = [Scale(lo * TINY, "tiny")]
    scales += [Scale(c, "constant") for c in picked]
    scales.append(Scale(hi * BEYOND, "beyond"))
    return scales


def describe_scales(scales: list[Scale]) -> str:
    """`scales 1e-3..120`: the range of magnitudes inputs were drawn at (besides unit ones)."""
    if not scales:
        return ""
    lo, hi = min(s.value for s in scales), max(s.value for s in scales)
    return f"scales {lo:.0e}..{hi:.3g}".replace("e-0", "e-").replace("e+0", "e")


# ---------------------------------------------------------------- kinks


def kink_arguments(*sides: Expr) -> list[Expr]:
    """The argument of every kinked function in the claim (relu, abs, step, sign, ...), and the
    `kinks` of the generally kinked ones (a - b for maximum(a, b), x - lo and x - hi for clip)."""
    out: list[Expr] = []
    for side in sides:
        for node in side.walk():
            if isinstance(node, Call) and node.spec.kink and node.args[0] not in out:
                out.append(node.args[0])
            if isinstance(node, Call) and node.spec.kinks is not None:
                out += [k for k in node.spec.kinks(node) if k not in out]
    return out


@dataclass
class KinkCoverage:
    """Which sides (negative, zero, positive) of each kink argument the sampled points reached,
    and one float point on each side of each (for `boundary_points`)."""

    arguments: list[Expr]
    seen: list[set[int]]
    sides: list[dict[int, dict[str, np.ndarray]]]

    @classmethod
    def of(cls, arguments: list[Expr]) -> KinkCoverage:
        return cls(arguments, [set() for _ in arguments], [{} for _ in arguments])

    def add(self, values: dict[str, np.ndarray], sizes: dict[str, int]) -> list[set[int]]:
        """Record the signs the kink arguments take at `values`; return those signs."""
        signs = kink_signs(self.arguments, values, sizes)
        for have, new, side in zip(self.seen, signs, self.sides, strict=True):
            have |= new
            for sign in new - {0}:
                side.setdefault(sign, {k: np.asarray(v, dtype=float) for k, v in values.items()})
        return signs

    def boundary_points(
        self, used: dict[str, Var], sizes: dict[str, int]
    ) -> list[dict[str, np.ndarray]]:
        """Two float points straddling each kink, just below and just above it (x = 20 - e and
        20 + e for relu(x - 20)): found by bisection on the segment between a point where the
        kink argument is negative and one where it is positive. A formula wrong only near a
        threshold written in the claim (PyTorch's softplus at 20) is caught there."""
        out: list[dict[str, np.ndarray]] = []
        for arg, side in zip(self.arguments, self.sides, strict=True):
            if -1 not in side or 1 not in side:
                continue
            neg, pos = side[-1], side[1]
            with np.errstate(all="ignore"):
                u0 = _real_values(arg, neg, sizes)
                u1 = _real_values(arg, pos, sizes)
            if u0 is None or u1 is None or u0.shape != u1.shape:
                continue
            both = np.flatnonzero((u0.ravel() < 0) & (u1.ravel() > 0))
            if not both.size:
                continue
            j = int(both[0])
            lo, hi = 0.0, 1.0
            for _ in range(BISECTIONS):
                mid = (lo + hi) / 2
                u = _real_values(arg, _between(neg, pos, mid, used), sizes)
                if u is None:
                    break
                if u.ravel()[j] < 0:
                    lo = mid
                else:
                    hi = mid
            out += [_between(neg, pos, lo, used), _between(neg, pos, hi, used)]
        return out

    def missing(self) -> list[int]:
        return [i for i, s in enumerate(self.seen) if not {-1, 1} <= s]

    def covered(self) -> int:
        return len(self.arguments) - len(self.missing())

    def describe(self) -> str:
        if not self.arguments:
            return ""
        return f"kinks {self.covered()}/{len(self.arguments)} both sides"


BISECTIONS = 44  # halvings of the segment across a kink: the two points end about 6e-14 apart


def _real_values(arg: Expr, values, sizes, finite_only: bool = True) -> np.ndarray | None:
    """A kink argument's float values at a point; None where it cannot be evaluated (or, with
    `finite_only`, is not finite everywhere)."""
    try:
        v = np.asarray(np.real(numpy_backend.evaluate(arg, values, sizes)), dtype=float)
    except (ArithmeticError, ValueError, TypeError, EngineError):
        return None
    return v if not finite_only or np.all(np.isfinite(v)) else None


def _between(a: dict, b: dict, t: float, used: dict[str, Var]) -> dict[str, np.ndarray]:
    """The point (1 - t) a + t b; a one-hot variable (not convex) is taken from the nearer end."""
    out = {}
    for k in a:
        if not TYPES[used[k].vtype].convex:  # onehot, mask, orthogonal
            out[k] = a[k] if t < 0.5 else b[k]
        else:
            out[k] = (1 - t) * a[k] + t * b[k]
    return out


def constant_points(
    used: dict[str, Var],
    sizes: dict[str, int],
    rng: np.random.Generator,
    scales: list[Scale],
    kinked: bool = False,
) -> list[dict[str, np.ndarray]]:
    """Points at the constants themselves: every real variable at +c (then -c) and every positive
    one at c, exactly; others drawn as usual. `step(x - 30) + step(30 - x) == 1` is wrong only
    at x = 30, which the constant 30 points to; with `kinked` (the claim has kinks) at 1 too,
    where every entry is 1 (then -1) and a max or sort meets a tie. And two points past the
    largest constant, every real entry beyond it on one side (then the other), distinct
    (`_beyond_entries`)."""
    out = []
    if kinked and not any(s.why == "constant" and s.magnitude == 1 for s in scales):
        # 1 is no constant of its own (it is everywhere: 1 - p, x + 1), but a kink at +-1 (clip
        # to [-1, 1], step(1 - z)) is one a claim may be wrong exactly at: seed 3 never drew it
        scales = [Scale(sympy.Integer(1), "constant"), *scales]
    for scale in scales:
        if scale.why not in ("constant", "beyond"):
            continue
        for sign in (1, -1):
            point = exact_point(used, sizes, rng, None)
            for name, v in used.items():
                shape = concrete_shape(v.shape, sizes)
                if v.vtype == "real" or (v.vtype == "positive" and sign == 1):
                    if scale.why == "constant":
                        entries = np.full(shape, sign * scale.magnitude, dtype=object)
                    else:
                        entries = _beyond_entries(shape, sign * scale.magnitude)
                    point[name] = _object_array(entries)
            out.append(point)
    return out


def _beyond_entries(shape: tuple[int, ...], magnitude: sympy.Rational) -> np.ndarray:
    """Every entry past the claim's largest constant on one side, all distinct (magnitude times
    1, 1 + 1/8, 1 + 2/8, ...: no ties for a max or a sort to split). The random points at the
    `beyond` scale put only some entries there: `max(t * z + (1 - t) * -1e9)` (a masked max
    picking the hot logit) is wrong only when the hot entry itself is below -1e9, which 8 seeds
    in 30 never drew."""
    count = int(np.prod(shape)) if shape else 1
    steps = [magnitude * (1 + sympy.Rational(k, 8)) for k in range(count)]
    return np.array(steps, dtype=object).reshape(shape)


def kink_signs(
    arguments: list[Expr], values: dict[str, np.ndarray], sizes: dict[str, int]
) -> list[set[int]]:
    """The set of signs (-1, 0, 1) each argument takes over its entries at `values`."""
    out = []
    with np.errstate(all="ignore"):
        for arg in arguments:
            v = _real_values(arg, values, sizes, finite_only=False)
            if v is None:
                out.append(set())
                continue
            out.append({int(s) for s in np.unique(np.sign(v[np.isfinite(v)]))})
    return out


def numeric_point(
    used: dict[str, Var], sizes: dict[str, int], rng: np.random.Generator, profile: str | Scale
) -> dict[str, np.ndarray]:
    """Float inputs of every variable at one profile (unit, wide, peaked) or scale."""
    out = {}
    for name, v in used.items():
        shape = concrete_shape(declared_shape(v), sizes)  # index: bound included
        t = TYPES[v.vtype]
        if isinstance(profile, Scale):
            out[name] = np.asarray(t.numeric_at(rng, shape, profile.value), dtype=float)
        else:
            out[name] = np.asarray(t.numeric(rng, shape, profile), dtype=float)
    return out


def exact_point(
    used: dict[str, Var], sizes: dict[str, int], rng: np.random.Generator, scale: Scale | None
) -> dict[str, np.ndarray]:
    """Rational inputs of every variable, at unit magnitude or at `scale`."""
    out = {}
    for name, v in used.items():
        shape = concrete_shape(declared_shape(v), sizes)  # index: bound included
        t = TYPES[v.vtype]
        x = t.exact(rng, shape) if scale is None else t.exact_at(rng, shape, scale.magnitude)
        out[name] = _object_array(x)
    return out


def _object_array(x) -> np.ndarray:
    """An object ndarray, also for a scalar (arithmetic on a 0-d array gives a bare number)."""
    if isinstance(x, np.ndarray):
        return x
    arr = np.empty((), dtype=object)
    arr[()] = x
    return arr


def kink_search(
    coverage: KinkCoverage,
    used: dict[str, Var],
    sizes: dict[str, int],
    rng: np.random.Generator,
    scales: list[Scale],
) -> list[dict[str, np.ndarray]]:
    """Random float points, each variable at its own random magnitude, that put a kink argument
    on a side no point has reached yet (at most KINK_SEARCH_POINTS of them)."""
    found: list[dict[str, np.ndarray]] = []
    if not coverage.missing():
        return found
    lo = min([s.value for s in scales] + [1e-3])
    hi = max([s.value for s in scales] + [1.0])
    span = (math.log10(lo) - 3, math.log10(hi) + 1)
    for _ in range(KINK_SEARCH_TRIES):
        if len(found) >= KINK_SEARCH_POINTS or not coverage.missing():
            break
        point = {}
        for name, v in used.items():
            shape = concrete_shape(declared_shape(v), sizes)  # index: bound included
            mag = 10 ** rng.uniform(*span)
            kind = rng.integers(3)
            if kind == 0:
                point[name] = np.asarray(TYPES[v.vtype].numeric_at(rng, shape, mag), dtype=float)
            else:
                point[name] = np.asarray(TYPES[v.vtype].numeric(rng, shape, PROFILES[kind]), float)
        if not all(np.all(np.isfinite(v)) for v in point.values()):
            continue
        before = [set(s) for s in coverage.seen]
        coverage.add(point, sizes)
        if coverage.seen != before:
            found.append(point)
    if coverage.missing() and len(found) < KINK_SEARCH_POINTS:
        found += _ray_search(coverage, used, sizes, rng, KINK_SEARCH_POINTS - len(found))
    return found


# The ray search scales one variable (or all of them) by +-10**k: a threshold the claim reaches
# only through a product of constants (minimum(z * 1e-4, 1) needs |z| > 1e4) or through a
# variable's norm (g * minimum(1, c / norm(g))) is crossed at some power of ten.
RAY_POWERS = tuple(range(-8, 13))


def _ray_search(
    coverage: KinkCoverage,
    used: dict[str, Var],
    sizes: dict[str, int],
    rng: np.random.Generator,
    most: int,
) -> list[dict[str, np.ndarray]]:
    """Points on the rays t * x (t = +-10**k) through a unit point, one variable at a time and
    all together, that put a kink argument on a side no point has reached yet."""
    base = numeric_point(used, sizes, rng, "unit")
    scalable = [k for k, v in used.items() if v.vtype in ("real", "positive")]
    groups = [[k] for k in scalable] + ([scalable] if len(scalable) > 1 else [])
    found: list[dict[str, np.ndarray]] = []
    for group in groups:
        for power in RAY_POWERS:
            for sign in (1.0, -1.0):
                if len(found) >= most or not coverage.missing():
                    return found
                if sign < 0 and any(used[k].vtype != "real" for k in group):
                    continue
                point = dict(base)
                for k in group:
                    point[k] = base[k] * (sign * 10.0**power)
                before = [set(s) for s in coverage.seen]
                coverage.add(point, sizes)
                if coverage.seen != before:
                    found.append(point)
    return found


# ---------------------------------------------------------------- inequality claims


def coincidence_points(
    used: dict[str, Var], sizes: dict[str, int], rng: np.random.Generator, exact: bool
) -> list[dict[str, np.ndarray]]:
    """Points where an inequality may hold with equality, which random points never reach:
    variables of one type and shape set equal (KL(p || q) at p = q, Cauchy-Schwarz at k = q),
    every variable flat (all entries equal, uniform rows, c I: AM-GM, entropy <= log n), both,
    and real variables at zero (norm(x) at x = 0). Exact points are rationals, numeric ones
    floats; a point outside a claim's domain is left out by the caller."""

    def draw() -> dict[str, np.ndarray]:
        if exact:
            return exact_point(used, sizes, rng, None)
        return numeric_point(used, sizes, rng, "unit")

    def tie(point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        first: dict[tuple, str] = {}
        out = dict(point)
        for name, v in used.items():
            key = (v.vtype, declared_shape(v))
            out[name] = point[first.setdefault(key, name)]
        return out

    def flat(point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: _flat_value(used[name].vtype, x, exact) for name, x in point.items()}

    def zeros(point: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(point)
        for name, v in used.items():
            if v.vtype in ("real", "symmetric"):
                shape = np.shape(point[name])
                out[name] = (
                    _object_array(np.full(shape, sympy.Integer(0), dtype=object))
                    if exact
                    else np.zeros(shape)
                )
        return out

    return [tie(draw()), flat(draw()), tie(flat(draw())), zeros(draw())]


def _flat_value(vtype: str, x: np.ndarray, exact: bool) -> np.ndarray:
    """All entries equal: a constant array, uniform rows (simplex), c I (symmetric), I (spd,
    orthogonal: log det X <= tr X - n holds with equality at X = I)."""
    t = TYPES[vtype]
    shape = np.shape(x)
    if vtype == "onehot" or not shape:
        return x
    one = sympy.Integer(1) if exact else 1.0
    zero = sympy.Integer(0) if exact else 0.0
    if t.square:
        c = x[0, 0] if vtype == "symmetric" else one  # spd and orthogonal: the identity
        out = np.full(shape, zero, dtype=object)
        for i in range(shape[0]):
            out[i, i] = c
    elif t.sums_to_one:
        out = np.full(shape, sympy.Rational(1, shape[-1]) if exact else 1.0 / shape[-1], object)
    else:
        out = np.full(shape, np.asarray(x).flat[0], dtype=object)
    return _object_array(out) if exact else np.asarray(out, dtype=float)
