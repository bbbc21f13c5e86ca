"""Linear-algebra builders: diag, outer, eye, ones, trace, expand_dims."""

from __future__ import annotations

import numpy as np
import sympy

from engine.expr import Call, Expr, Shape, ShapeError, call, format_shape
from engine.functions.base import (
    PREC_MUL,
    PREC_POSTFIX,
    Function,
    latex_fn,
    need_rank,
    normalize_axis,
    obj,
    register,
)
from engine.printing.size_names import dim_latex


def _diag_shape(shapes, p) -> Shape:
    (s,) = shapes
    if len(s) == 1:
        return (s[0], s[0])
    if len(s) == 2 and s[0] == s[1]:
        return (s[0],)
    raise ShapeError(f"diag() needs a vector (or a square matrix), got shape {format_shape(s)}")


def _sym_diag(x: np.ndarray) -> np.ndarray:
    if x.ndim == 1:
        out = np.full((x.shape[0], x.shape[0]), sympy.Integer(0), dtype=object)
        for i, v in enumerate(x):
            out[i, i] = v
        return out
    return obj(np.array([x[i, i] for i in range(x.shape[0])], dtype=object))


register(
    Function(
        name="diag",
        nargs=1,
        shape=_diag_shape,
        numpy=lambda x: np.diag(x) if x.ndim == 1 else np.diagonal(x).copy(),
        sympy=_sym_diag,
        latex=lambda n, s: rf"{latex_fn('diag')}\left({s(n.args[0], 0)}\right)",
        vjp=lambda n, g, i: call("diag", g),
        doc="diagonal matrix from a vector (or the diagonal of a square matrix)",
    )
)


def _outer_shape(shapes, p) -> Shape:
    a, b = shapes
    need_rank("outer", a, (1,), "two vectors")
    need_rank("outer", b, (1,), "two vectors")
    return (a[0], b[0])


register(
    Function(
        name="outer",
        nargs=2,
        shape=_outer_shape,
        numpy=np.multiply.outer,
        sympy=lambda a, b: obj(np.multiply.outer(a, b)),
        latex=lambda n, s: f"{s(n.args[0], PREC_MUL)} {s(n.args[1], PREC_POSTFIX + 1)}^\\top",
        vjp=lambda n, g, i: g @ n.args[1] if i == 0 else g.T @ n.args[0],
        precedence=PREC_MUL,
        doc="outer product u v^T",
    )
)


def _trace_shape(shapes, p) -> Shape:
    (s,) = shapes
    if len(s) != 2 or s[0] != s[1]:
        raise ShapeError(f"trace() needs a square matrix, got shape {format_shape(s)}")
    return ()


register(
    Function(
        name="trace",
        nargs=1,
        shape=_trace_shape,
        numpy=lambda x: np.asarray(np.trace(x)),
        sympy=lambda x: obj(sympy.Add(*[x[i, i] for i in range(x.shape[0])])),
        latex=lambda n, s: rf"{latex_fn('tr')}\left({s(n.args[0], 0)}\right)",
        vjp=lambda n, g, i: g * call("eye", dims=(n.args[0].shape[0],)),
        doc="trace of a square matrix",
    )
)


def _dims_latex(dims) -> str:
    return r" \times ".join(dim_latex(d) for d in dims)


# eye and ones take their sizes as the `dims` parameter; backends resolve it to integers.
register(
    Function(
        name="eye",
        nargs=0,
        shape=lambda s, p: _check_dims("eye", p["dims"], 1) * 2,
        numpy=lambda dims: np.eye(dims[0]),
        sympy=lambda dims: obj(np.array(sympy.eye(dims[0]).tolist(), dtype=object)),
        latex=lambda n, s: rf"I_{{{_dims_latex(dict(n.params)['dims'])}}}",
        params={"dims": ()},
        doc="identity matrix eye(n)",
    )
)
register(
    Function(
        name="ones",
        nargs=0,
        shape=lambda s, p: _check_dims("ones", p["dims"], MAX_ONES_RANK),
        numpy=lambda dims: np.ones(dims),
        sympy=lambda dims: np.full(dims, sympy.Integer(1), dtype=object),
        latex=lambda n, s: rf"\mathbf{{1}}_{{{_dims_latex(dict(n.params)['dims'])}}}",
        params={"dims": ()},
        doc="array of ones: ones(n), ones(n, m), ... up to rank 8",
    )
)


MAX_ONES_RANK = 8  # a broadcast cotangent of a rank-4 variable against another needs rank 4+


def _check_dims(fname: str, dims: tuple, most: int) -> Shape:
    if not 1 <= len(dims) <= most:
        raise ShapeError(f"{fname}() takes 1 to {most} sizes, got {len(dims)}")
    return tuple(sympy.Integer(d) if isinstance(d, int) else d for d in dims)


def expanded_axes(axis, rank: int) -> tuple[int, ...]:
    """The positions of the new axes in the result (np.expand_dims with an int or a tuple)."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = tuple(sorted(normalize_axis(a, rank + len(axes), "expand_dims") for a in axes))
    if len(set(out)) != len(out):
        raise ShapeError(f"expand_dims(): axis {axis} repeats an axis")
    return out


def _expand_shape(shapes, p) -> Shape:
    (s,) = shapes
    new = expanded_axes(p["axis"], len(s))
    rest = iter(s)
    return tuple(sympy.Integer(1) if k in new else next(rest) for k in range(len(s) + len(new)))


def _expand_latex(n: Call, s) -> str:
    return s(n.args[0], 0)


def _expand_text(n: Call, sub) -> str:
    """expand_dims(x, axis=0): the axis always printed (NumPy's expand_dims requires it)."""
    return f"expand_dims({sub(n.args[0], 0)}, axis={dict(n.params).get('axis', 0)})"


def _expand_vjp(n: Call, g: Expr, i: int) -> Expr:
    return call("sum", g, axis=dict(n.params).get("axis", 0))


register(
    Function(
        name="expand_dims",
        nargs=1,
        shape=_expand_shape,
        numpy=lambda x, axis=0: np.expand_dims(x, axis),
        sympy=lambda x, axis=0: obj(np.expand_dims(x, axis)),
        latex=_expand_latex,
        text=_expand_text,
        vjp=_expand_vjp,
        params={"axis": 0},
        doc="insert an axis of length 1 (NumPy expand_dims; a tuple inserts several)",
    )
)
