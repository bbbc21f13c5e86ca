"""Variable types (real, positive, unit, simplex, onehot, mask, symmetric, spd, orthogonal, index):
their constraints and samplers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sympy

# Numeric sampling profiles: each claim is checked at every one of them.
PROFILES = ("unit", "wide", "peaked")
PEAK = 12.0  # the logit added to one entry per row in the "peaked" profile


@dataclass(frozen=True)
class VarType:
    """A variable type: which values it admits and how to draw them."""

    name: str
    doc: str
    min_rank: int
    assumptions: dict
    exact: Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]
    numeric: Callable[[np.random.Generator, tuple[int, ...], str], np.ndarray]
    admits: Callable[[np.ndarray], bool]
    sums_to_one: bool = False
    # Draws at a magnitude `scale` (an exact Rational for the exact route, a float for the numeric
    # one): real entries of size about `scale` with both signs, positive ones about `scale`, unit
    # and simplex entries about `scale` away from 0 (and, for unit, from 1) when scale < 1.
    exact_at: (
        Callable[[np.random.Generator, tuple[int, ...], sympy.Rational], np.ndarray] | None
    ) = None
    numeric_at: Callable[[np.random.Generator, tuple[int, ...], float], np.ndarray] | None = None
    # Square-matrix types (symmetric, spd, orthogonal): exactly rank 2 with equal sizes.
    square: bool = False
    # A segment between two admitted values stays admitted (false for onehot and orthogonal).
    convex: bool = True
    # A float value as an exact rational one of the type (None: entry by entry).
    rationalize: Callable[[np.ndarray], np.ndarray] | None = None


def _rationals(rng, shape, lo, hi, den=12, nonzero=True) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        while True:
            d = int(rng.integers(1, den + 1))
            k = int(rng.integers(int(lo * d), int(hi * d) + 1))
            if (k != 0 or not nonzero) and lo < k / d < hi:
                out[idx] = sympy.Rational(k, d)
                break
    return out


def _normalize_rows(w: np.ndarray) -> np.ndarray:
    if w.ndim == 0:
        return w
    totals = np.empty(w.shape[:-1], dtype=object)
    for idx in np.ndindex(totals.shape):
        # Rational + Rational, not sympy.Add: Add.flatten's first call imports sympy.tensor
        # (0.085 s, a third of verifying one claim after imports).
        totals[idx] = sum(w[idx].tolist(), sympy.Integer(0))
    return w / totals[..., None]


def _exact_onehot(rng, shape) -> np.ndarray:
    out = np.full(shape, sympy.Integer(0), dtype=object)
    for idx in np.ndindex(shape[:-1]):
        out[idx + (int(rng.integers(shape[-1])),)] = sympy.Integer(1)
    return out


def _real_numeric(rng, shape, profile) -> np.ndarray:
    x = rng.standard_normal(shape)
    if profile == "wide":
        return 4.0 * x
    if profile == "peaked" and len(shape) >= 1:
        peak = rng.integers(shape[-1], size=shape[:-1])
        np.put_along_axis(x, np.expand_dims(peak, -1), PEAK, axis=-1)
    return x


def _positive_numeric(rng, shape, profile) -> np.ndarray:
    sigma = {"unit": 0.5, "wide": 1.5, "peaked": 0.5}[profile]
    x = np.exp(sigma * rng.standard_normal(shape))
    if profile == "peaked" and len(shape) >= 1:
        peak = rng.integers(shape[-1], size=shape[:-1])
        np.put_along_axis(x, np.expand_dims(peak, -1), 50.0, axis=-1)
    return x


def _unit_numeric(rng, shape, profile) -> np.ndarray:
    lo = {"unit": 0.1, "wide": 1e-3, "peaked": 0.01}[profile]
    return rng.uniform(lo, 1 - lo, size=shape)


def _simplex_numeric(rng, shape, profile) -> np.ndarray:
    z = _real_numeric(rng, shape, profile)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _onehot_numeric(rng, shape, profile) -> np.ndarray:
    out = np.zeros(shape)
    idx = rng.integers(shape[-1], size=shape[:-1])
    np.put_along_axis(out, np.expand_dims(idx, -1), 1.0, axis=-1)
    return out


def _exact_real_at(rng, shape, scale) -> np.ndarray:
    return _rationals(rng, shape, -3, 3) * (sympy.Rational(scale) / 2)


def _exact_positive_at(rng, shape, scale) -> np.ndarray:
    return _rationals(rng, shape, 0, 3) * (sympy.Rational(scale) / 2)


def _exact_unit_at(rng, shape, scale) -> np.ndarray:
    """Entries about `scale` from 0 or (half of them) from 1; plain unit draws for scale >= 1/2."""
    scale = sympy.Rational(scale)
    if scale >= sympy.Rational(1, 2):
        return _rationals(rng, shape, 0, 1, den=16)
    near = np.asarray(_rationals(rng, shape, 0, 2) * (scale / 2), dtype=object)
    flip = rng.random(shape) < 0.5
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        out[idx] = 1 - near[idx] if flip[idx] else near[idx]
    return out


def _exact_simplex_at(rng, shape, scale) -> np.ndarray:
    """Rows with about half their entries `scale` times smaller than the rest (for scale < 1)."""
    w = _rationals(rng, shape, 0, 4)
    scale = sympy.Rational(scale)
    if scale < 1:
        small = rng.random(shape) < 0.5
        for idx in np.ndindex(shape):
            if small[idx]:
                w[idx] = w[idx] * scale
    return _normalize_rows(w)


def _numeric_real_at(rng, shape, scale) -> np.ndarray:
    return scale * rng.standard_normal(shape)


def _numeric_positive_at(rng, shape, scale) -> np.ndarray:
    return scale * np.exp(0.5 * rng.standard_normal(shape))


def _numeric_unit_at(rng, shape, scale) -> np.ndarray:
    if scale >= 0.5:
        return _unit_numeric(rng, shape, "wide")
    near = scale * np.exp(0.5 * rng.standard_normal(shape))
    near = np.minimum(near, 0.5)
    return np.where(rng.random(shape) < 0.5, 1 - near, near)


def _numeric_simplex_at(rng, shape, scale) -> np.ndarray:
    """Softmax rows whose smallest entries are about `scale` (for scale < 1)."""
    if scale >= 1:
        return _simplex_numeric(rng, shape, "wide")
    spread = max(1.0, np.log(1 / scale) / 2)
    z = spread * rng.standard_normal(shape)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _mask_numeric(rng, shape, profile="unit") -> np.ndarray:
    """0/1 entries, each 1 with probability 1/2, and at least one 1 in every last-axis row (a
    softmax of where(mask, S, -inf) then has a finite row)."""
    x = (rng.random(shape) < 0.5).astype(float)
    if len(shape) >= 1:
        keep = rng.integers(shape[-1], size=shape[:-1])
        np.put_along_axis(x, np.expand_dims(keep, -1), 1.0, axis=-1)
    return x


def _exact_mask(rng, shape) -> np.ndarray:
    x = _mask_numeric(rng, shape)
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        out[idx] = sympy.Integer(int(x[idx]))
    return out


def _rows_sum_to_one(x: np.ndarray) -> bool:
    return bool(np.allclose(np.sum(x, axis=-1), 1.0, rtol=0, atol=1e-12))


TYPES: dict[str, VarType] = {
    t.name: t
    for t in (
        VarType(
            "real",
            "any real number",
            0,
            {"real": True},
            lambda rng, s: _rationals(rng, s, -3, 3),
            _real_numeric,
            lambda x: bool(np.all(np.isfinite(x))),
            exact_at=_exact_real_at,
            numeric_at=_numeric_real_at,
        ),
        VarType(
            "positive",
            "a real number > 0",
            0,
            {"positive": True},
            lambda rng, s: _rationals(rng, s, 0, 4),
            _positive_numeric,
            lambda x: bool(np.all(x > 0)),
            exact_at=_exact_positive_at,
            numeric_at=_numeric_positive_at,
        ),
        VarType(
            "unit",
            "a real number in (0, 1)",
            0,
            {"positive": True},
            lambda rng, s: _rationals(rng, s, 0, 1, den=16),
            _unit_numeric,
            lambda x: bool(np.all((x > 0) & (x < 1))),
            exact_at=_exact_unit_at,
            numeric_at=_numeric_unit_at,
        ),
        VarType(
            "simplex",
            "positive entries summing to 1 along the last axis",
            1,
            {"positive": True},
            lambda rng, s: _normalize_rows(_rationals(rng, s, 0, 4)),
            _simplex_numeric,
            lambda x: bool(np.all(x > 0)) and _rows_sum_to_one(x),
            sums_to_one=True,
            exact_at=_exact_simplex_at,
            numeric_at=_numeric_simplex_at,
        ),
        VarType(
            "onehot",
            "one 1 per last-axis row, zeros elsewhere",
            1,
            {"real": True, "nonnegative": True},
            _exact_onehot,
            _onehot_numeric,
            lambda x: bool(np.all((x == 0) | (x == 1))) and _rows_sum_to_one(x),
            sums_to_one=True,
            exact_at=lambda rng, s, scale: _exact_onehot(rng, s),
            numeric_at=lambda rng, s, scale: _onehot_numeric(rng, s, "unit"),
            convex=False,
        ),
        # select area (issue 8): a 0/1 selector such as an attention mask
        VarType(
            "mask",
            "0/1 entries, at least one 1 per last-axis row",
            1,
            {"real": True, "nonnegative": True},
            _exact_mask,
            _mask_numeric,
            lambda x: bool(np.all((x == 0) | (x == 1))),
            exact_at=lambda rng, s, scale: _exact_mask(rng, s),
            numeric_at=lambda rng, s, scale: _mask_numeric(rng, s),
            convex=False,
        ),
    )
}

# ---------------------------------------------------------------- matrix types (linear algebra)
from engine.matrix_types import MATRIX_TYPES  # noqa: E402

TYPES.update({t.name: t for t in MATRIX_TYPES})

# ---------------------------------------------------------------- integer labels (issue 8, gather)
from engine.index_type import INDEX, admits_index, exact_index, numeric_index  # noqa: E402

TYPES[INDEX] = VarType(
    INDEX,
    "integer labels: index[B, n] is B positions in 0..n-1 (the last size is the bound)",
    1,
    {"integer": True, "nonnegative": True},
    exact_index,
    numeric_index,
    admits_index,
    exact_at=lambda rng, s, scale: exact_index(rng, s),
    numeric_at=lambda rng, s, scale: numeric_index(rng, s),
    convex=False,
)
