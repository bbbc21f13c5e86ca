"""Square-matrix variable types: symmetric, spd (well-conditioned) and orthogonal, exact and float.

Each is drawn as a whole matrix, never entry by entry: the exact route gets rational matrices
that are exactly of the kind (S = (R + R^T) / 2, B B^T + I, the Cayley transform of a rational
skew-symmetric K times a diagonal of signs), the numeric one float matrices of it.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy

from engine.types import VarType, _rationals


def _eye(n: int) -> np.ndarray:
    return np.array(sympy.eye(n).tolist(), dtype=object)


# ---------------------------------------------------------------- symmetric


def _exact_symmetric(rng, shape) -> np.ndarray:
    r = _rationals(rng, shape, -3, 3)
    return (r + r.T) / 2


def _numeric_symmetric(rng, shape, profile) -> np.ndarray:
    x = rng.standard_normal(shape) * (4.0 if profile == "wide" else 1.0)
    s = (x + x.T) / np.sqrt(2)
    if profile == "peaked":  # one large eigenvalue: a dominant direction
        v = rng.standard_normal(shape[0])
        s = s + 12.0 * np.outer(v, v) / (v @ v)
    return (s + s.T) / 2


def _symmetric_at(rng, shape, scale) -> np.ndarray:
    return _exact_symmetric(rng, shape) * (sympy.Rational(scale) / 2)


def _admits_symmetric(x: np.ndarray) -> bool:
    x = np.asarray(x, dtype=float)
    return bool(
        x.ndim == 2
        and x.shape[0] == x.shape[1]
        and np.all(np.isfinite(x))
        and np.allclose(x, x.T, rtol=0, atol=1e-12 * max(1.0, float(np.max(np.abs(x))))),
    )


# ---------------------------------------------------------------- spd


def _exact_spd(rng, shape) -> np.ndarray:
    """B B^T + I with B rational in (-1, 1): eigenvalues in [1, 1 + n], so well-conditioned."""
    b = _rationals(rng, shape, -1, 1, den=4)
    return b @ b.T + _eye(shape[0])


def _numeric_spd(rng, shape, profile) -> np.ndarray:
    """Q diag(lambda) Q^T with eigenvalues in [1/2, 2] (unit), [1/10, 10] (wide) or one 50x
    larger than the rest (peaked): condition numbers at most 100."""
    n = shape[0]
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    if profile == "wide":
        lam = np.exp(rng.uniform(np.log(0.1), np.log(10.0), n))
    elif profile == "peaked":
        lam = rng.uniform(0.5, 2.0, n)
        lam[0] = 50.0
    else:
        lam = rng.uniform(0.5, 2.0, n)
    a = (q * lam) @ q.T
    return (a + a.T) / 2


def _spd_at(rng, shape, scale) -> np.ndarray:
    return _exact_spd(rng, shape) * sympy.Rational(scale)


def _admits_spd(x: np.ndarray) -> bool:
    if not _admits_symmetric(x):
        return False
    return bool(np.min(np.linalg.eigvalsh(np.asarray(x, dtype=float))) > 0)


# ---------------------------------------------------------------- orthogonal


def _cayley(k: np.ndarray) -> np.ndarray:
    """(I - K)(I + K)^{-1}: orthogonal (det +1) for every skew-symmetric K, exact in rationals."""
    n = k.shape[0]
    i = sympy.eye(n)
    km = sympy.Matrix(k.tolist())
    return np.array(((i - km) * (i + km).inv()).tolist(), dtype=object)


def _exact_orthogonal(rng, shape) -> np.ndarray:
    n = shape[0]
    r = _rationals(rng, shape, -2, 2, den=4)
    q = _cayley((r - r.T) / 2)
    signs = rng.choice([-1, 1], size=n)  # det -1 too (Cayley alone gives only rotations)
    return q * np.array([sympy.Integer(int(s)) for s in signs], dtype=object)


def _numeric_orthogonal(rng, shape, profile) -> np.ndarray:
    """Haar-distributed: Q of the QR factorization of a Gaussian matrix, signs fixed by R."""
    q, r = np.linalg.qr(rng.standard_normal(shape))
    return q * np.sign(np.diag(r))


def _rationalize_orthogonal(x: np.ndarray) -> np.ndarray:
    """An exactly orthogonal rational matrix near the float one: the Cayley transform of the
    rationalized K = (I - Q D)(I + Q D)^{-1}, times D, for the diagonal of signs D that keeps
    I + Q D furthest from singular (one exists for every orthogonal Q; a reflection, or a
    diagonal of signs, has an eigenvalue -1 and no Cayley transform of its own)."""
    q = np.asarray(x, dtype=float)
    n = q.shape[0]
    rng = np.random.default_rng(0)
    candidates = (
        [np.array(s, dtype=float) for s in itertools.product((1.0, -1.0), repeat=n)]
        if n <= 8
        else [rng.choice([-1.0, 1.0], size=n) for _ in range(256)]
    )
    d = max(candidates, key=lambda s: np.linalg.svd(np.eye(n) + q * s, compute_uv=False)[-1])
    qd = q * d
    k = np.linalg.solve((np.eye(n) + qd).T, (np.eye(n) - qd).T).T
    kr = np.empty((n, n), dtype=object)
    for i in range(n):
        kr[i, i] = sympy.Integer(0)
        for j in range(i + 1, n):
            kr[i, j] = sympy.Rational(float((k[i, j] - k[j, i]) / 2))
            kr[j, i] = -kr[i, j]
    return _cayley(kr) * np.array([sympy.Integer(int(s)) for s in d], dtype=object)


def _admits_orthogonal(x: np.ndarray) -> bool:
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[0] != x.shape[1] or not np.all(np.isfinite(x)):
        return False
    return bool(np.allclose(x @ x.T, np.eye(x.shape[0]), rtol=0, atol=1e-10))


MATRIX_TYPES = (
    VarType(
        "symmetric",
        "a real symmetric matrix, S = S^T",
        2,
        {"real": True},
        _exact_symmetric,
        _numeric_symmetric,
        _admits_symmetric,
        exact_at=_symmetric_at,
        numeric_at=lambda rng, s, scale: scale * _numeric_symmetric(rng, s, "unit"),
        square=True,
    ),
    VarType(
        "spd",
        "a symmetric positive definite matrix (sampled well-conditioned)",
        2,
        {"real": True},
        _exact_spd,
        _numeric_spd,
        _admits_spd,
        exact_at=_spd_at,
        numeric_at=lambda rng, s, scale: scale * _numeric_spd(rng, s, "unit"),
        square=True,
    ),
    VarType(
        "orthogonal",
        "an orthogonal matrix, Q^T Q = I (det +1 or -1)",
        2,
        {"real": True},
        _exact_orthogonal,
        _numeric_orthogonal,
        _admits_orthogonal,
        exact_at=lambda rng, s, scale: _exact_orthogonal(rng, s),
        numeric_at=lambda rng, s, scale: _numeric_orthogonal(rng, s, "unit"),
        square=True,
        convex=False,
        rationalize=_rationalize_orthogonal,
    ),
)
