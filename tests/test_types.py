"""Tests of the variable types: every sampler, exact and numeric, respects its constraint."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from engine.backends.sympy_backend import entry_symbol
from engine.types import PEAK, PROFILES, TYPES

SHAPES = [(), (1,), (5,), (3, 4), (2, 3, 2)]


def shapes_for(tname: str):
    if TYPES[tname].square:  # symmetric, spd, orthogonal: square matrices only
        return [(1, 1), (2, 2), (3, 3), (5, 5)]
    return [s for s in SHAPES if len(s) >= TYPES[tname].min_rank]


def drawn_shape(tname: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a sampler returns: the declared one, but an index has no axis for its bound."""
    return shape[:-1] if tname == "index" else shape


def constraint_holds_exactly(tname: str, x: np.ndarray) -> bool:
    """The constraint of each type, checked by hand in exact arithmetic."""
    flat = list(x.flat)
    if tname == "real":
        return all(v.is_real for v in flat)
    if tname == "positive":
        return all(v > 0 for v in flat)
    if tname == "unit":
        return all(0 < v < 1 for v in flat)
    if tname == "index":  # integer labels (issue 8): x has the declared shape without the bound
        return all(v.is_Integer and v >= 0 for v in flat)
    rows = [list(x[idx]) for idx in np.ndindex(x.shape[:-1])]
    if tname == "simplex":
        return all(v > 0 for v in flat) and all(sum(r) == 1 for r in rows)
    if tname == "onehot":
        return all(sorted(r) == [0] * (len(r) - 1) + [1] for r in rows)
    if tname == "mask":  # 0/1 entries, at least one 1 per last-axis row (issue 8)
        return all(v in (0, 1) for v in flat) and all(sum(r) >= 1 for r in rows)
    m = sympy.Matrix(x.tolist())
    if tname == "symmetric":
        return m == m.T
    if tname == "spd":  # Sylvester's criterion: every leading minor positive
        return m == m.T and all(m[:k, :k].det() > 0 for k in range(1, m.rows + 1))
    if tname == "orthogonal":
        return m.T * m == sympy.eye(m.rows)
    raise AssertionError(tname)


def test_the_nine_types_exist():
    assert set(TYPES) == {"real", "positive", "unit", "simplex", "onehot", "mask", "index"} | {
        "symmetric",
        "spd",
        "orthogonal",
    }


@pytest.mark.parametrize("tname", sorted(TYPES))
@pytest.mark.parametrize("seed", range(5))
def test_exact_samplers_are_exact_and_respect_the_constraint(tname, seed):
    rng = np.random.default_rng(seed)
    for shape in shapes_for(tname):
        x = TYPES[tname].exact(rng, shape)
        assert x.shape == drawn_shape(tname, shape) and x.dtype == object
        assert all(isinstance(v, sympy.Rational) for v in x.flat)  # Integer is a Rational
        assert constraint_holds_exactly(tname, x)
        assert TYPES[tname].admits(np.asarray(x, dtype=float))


@pytest.mark.parametrize("tname", sorted(TYPES))
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("seed", range(3))
def test_numeric_samplers_respect_the_constraint(tname, profile, seed):
    rng = np.random.default_rng(seed)
    extra = [(64, 64), (16, 16)] if TYPES[tname].square else [(64,), (16, 24)]
    for shape in [*shapes_for(tname), *extra]:
        x = TYPES[tname].numeric(rng, shape, profile)
        assert np.shape(x) == drawn_shape(tname, shape) and np.asarray(x).dtype == np.float64
        assert np.all(np.isfinite(x))
        assert TYPES[tname].admits(x)
        if tname == "positive":
            assert np.all(x > 0)
        if tname == "unit":
            assert np.all((x > 0) & (x < 1))
        if tname == "simplex":
            assert np.all(x > 0)
            np.testing.assert_allclose(np.sum(x, axis=-1), 1.0, rtol=0, atol=1e-12)
        if tname == "onehot":
            assert np.all((x == 0) | (x == 1)) and np.all(np.sum(x, axis=-1) == 1)
        if tname == "index":  # positions below the bound, the declared shape's last size
            assert np.all((x >= 0) & (x < shape[-1]) & (x == np.round(x)))
        if tname in ("symmetric", "spd"):
            np.testing.assert_array_equal(x, x.T)
        if tname == "spd":  # well-conditioned, as documented
            eig = np.linalg.eigvalsh(x)
            assert eig.min() > 0 and eig.max() / eig.min() <= 101
        if tname == "orthogonal":
            np.testing.assert_allclose(x @ x.T, np.eye(shape[0]), atol=1e-12)


def test_exact_real_samples_are_nonzero_small_rationals():
    x = TYPES["real"].exact(np.random.default_rng(0), (200,))
    assert all(v != 0 and -3 < v < 3 for v in x.flat)
    assert len(set(x.flat)) > 50  # not a degenerate point
    assert any(not v.is_Integer for v in x.flat)


def test_numeric_profiles_differ_as_documented():
    rng = np.random.default_rng(0)
    unit, wide = (
        TYPES["real"].numeric(rng, (4000,), "unit"),
        TYPES["real"].numeric(rng, (4000,), "wide"),
    )
    assert 0.9 < np.std(unit) < 1.1 and 3.6 < np.std(wide) < 4.4
    peaked = TYPES["real"].numeric(rng, (5, 7), "peaked")
    assert np.all(np.sum(peaked == PEAK, axis=-1) >= 1)  # one logit per row set to PEAK
    p = TYPES["simplex"].numeric(rng, (5, 7), "peaked")
    assert np.all(np.max(p, axis=-1) > 0.99)  # a peaked distribution


def test_samplers_are_deterministic_given_the_seed():
    for tname, vtype in TYPES.items():
        shape = (3, 3) if vtype.square else (3, 4)
        a = vtype.exact(np.random.default_rng(7), shape)
        b = vtype.exact(np.random.default_rng(7), shape)
        assert (a == b).all(), tname
        for profile in PROFILES:
            c = vtype.numeric(np.random.default_rng(7), shape, profile)
            d = vtype.numeric(np.random.default_rng(7), shape, profile)
            np.testing.assert_array_equal(c, d)


@pytest.mark.parametrize(
    "tname, good, bad",
    [
        ("real", [-1.0, 0.0, 2.0], [1.0, np.inf]),
        ("positive", [0.1, 5.0], [0.1, 0.0]),
        ("unit", [0.5, 0.01], [0.5, 1.0]),
        ("simplex", [0.25, 0.75], [0.5, 0.6]),
        ("simplex", [[0.5, 0.5], [0.1, 0.9]], [[1.2, -0.2], [0.1, 0.9]]),
        ("onehot", [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]),
        ("onehot", [[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [0.0, 1.0]]),
        # square-matrix types (matrix_types.py)
        ("symmetric", [[1.0, -2.0], [-2.0, 0.0]], [[1.0, -2.0], [2.0, 0.0]]),
        ("spd", [[2.0, 1.0], [1.0, 2.0]], [[1.0, 2.0], [2.0, 1.0]]),  # eigenvalues 3, -1
        ("orthogonal", [[0.6, -0.8], [0.8, 0.6]], [[0.6, 0.8], [0.8, 0.6]]),
        ("index", [0.0, 3.0, 1.0], [0.0, 1.5]),  # integer labels (issue 8)
        ("index", [[2.0], [0.0]], [[-1.0], [0.0]]),
    ],
)
def test_admits_accepts_and_rejects_hand_examples(tname, good, bad):
    assert TYPES[tname].admits(np.array(good))
    assert not TYPES[tname].admits(np.array(bad))


def test_entry_symbols_carry_the_type_assumptions():
    assert entry_symbol("x", (0,), "real").is_real
    assert entry_symbol("x", (0,), "real").is_positive is None
    for tname in ("positive", "unit", "simplex"):
        assert entry_symbol("p", (1, 2), tname).is_positive
    assert entry_symbol("t", (0,), "onehot").is_nonnegative
    assert str(entry_symbol("Q", (0, 2), "real")) == "Q[0,2]"
    assert str(entry_symbol("s", (), "real")) == "s"
