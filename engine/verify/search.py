"""Looking for an inequality's violation where random points do not go: rays and ascent.

Random points at unit magnitude and at the claim's own constants miss two kinds of violation:

- **in a limit**: `sigmoid(s) <= 0.999` fails only for s > 6.9, `log(t) >= -20` only for
  t < 2e-9, `max(softmax(x)) <= 0.9999` only once the logits spread past about 10, and no
  constant of the claim points there;
- **in a thin region**: `silu(s) >= -0.2784` fails only within 0.02 of silu's minimum at
  s = -1.2785 (its minimum is -0.27846).

`violation_search` walks the rays t * x through sampled points (t = +-10**k; a simplex row
sharpened or flattened as softmax(k log p), a temperature), then climbs the violation from the
most nearly violated points found, by gradient ascent with central differences in each type's
free coordinates (log x for a positive variable, log p for a simplex row, the logit for unit).
It only proposes points, in float64: whether a point violates the claim is decided by the route
that checks it (exactly in SymPy at rationals, or in float64 with a high-precision
confirmation), as for every other point.
"""

from __future__ import annotations

import math

import numpy as np

from engine.backends import numpy_backend
from engine.backends.common import concrete_shape
from engine.expr import EngineError, Expr, Var, contains_derivative
from engine.index_type import declared_shape
from engine.types import PROFILES, TYPES
from engine.verify.sampling import numeric_point

SEARCH_POWERS = tuple(range(-12, 13))  # the rays' scale factors, 10**k
SEARCH_STARTS = 2  # points climbed from, the most nearly violated first
ASCENT_STEPS = 30  # gradient steps per start, at most
ASCENT_MAX_FREE = 32  # free coordinates above which no ascent is made (rays only)
SEARCH_POINTS = 3  # points returned to the route: the most violated
RANDOM_TRIES = 24  # random points, each variable at its own magnitude
# A claim with grad or jacobian costs a complex-step evaluation per input entry at every point
# the search looks at: searched only up to this many entries (a scalar, a vector at n = 2).
DERIVATIVE_MAX_ENTRIES = 16

# How each type's entries are moved: to free coordinates and back. Types not listed (onehot,
# mask, index, orthogonal, spd) keep their sampled values; spd and orthogonal are still scaled
# along rays where that keeps them of their type.
_FREE = {
    "real": (lambda x: x, lambda u: u),
    "symmetric": (lambda x: x, lambda u: (u + np.swapaxes(u, -1, -2)) / 2),
    "positive": (np.log, np.exp),
    "unit": (lambda x: np.log(x) - np.log1p(-x), lambda u: 1 / (1 + np.exp(-u))),
    "simplex": (np.log, lambda u: _softmax_rows(u)),
}


def _softmax_rows(u: np.ndarray) -> np.ndarray:
    e = np.exp(u - np.max(u, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


RAY_TYPES = ("real", "symmetric", "positive", "spd", "unit", "simplex")


def _ray(vtype: str, x: np.ndarray, t: float) -> np.ndarray | None:
    """The point t along the ray through x: t x for real and symmetric (t of either sign) and for
    positive and spd (t > 0); the free coordinates scaled for unit and simplex (a temperature)."""
    if vtype in ("real", "symmetric") or (vtype in ("positive", "spd") and t > 0):
        return x * t
    if vtype in ("unit", "simplex") and t > 0:
        to, back = _FREE[vtype]
        u = to(x)
        if vtype == "simplex":
            u = u - np.mean(u, axis=-1, keepdims=True)
        return back(u * t)
    return None


def searchable(lhs: Expr, rhs: Expr, entries: int) -> bool:
    """Whether `violation_search` runs for a claim with `entries` input entries: always without
    a derivative in it, else up to DERIVATIVE_MAX_ENTRIES."""
    derivative = contains_derivative(lhs) or contains_derivative(rhs)
    return not derivative or entries <= DERIVATIVE_MAX_ENTRIES


class _Margin:
    """The claim's violation at a float point: the largest over entries of the oriented
    difference (lhs - rhs for <=) relative to the two sides' magnitudes; -inf where a side is
    not finite or cannot be evaluated."""

    def __init__(self, lhs: Expr, rhs: Expr, relation: str, sizes: dict[str, int]):
        self.lhs, self.rhs, self.sizes = lhs, rhs, sizes
        self.sign = 1.0 if relation in ("<=", "<") else -1.0

    def __call__(self, point: dict[str, np.ndarray]) -> float:
        try:
            left = np.real(numpy_backend.evaluate(self.lhs, point, self.sizes))
            right = np.real(numpy_backend.evaluate(self.rhs, point, self.sizes))
            left, right = np.broadcast_arrays(np.asarray(left, float), np.asarray(right, float))
        except (ArithmeticError, ValueError, TypeError, EngineError):
            return -math.inf
        if not (np.all(np.isfinite(left)) and np.all(np.isfinite(right))):
            return -math.inf
        d = self.sign * (left - right)
        rel = d / (np.abs(left) + np.abs(right) + 1e-300)
        return float(np.max(rel)) if rel.size else -math.inf


def violation_search(
    lhs: Expr,
    rhs: Expr,
    relation: str,
    used: dict[str, Var],
    sizes: dict[str, int],
    rng: np.random.Generator,
    starts: list[dict[str, np.ndarray]],
) -> list[dict[str, np.ndarray]]:
    """Up to SEARCH_POINTS float points, the most violated found (see the module docstring):
    along the rays through `starts` and random points, then by ascent from the best of them."""
    with np.errstate(all="ignore"):
        return _search(lhs, rhs, relation, used, sizes, rng, starts)


def _search(lhs, rhs, relation, used, sizes, rng, starts) -> list[dict[str, np.ndarray]]:
    margin = _Margin(lhs, rhs, relation, sizes)
    seen: list[tuple[float, dict[str, np.ndarray]]] = []

    def value(point: dict[str, np.ndarray]) -> float:
        # a ray or a step can leave a type (a simplex entry underflowing to 0): not a point
        for k, var in used.items():
            if var.vtype in RAY_TYPES and not TYPES[var.vtype].admits(np.asarray(point[k])):
                return -math.inf
        return margin(point)

    def look(point: dict[str, np.ndarray]) -> float:
        v = value(point)
        if math.isfinite(v):
            seen.append((v, point))
        return v

    bases = [dict(p) for p in starts] or [numeric_point(used, sizes, rng, "unit")]
    for base in bases:
        look(base)
    for _ in range(RANDOM_TRIES):
        look(_random_point(used, sizes, rng))
    movable = [k for k, v in used.items() if v.vtype in RAY_TYPES]
    groups = [[k] for k in movable] + ([movable] if len(movable) > 1 else [])
    for base in bases[:2]:
        for group in groups:
            for power in SEARCH_POWERS:
                for sign in (1.0, -1.0):
                    point = dict(base)
                    for k in group:
                        moved = _ray(used[k].vtype, base[k], sign * 10.0**power)
                        if moved is None:
                            break
                        point[k] = moved
                    else:
                        look(point)
    free = [k for k, v in used.items() if v.vtype in _FREE]
    n_free = sum(int(np.size(seen[0][1][k])) for k in free) if seen and free else 0
    if 0 < n_free <= ASCENT_MAX_FREE:
        ranked = sorted(seen, key=lambda s: -s[0])
        # the most nearly violated point, and the most nearly violated of unit magnitude: a
        # periodic or bumpy function is climbed where its dips are resolved (cos(s) >= -0.9999
        # from s = 2.4e9 has no gradient to follow)
        plain = [sv for sv in ranked if _plainness(sv[1]) <= 1.0]
        for v, point in (ranked[:1] + plain[:1])[:SEARCH_STARTS]:
            if v <= 0:  # a violated point needs no climbing
                _ascend(margin, point, {k: used[k].vtype for k in free}, look)
    violated = [p for v, p in seen if v > 0]
    if violated:  # the plainest violated points, their entries rounded while they stay violated
        violated.sort(key=_plainness)
        ranked = [_rounded(value, p, used) for p in violated]
    else:
        ranked = [p for _, p in sorted(seen, key=lambda s: -s[0])]
    out: list[dict[str, np.ndarray]] = []
    for point in ranked:
        if len(out) >= SEARCH_POINTS:
            break
        if not any(_same(point, q) for q in out):
            out.append(point)
    return out


def _plainness(point: dict[str, np.ndarray]) -> float:
    """How far the point's entries are from magnitude 1 (in decades): counterexamples at x = 8
    read better than at x = 3e4, and either shows the claim wrong."""
    worst = 0.0
    for x in point.values():
        a = np.abs(np.asarray(x, dtype=float))
        a = a[a > 0]
        if a.size:
            worst = max(worst, float(np.max(np.abs(np.log10(a)))))
    return worst


def _rounded(value, point: dict[str, np.ndarray], used: dict[str, Var]) -> dict:
    """`point` with the entries of its real, symmetric, positive, unit and simplex variables
    rounded to the fewest significant digits (1 to 6) that keep it violated in float64 (a
    simplex row then renormalized); else `point`."""
    names = [k for k, v in used.items() if v.vtype in _FREE]
    if not names:
        return point
    for digits in range(1, 7):
        candidate = dict(point)
        for k in names:
            x = _round_significant(np.asarray(point[k], dtype=float), digits)
            if used[k].vtype == "simplex":
                x = x / np.sum(x, axis=-1, keepdims=True)
            candidate[k] = x
        if value(candidate) > 0:
            return candidate
    return point


def _round_significant(x: np.ndarray, digits: int) -> np.ndarray:
    with np.errstate(all="ignore"):
        mag = np.where(x == 0, 0, np.floor(np.log10(np.abs(np.where(x == 0, 1, x)))))
        unit = 10.0 ** (mag - digits + 1)
        return np.round(x / unit) * unit


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return all(np.array_equal(a[k], b[k]) for k in a)


def _random_point(used: dict[str, Var], sizes: dict[str, int], rng) -> dict[str, np.ndarray]:
    """Each variable at its own random magnitude, 1e-6 to 1e6, or at an ordinary profile."""
    point = {}
    for name, v in used.items():
        shape = concrete_shape(declared_shape(v), sizes)
        t = TYPES[v.vtype]
        if rng.integers(2) and t.numeric_at is not None:
            point[name] = np.asarray(t.numeric_at(rng, shape, 10 ** rng.uniform(-6, 6)), float)
        else:
            profile = PROFILES[int(rng.integers(len(PROFILES)))]
            point[name] = np.asarray(t.numeric(rng, shape, profile), dtype=float)
    return point


def _ascend(margin: _Margin, point: dict, free: dict[str, str], look) -> None:
    """Gradient ascent of the violation in the free coordinates, from `point`; every point
    evaluated is passed to `look`. Steps are normalized, scaled to the coordinates' magnitude,
    and grow after a success and shrink after a failure."""
    names = list(free)
    with np.errstate(all="ignore"):
        u = np.concatenate([np.ravel(_FREE[free[k]][0](point[k])) for k in names])
    if not np.all(np.isfinite(u)):
        return
    shapes = [np.shape(point[k]) for k in names]

    def at(u: np.ndarray) -> dict[str, np.ndarray]:
        out, i = dict(point), 0
        for k, shape in zip(names, shapes, strict=True):
            size = math.prod(shape)
            out[k] = _FREE[free[k]][1](u[i : i + size].reshape(shape))
            i += size
        return out

    best = margin(at(u))
    eta = 0.1 * (1.0 + float(np.max(np.abs(u))))
    for _ in range(ASCENT_STEPS):
        h = 1e-6 * (1.0 + np.abs(u))
        g = np.zeros_like(u)
        for i in range(u.size):
            up, down = u.copy(), u.copy()
            up[i] += h[i]
            down[i] -= h[i]
            g[i] = (margin(at(up)) - margin(at(down))) / (2 * h[i])
        norm = float(np.linalg.norm(g))
        if not math.isfinite(norm) or norm == 0.0:
            break
        step = g / norm
        moved = False
        for trial in (2 * eta, eta, eta / 4, eta / 16):
            candidate = u + trial * step
            v = look(at(candidate))
            if v > best:
                u, best, eta, moved = candidate, v, trial, True
                break
        if not moved:
            eta /= 64
            if eta < 1e-12 * (1.0 + float(np.max(np.abs(u)))):
                break
        if best > 0:
            break
