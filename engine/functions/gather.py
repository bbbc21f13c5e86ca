"""Integer labels: take_along_axis (the gather of one entry per row) and one_hot.

The labels are an index variable (`y: index[B, V]`, see engine/index_type.py): B positions in
0..V-1. Two functions read them:

- `take_along_axis(Z, y, axis=-1)`: the entry of Z at position y along `axis`, for every other
  position: for Z of shape (B, V) and y of shape (B,), the vector (Z[i, y[i]])_i, so integer-label
  cross-entropy is `-mean(take_along_axis(log_softmax(Z), y))`. y has Z's shape without `axis`
  and the result has y's shape: NumPy's `np.take_along_axis(Z, y[..., None], axis=-1)[..., 0]`,
  PyTorch's `torch.gather(Z, -1, y.unsqueeze(-1)).squeeze(-1)`.
- `one_hot(y, axis=-1)`: the 0/1 array with a 1 at position y[i] of row i (a new axis of length
  V at `axis`), jax.nn.one_hot / torch.nn.functional.one_hot. It is the VJP of take_along_axis:
  the cotangent g of the gathered entries is scattered back to their positions,
  d/dZ sum(g * take_along_axis(Z, y)) = one_hot(y) * expand_dims(g, -1).

The labels' argument must be an index variable whose bound is the length of Z's axis, so every
position is valid by declaration. Its SymPy forms select with `IndexIs(y, k)` (1 when y = k,
else 0), which evaluates once the labels take their sampled integer values. No derivative is
taken with respect to the labels (grad and derive refuse an index variable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import sympy

from engine.expr import Call, Const, EngineError, Expr, Shape, ShapeError, call, format_shape
from engine.functions.base import (
    PREC_ATOM,
    Function,
    latex_fn,
    need_rank,
    normalize_axis,
    obj,
    params_of,
    register,
)
from engine.index_type import index_var, positions


class IndexIs(sympy.Function):
    """[y = k]: 1 when the label y is the position k, else 0; no derivative (a selector)."""

    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, y, k):
        if y.is_Integer and k.is_Integer:
            return sympy.Integer(int(y == k))
        return None

    def fdiff(self, argindex=1):
        return sympy.Integer(0)

    @staticmethod
    def mp_value(y, k):
        return mpmath.mpf(int(int(y) == int(k)))

    @staticmethod
    def mp_partials(v, y, k):
        return [0, 0]


@dataclass(frozen=True)
class LabelFunction(Function):
    """A function one of whose arguments is an index variable (the labels): `build` checks it
    is one, and `bind` adds what the labels' declaration fixes (one_hot's number of classes)."""

    labels: int = 1  # which argument holds the labels
    bind: Any = None  # (labels IndexVar, args, params) -> params

    def build(self, args: tuple[Expr, ...], params: dict[str, Any]) -> Call:
        if len(args) > self.labels:
            y = index_var(args[self.labels])
            if y is None:
                raise EngineError(
                    f"{self.name}(): the labels must be an index variable (declared "
                    f"'index[..., n]'), got {args[self.labels]}"
                )
            if self.bind is not None:
                params = self.bind(y, args, params)
        return super().build(args, params)


# ---------------------------------------------------------------- take_along_axis


def _one_axis(fname: str, axis: Any) -> None:
    """Labels index along one axis: a tuple of axes is a one-line error, not a traceback."""
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise ShapeError(f"{fname}(): axis must be one integer, got {axis!r}")


def _take_shape(shapes: tuple[Shape, ...], p: dict[str, Any]) -> Shape:
    z, y = shapes
    need_rank("take_along_axis", z, tuple(range(1, 9)), "an array (not a scalar)")
    _one_axis("take_along_axis", p["axis"])
    a = normalize_axis(p["axis"], len(z), "take_along_axis")
    rest = z[:a] + z[a + 1 :]
    if y != rest:
        raise ShapeError(
            f"take_along_axis(): the labels have shape {format_shape(y)}, but the array "
            f"{format_shape(z)} without axis {p['axis']} is {format_shape(rest)}"
        )
    return y


def _take_bind(y, args, params):
    z = args[0]
    a = params.get("axis", -1)
    _one_axis("take_along_axis", a)
    if z.shape and -len(z.shape) <= a < len(z.shape) and z.shape[a] != y.bound:
        raise ShapeError(
            f"take_along_axis(): the labels {y.name} are positions in 0..{y.bound}-1, "
            f"but axis {a} of the array has length {z.shape[a]}"
        )
    return params


def _np_take(z, y, axis=-1):
    z = np.asarray(z)
    a = axis % z.ndim
    pos = positions(y, z.shape[a], "take_along_axis")
    return np.take_along_axis(z, np.expand_dims(pos, a), axis=a).squeeze(a)


def _sym_take(z, y, axis=-1):
    z, y = obj(z), obj(y)
    moved = np.moveaxis(z, axis, -1)
    out = np.empty(y.shape, dtype=object)
    for idx in np.ndindex(y.shape):
        row, label = moved[idx].tolist(), y[idx]
        if label.is_Integer:  # a concrete label: the entry itself
            out[idx] = row[int(label)]
        else:
            out[idx] = sympy.Add(*[IndexIs(label, sympy.Integer(k)) * v for k, v in enumerate(row)])
    return obj(out)


def _take_vjp(n: Call, g: Expr, i: int) -> Expr:
    """Z: the cotangent scattered to the gathered positions, one_hot(y) * expand_dims(g, axis);
    the labels: 0 (they are not differentiable)."""
    z, y = n.args
    axis = params_of(n)["axis"]
    if i == 1:
        return Const(0) if not y.shape else Const(0) * call("ones", dims=tuple(y.shape))
    last = axis % len(z.shape) == len(z.shape) - 1
    hot = call("one_hot", y) if last else call("one_hot", y, axis=axis)
    return hot * (call("expand_dims", g, axis=axis) if g.shape else g)


def _label_latex(y: Expr, s, letters: str) -> str:
    base = s(y, PREC_ATOM)
    if "_" in base or "^" in base:
        base = "{" + base + "}"
    return f"{base}_{{{letters}}}" if letters else base


LETTERS = "ijkl"


def _take_latex(n: Call, s) -> str:
    """Z_{i, y_i}: the entry of each row at its label (y_{ij} in the axis slot for rank 3)."""
    from engine.expr import Ref, Var

    z, y = n.args
    rank = len(z.shape)
    a = params_of(n)["axis"] % rank
    others = LETTERS[: rank - 1]
    parts = list(others)
    parts.insert(a, _label_latex(y, s, "".join(others)))
    base = s(z, PREC_ATOM)
    if not (isinstance(z, Var | Ref) and "_" not in base and "^" not in base):
        base = rf"\left({s(z, 0)}\right)"
    return f"{base}_{{{', '.join(parts)}}}"


register(
    LabelFunction(
        name="take_along_axis",
        nargs=2,
        shape=_take_shape,
        numpy=_np_take,
        sympy=_sym_take,
        latex=_take_latex,
        vjp=_take_vjp,
        params={"axis": -1},
        doc="take_along_axis(Z, y): Z's entry at label y along axis (-1) for each row",
        bind=_take_bind,
    )
)

# ---------------------------------------------------------------- one_hot


def _one_hot_shape(shapes: tuple[Shape, ...], p: dict[str, Any]) -> Shape:
    (y,) = shapes
    _one_axis("one_hot", p["axis"])
    if len(p["dims"]) != 1:
        raise EngineError("one_hot(): the labels must be an index variable")
    a = normalize_axis(p["axis"], len(y) + 1, "one_hot")
    return (*y[:a], p["dims"][0], *y[a:])


def _one_hot_bind(y, args, params):
    return {**params, "dims": (y.bound,)}


def _np_one_hot(y, axis=-1, dims=()):
    (n,) = dims
    pos = positions(y, n, "one_hot")
    out = (pos[..., None] == np.arange(n)).astype(float)
    return np.moveaxis(out, -1, axis)


def _sym_one_hot(y, axis=-1, dims=()):
    (n,) = dims
    y = obj(y)
    out = np.empty((*y.shape, n), dtype=object)
    for idx in np.ndindex(y.shape):
        for k in range(n):
            out[idx + (k,)] = IndexIs(y[idx], sympy.Integer(k))
    return obj(np.moveaxis(out, -1, axis))


def _one_hot_text(n: Call, sub) -> str:
    axis = params_of(n)["axis"]
    extra = "" if axis == -1 else f", axis={axis}"
    return f"one_hot({sub(n.args[0], 0)}{extra})"


def _one_hot_latex(n: Call, s) -> str:
    rank = len(n.shape)
    a = params_of(n)["axis"] % rank
    note = "" if a == rank - 1 else rf"_{{\text{{axis}}\,{a}}}"
    return rf"{latex_fn('onehot')}{note}\left({s(n.args[0], 0)}\right)"


register(
    LabelFunction(
        name="one_hot",
        nargs=1,
        shape=_one_hot_shape,
        numpy=_np_one_hot,
        sympy=_sym_one_hot,
        latex=_one_hot_latex,
        params={"axis": -1, "dims": ()},
        doc="one_hot(y): 1 at each label's position along a new last axis (axis=), else 0",
        text=_one_hot_text,
        labels=0,
        bind=_one_hot_bind,
        nondifferentiable="its value depends only on integer labels",
    )
)
