"""The index type: integer labels, declared `index[..., n]` (entries are positions 0..n-1).

`y: index[B, V]` is B labels of V classes: an integer array of shape (B,) whose entries are valid
positions along an axis of length V (the one-hot `onehot[B, V]` written as its positions). The
last size is the bound, not an axis, so the variable's shape is the declared one without it, and
its samplers (which see the declared shape, bound included) draw integer arrays of the shape
without it. An index is not differentiable: `derive --wrt y` and `grad(f, y)` are refused.
"""

from __future__ import annotations

import numpy as np
import sympy

from engine.expr import Dim, EngineError, Expr, Ref, Shape, Var

INDEX = "index"


class IndexVar(Var):
    """A variable of type index: its shape (the declared one without the last size) and the
    bound n its entries stay below."""

    __slots__ = ("bound",)

    def __init__(self, name: str, shape: Shape, bound: Dim):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "vtype", INDEX)
        object.__setattr__(self, "bound", bound)
        self._init(shape, (name, INDEX, tuple(shape), bound))

    def key(self) -> tuple:
        return (self.name, self.vtype, self.shape, self.bound)

    @property
    def declared(self) -> Shape:
        """The shape as declared: the variable's shape and then the bound (index[B, V])."""
        return (*self.shape, self.bound)


def declared_shape(v: Var) -> Shape:
    """The shape a variable was declared with (an index variable's bound included)."""
    return v.declared if isinstance(v, IndexVar) else v.shape


def index_var(e: Expr) -> IndexVar | None:
    """The index variable `e` is (through named definitions), or None."""
    while isinstance(e, Ref):
        e = e.body
    return e if isinstance(e, IndexVar) else None


def positions(y, bound: int, fname: str) -> np.ndarray:
    """Integer positions from an index value (floats, complex, SymPy or mpmath numbers holding
    integers), checked to lie in 0..bound-1."""
    y = np.asarray(y)

    def one(v) -> int:
        r = float(np.real(complex(v))) if not isinstance(v, float | int) else float(v)
        k = round(r)
        if k != r:
            raise EngineError(f"{fname}(): an index entry is {r}, not an integer")
        return k

    out = np.vectorize(one, otypes=[np.intp])(y) if y.size else y.astype(np.intp)
    out = np.asarray(out, dtype=np.intp).reshape(y.shape)
    if out.size and (out.min() < 0 or out.max() >= bound):
        bad = out[(out < 0) | (out >= bound)].flat[0]
        raise EngineError(f"{fname}(): index {bad} is out of range 0..{bound - 1}")
    return out


# ---------------------------------------------------------------- samplers (declared shape in)


def numeric_index(rng: np.random.Generator, declared: tuple[int, ...], profile=None):
    """Uniform labels in 0..n-1, as floats (every variable's numeric value is a float array)."""
    shape, n = declared[:-1], declared[-1]
    return rng.integers(n, size=shape).astype(float)


def exact_index(rng: np.random.Generator, declared: tuple[int, ...]) -> np.ndarray:
    labels = rng.integers(declared[-1], size=declared[:-1])
    out = np.empty(declared[:-1], dtype=object)
    for idx in np.ndindex(out.shape):
        out[idx] = sympy.Integer(int(labels[idx]))
    return out


def admits_index(x: np.ndarray) -> bool:
    x = np.asarray(x, dtype=float)
    return bool(np.all(np.isfinite(x)) and np.all(x >= 0) and np.all(x == np.round(x)))
