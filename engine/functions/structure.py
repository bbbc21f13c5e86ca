"""Structure: static slicing and integer indexing, reshape, concat and stack (NumPy semantics).

Index bounds are integers or size expressions (`X[:, dh:2*dh]`, `x[-1]`), stored in the
`dims` parameter so that every backend resolves them at the concrete sizes like any other size
(negative bounds count from the end, as in NumPy). A bound outside its axis at the sizes checked
is an error, never NumPy's silent clipping. Any rank: nothing here is specific to matrices.
"""

from __future__ import annotations

import math

import numpy as np
import sympy

from engine.expr import Call, Const, EngineError, Expr, Shape, ShapeError, call, format_shape
from engine.functions.base import (
    PREC_ATOM,
    VARIADIC,
    Function,
    latex_fn,
    normalize_axis,
    obj,
    params_of,
    register,
)
from engine.printing.size_names import dim_latex, dim_name

# The kinds of index items: a slice start:stop (two bounds), a slice start: to the end of the
# axis (one), an integer position (one), and the whole axis `:` (none). The length of the axis is
# never stored as a bound: it is not a size the index uses (an export need not read it).
SLICE, TO_END, INDEX, ALL = "s", ">", "i", ":"
WIDTH = {SLICE: 2, TO_END: 1, INDEX: 1, ALL: 0}
Item = tuple  # ("s", start | None, stop | None) or ("i", position)
MAX_RESHAPE_RANK = 8


# ---------------------------------------------------------------- indexing


def _sym(b) -> sympy.Expr:
    """A bound as a SymPy number (bounds are built from ints and size expressions, never text)."""
    return sympy.Integer(b) if isinstance(b, int) else b


def _from_start(b: sympy.Expr, length: sympy.Expr) -> tuple[sympy.Expr, bool]:
    """A bound counted from the start, and whether it was written from the end: a bound that
    is negative for every choice of sizes (-1, -dh) counts from the end, as in NumPy; any
    other (n - 2, (h - 1)*dh) counts from the start and must be >= 0 at the sizes checked."""
    if b.is_negative:
        return sympy.expand(length + b), True
    return b, False


def index(x: Expr, items: list[Item]) -> Expr:
    """x[items]: slices keep an axis, integers remove it; missing trailing items are `:`."""
    rank = len(x.shape)
    if len(items) > rank:
        raise ShapeError(
            f"too many indices ({len(items)}) for an array of shape {format_shape(x.shape)}"
        )
    kinds: list[str] = []
    bounds: list[sympy.Expr] = []
    ends: list[bool] = []
    for item, length in zip(items, x.shape, strict=False):
        if item[0] == INDEX:
            written = _sym(item[1])
            i, end = _from_start(written, length)
            if i.is_negative or (length - i - 1).is_negative:
                raise ShapeError(f"index {written} is out of range for an axis of length {length}")
            kinds.append(INDEX)
            bounds.append(i)
            ends.append(end)
            continue
        lo = sympy.Integer(0) if item[1] is None else _sym(item[1])
        hi = length if item[2] is None else _sym(item[2])
        (start, e1), (stop, e2) = _from_start(lo, length), _from_start(hi, length)
        if start.is_negative or (length - stop).is_negative:
            raise ShapeError(
                f"slice {slice_text(lo, hi, length)} is out of range for an axis of length {length}"
            )
        if sympy.expand(stop - start).is_positive is False:
            raise ShapeError(f"slice {slice_text(lo, hi, length)} is empty")
        if _full(start, stop, length):
            kinds.append(ALL)
        elif stop == length:
            kinds.append(TO_END)
            bounds.append(start)
            ends.append(e1)
        else:
            kinds.append(SLICE)
            bounds += [start, stop]
            ends += [e1, e2]
    while kinds and kinds[-1] == ALL:  # trailing whole axes say nothing
        kinds.pop()
    if not kinds:
        return x
    extra = {"ends": tuple(ends)} if any(ends) else {}
    return call("getitem", x, kinds=tuple(kinds), dims=tuple(bounds), **extra)


def _full(start: sympy.Expr, stop: sympy.Expr, length: sympy.Expr) -> bool:
    return start == 0 and stop == length


def items_of(node: Call, written: bool = False) -> list[tuple[str, tuple[sympy.Expr, ...]]]:
    """(kind, bounds) per leading axis of a getitem call, every bound counted from the start
    (`written=True`: a bound written from the end, such as -1, as written); `:` is (0, length)."""
    p = params_of(node)
    ends = p["ends"] or (False,) * len(p["dims"])
    out, k = [], 0
    for axis, kind in enumerate(p["kinds"]):
        length = node.args[0].shape[axis]
        if kind == ALL:
            out.append((SLICE, (sympy.Integer(0), length)))
            continue
        bounds = [] if kind != TO_END else [length]
        for b, end in zip(p["dims"][k : k + WIDTH[kind]], ends[k : k + WIDTH[kind]], strict=True):
            b = _sym(b)
            bounds.insert(
                len(bounds) - (kind == TO_END), sympy.expand(b - length) if written and end else b
            )
        out.append((SLICE if kind == TO_END else kind, tuple(bounds)))
        k += WIDTH[kind]
    return out


def _getitem_shape(shapes: tuple[Shape, ...], p) -> Shape:
    (s,) = shapes
    kinds, dims = p["kinds"], tuple(_sym(d) for d in p["dims"])
    if len(kinds) > len(s):
        raise ShapeError(f"too many indices ({len(kinds)}) for an array of shape {format_shape(s)}")
    if sum(WIDTH[kind] for kind in kinds) != len(dims) or len(p["ends"]) not in (0, len(dims)):
        raise ShapeError("getitem(): the bounds do not match the index kinds")
    out: list[sympy.Expr] = []
    k = 0
    for axis, kind in enumerate(kinds):
        length = s[axis]
        if kind == ALL:
            out.append(length)
            continue
        if kind == INDEX:
            i = dims[k]
            if i.is_negative or (length - i - 1).is_negative:
                raise ShapeError(f"index {i} is out of range for an axis of length {length}")
            k += 1
            continue
        start, stop = dims[k], (dims[k + 1] if kind == SLICE else length)
        k += WIDTH[kind]
        if start.is_negative or (length - stop).is_negative:
            raise ShapeError(
                f"slice {slice_text(start, stop, length)} is out of range for an axis of length "
                f"{length}"
            )
        width = sympy.expand(stop - start)
        if width.is_positive is False:
            raise ShapeError(f"slice {slice_text(start, stop, length)} is empty")
        out.append(width)
    return tuple(out) + tuple(s[len(kinds) :])


def concrete_index(kinds: tuple, bounds: tuple, shape: tuple[int, ...]) -> tuple:
    """The NumPy index at concrete sizes; a bound outside its axis is an error, not a clip."""
    out: list = []
    k = 0
    for axis, kind in enumerate(kinds):
        length = shape[axis]
        if kind == ALL:
            out.append(slice(None))
            continue
        if kind == INDEX:
            i = int(bounds[k])
            k += 1
            if not 0 <= i < length:
                raise EngineError(
                    f"index {i} is out of range for an axis of length {length} "
                    "(at the sizes checked)"
                )
            out.append(i)
            continue
        a, b = int(bounds[k]), (int(bounds[k + 1]) if kind == SLICE else length)
        k += WIDTH[kind]
        if not 0 <= a < b <= length:
            raise EngineError(
                f"slice {a}:{b} is out of range or empty for an axis of length {length} "
                "(at the sizes checked)"
            )
        out.append(slice(a, b))
    return tuple(out)


def _np_getitem(x, kinds=(), dims=(), ends=()):
    return np.asarray(x[concrete_index(kinds, dims, np.shape(x))])


def _sym_getitem(x, kinds=(), dims=(), ends=()):
    return obj(obj(x)[concrete_index(kinds, dims, np.shape(x))])


def zeros(shape: Shape) -> Expr:
    """The zero array of a shape, written 0 * ones(...) as derive writes zeros."""
    return Const(0) * call("ones", dims=tuple(shape))


def pad_axis(g: Expr, axis: int, before: sympy.Expr, after: sympy.Expr) -> Expr:
    """g with `before` zero slices ahead of it and `after` behind it along `axis` (a concat)."""
    parts: list[Expr] = []
    for width in (before, None, after):
        if width is None:
            parts.append(g)
        elif width != 0:
            parts.append(zeros(g.shape[:axis] + (width,) + g.shape[axis + 1 :]))
    return parts[0] if len(parts) == 1 else call("concat", *parts, axis=axis)


def _getitem_vjp(n: Call, g: Expr, i: int) -> Expr:
    """x[idx] -> the cotangent scattered back: zero-padded along every sliced axis, with the
    removed axis of an integer index restored (expand_dims) and padded around position i."""
    x = n.args[0]
    items = items_of(n)
    removed_before = [sum(1 for kk, _ in items[:j] if kk == INDEX) for j in range(len(items))]
    for j in reversed(range(len(items))):
        kind, b = items[j]
        pos = j - removed_before[j]  # the axis of g that item j maps to
        length = x.shape[j]
        if kind == INDEX:
            g = call("expand_dims", g, axis=pos)
            g = pad_axis(g, pos, b[0], sympy.expand(length - b[0] - 1))
        else:
            g = pad_axis(g, pos, b[0], sympy.expand(length - b[1]))
    return g


def _bound_text(b: sympy.Expr) -> str:
    return dim_name(b) or str(b).replace(" ", "")  # `d` for h*dh under a relation d = h * dh


def slice_text(start: sympy.Expr, stop: sympy.Expr, length: sympy.Expr) -> str:
    left = "" if start == 0 else _bound_text(start)
    right = "" if stop == length else _bound_text(stop)
    return f"{left}:{right}"


def _getitem_text(n: Call, sub) -> str:
    x = n.args[0]
    parts = []
    for axis, (kind, b) in enumerate(items_of(n, written=True)):
        if kind == INDEX:
            parts.append(_bound_text(b[0]))
        else:
            parts.append(slice_text(b[0], b[1], x.shape[axis]))
    return f"{sub(x, PREC_ATOM)}[{', '.join(parts)}]"


def _one_based(b: sympy.Expr) -> sympy.Expr:
    return sympy.expand(b + 1)


def _getitem_latex(n: Call, s) -> str:
    """X_{:, d_h+1:2 d_h}: 1-based and inclusive, as in textbooks (NumPy X[:, dh:2*dh])."""
    from engine.expr import Ref, Var

    x = n.args[0]
    parts = []
    for axis, (kind, b) in enumerate(items_of(n)):
        length = x.shape[axis]
        if kind == INDEX:
            parts.append(sympy.latex(_one_based(b[0])))
        elif _full(b[0], b[1], length):
            parts.append(":")
        else:
            lo, hi = _one_based(b[0]), b[1]
            parts.append(f"{sympy.latex(lo)}:{sympy.latex(hi)}")
    base = s(x, PREC_ATOM)
    if not (isinstance(x, Var | Ref) and "_" not in base and "^" not in base):
        base = rf"\left({s(x, 0)}\right)"
    return f"{base}_{{{', '.join(parts)}}}"


register(
    Function(
        name="getitem",
        nargs=1,
        shape=_getitem_shape,
        numpy=_np_getitem,
        sympy=_sym_getitem,
        latex=_getitem_latex,
        vjp=_getitem_vjp,
        params={"kinds": (), "dims": (), "ends": ()},
        doc="static slicing and integer indexing x[i], X[:, a:b] (NumPy semantics)",
        public=False,
        text=_getitem_text,
    )
)


# ---------------------------------------------------------------- concat and stack


def _concat_shape(shapes: tuple[Shape, ...], p) -> Shape:
    first = shapes[0]
    if not first:
        raise ShapeError("concat() needs arrays, got a scalar")
    axis = normalize_axis(p["axis"], len(first), "concat")
    for s in shapes[1:]:
        if len(s) != len(first) or s[:axis] + s[axis + 1 :] != first[:axis] + first[axis + 1 :]:
            raise ShapeError(
                f"concat(): shapes {format_shape(first)} and {format_shape(s)} differ "
                f"off axis {axis}"
            )
    total = sympy.expand(sum((s[axis] for s in shapes), sympy.Integer(0)))
    return first[:axis] + (total,) + first[axis + 1 :]


def _concat_vjp(n: Call, g: Expr, i: int) -> Expr:
    """concat([a, b, ...]) -> each argument's cotangent is its own slice of g along the axis."""
    axis = params_of(n)["axis"] % len(n.shape)
    start = sympy.expand(sum((a.shape[axis] for a in n.args[:i]), sympy.Integer(0)))
    stop = sympy.expand(start + n.args[i].shape[axis])
    items: list[Item] = [(SLICE, None, None)] * axis + [(SLICE, start, stop)]
    return index(g, items)


def _list_text(n: Call, name: str) -> str:
    from engine.printing.text import to_text

    axis = n.param("axis")
    tail = "" if axis is None else f", axis={axis}"
    return f"{name}([{', '.join(to_text(a) for a in n.args)}]{tail})"


def _bmatrix(rows: list[list[str]]) -> str:
    body = r" \\ ".join(" & ".join(r) for r in rows)
    return rf"\begin{{bmatrix}} {body} \end{{bmatrix}}"


def _concat_latex(n: Call, s) -> str:
    """[a; b] stacked vertically (vectors, or matrices along axis 0), [A  B] side by side."""
    rank = len(n.shape)
    axis = params_of(n)["axis"] % rank
    args = [s(a, 0) for a in n.args]
    if rank == 1 or (rank == 2 and axis == 0):
        return _bmatrix([[a] for a in args])
    if rank == 2:
        return _bmatrix([args])
    return rf"{latex_fn('concat')}_{{\text{{axis}}\,{axis}}}\left({', '.join(args)}\right)"


register(
    Function(
        name="concat",
        nargs=VARIADIC,
        shape=_concat_shape,
        numpy=lambda *xs, axis=0: np.concatenate(xs, axis=axis),
        sympy=lambda *xs, axis=0: obj(np.concatenate([obj(x) for x in xs], axis=axis)),
        latex=_concat_latex,
        vjp=_concat_vjp,
        params={"axis": 0},
        doc="join arrays along an existing axis: concat([a, b], axis=0) (array API)",
        text=lambda n, sub: _list_text(n, "concat"),
    )
)


def _stack_shape(shapes: tuple[Shape, ...], p) -> Shape:
    first = shapes[0]
    for s in shapes[1:]:
        if s != first:
            raise ShapeError(f"stack(): shapes {format_shape(first)} and {format_shape(s)} differ")
    axis = normalize_axis(p["axis"], len(first) + 1, "stack")
    return first[:axis] + (sympy.Integer(len(shapes)),) + first[axis:]


def _stack_vjp(n: Call, g: Expr, i: int) -> Expr:
    """stack([a, b, ...]) -> argument i's cotangent is g[..., i, ...] along the new axis."""
    axis = params_of(n)["axis"] % len(n.shape)
    return index(g, [(SLICE, None, None)] * axis + [(INDEX, sympy.Integer(i))])


def _stack_latex(n: Call, s) -> str:
    """Vectors stacked as the rows (axis 0) or the columns (axis 1) of a matrix."""
    rank = len(n.shape)
    axis = params_of(n)["axis"] % rank
    if rank == 2 and axis == 0:
        return _bmatrix([[rf"{s(a, 36)}^\top"] for a in n.args])
    if rank == 2:
        return _bmatrix([[s(a, 0) for a in n.args]])
    args = ", ".join(s(a, 0) for a in n.args)
    return rf"{latex_fn('stack')}_{{\text{{axis}}\,{axis}}}\left({args}\right)"


register(
    Function(
        name="stack",
        nargs=VARIADIC,
        shape=_stack_shape,
        numpy=lambda *xs, axis=0: np.stack(xs, axis=axis),
        sympy=lambda *xs, axis=0: obj(np.stack([obj(x) for x in xs], axis=axis)),
        latex=_stack_latex,
        vjp=_stack_vjp,
        params={"axis": 0},
        doc="join arrays of one shape along a new axis: stack([a, b], axis=0) (array API)",
        text=lambda n, sub: _list_text(n, "stack"),
    )
)


# ---------------------------------------------------------------- reshape


def _reshape_shape(shapes: tuple[Shape, ...], p) -> Shape:
    (s,) = shapes
    dims = tuple(sympy.Integer(d) if isinstance(d, int) else d for d in p["dims"])
    if not 1 <= len(dims) <= MAX_RESHAPE_RANK:
        raise ShapeError(f"reshape() takes 1 to {MAX_RESHAPE_RANK} sizes, got {len(dims)}")
    for d in dims:
        if d.is_positive is not True:
            raise ShapeError(f"reshape(): size {d} is not positive for every choice of sizes")
    old = sympy.expand(math.prod(s, start=sympy.Integer(1)))
    new = sympy.expand(math.prod(dims, start=sympy.Integer(1)))
    if sympy.expand(old - new) != 0:
        raise ShapeError(
            f"reshape(): {format_shape(s)} has {old} entries, {format_shape(dims)} has {new} "
            "(declare a size relation such as d = h * dh if they are equal)"
        )
    return dims


def _reshape_text(n: Call, sub) -> str:
    dims = params_of(n)["dims"]
    inner = ", ".join(_bound_text(_sym(d)) for d in dims)
    return f"reshape({sub(n.args[0], 0)}, ({inner}{',' if len(dims) == 1 else ''}))"


def _reshape_latex(n: Call, s) -> str:
    dims = r" \times ".join(dim_latex(d) for d in params_of(n)["dims"])
    return rf"{latex_fn('reshape')}_{{{dims}}}\left({s(n.args[0], 0)}\right)"


register(
    Function(
        name="reshape",
        nargs=1,
        shape=_reshape_shape,
        numpy=lambda x, dims=(): np.reshape(x, dims),
        sympy=lambda x, dims=(): obj(np.reshape(obj(x), dims)),
        latex=_reshape_latex,
        vjp=lambda n, g, i: call("reshape", g, dims=n.args[0].shape),
        params={"dims": ()},
        doc="reshape(X, (n, h, dh)): the same entries in row-major (C) order, NumPy's reshape",
        text=_reshape_text,
    )
)


def split_part(x: Expr, parts: sympy.Expr, axis: int, i: sympy.Expr) -> Expr:
    """split(x, k, axis)[i]: part i of k equal parts along the axis, as the slice
    x[..., i*m:(i+1)*m] with m = length / k (NumPy's np.split(x, k, axis)[i])."""
    if not x.shape:
        raise ShapeError("split() needs an array, got a scalar")
    a = normalize_axis(axis, len(x.shape), "split")
    if parts.is_positive is not True:
        raise ShapeError(f"split(): the number of parts {parts} must be positive")
    width = sympy.cancel(x.shape[a] / parts)
    if width.is_integer is not True:
        raise ShapeError(
            f"split(): an axis of length {x.shape[a]} does not divide into {parts} equal parts "
            f"(declare a size relation such as {x.shape[a]} = {parts} * m)"
        )
    at = parts + i if i.is_negative else i
    if at.is_negative or (parts - at - 1).is_negative:
        raise ShapeError(f"split(): part {i} is out of range for {parts} parts")
    start, stop = sympy.expand(at * width), sympy.expand((at + 1) * width)
    return index(x, [(SLICE, None, None)] * a + [(SLICE, start, stop)])


# ---------------------------------------------------------------- pad


def _pad_shape(shapes: tuple[Shape, ...], p) -> Shape:
    (s,) = shapes
    if not s:
        raise ShapeError("pad() needs an array, got a scalar")
    axis = normalize_axis(p["axis"], len(s), "pad")
    widths = tuple(_sym(w) for w in p["dims"])
    if len(widths) != 2:
        raise ShapeError("pad() takes two widths: pad(x, (before, after), axis=-1)")
    for w in widths:
        if w.is_negative:
            raise ShapeError(f"pad(): width {w} is negative")
    return s[:axis] + (sympy.expand(s[axis] + widths[0] + widths[1]),) + s[axis + 1 :]


def _pad_with(zero, x, dims, axis):
    """Zeros ahead of and behind x along `axis` (np.pad with constant zeros, for any dtype)."""
    before, after = dims
    parts = []
    for width in (before, None, after):
        if width is None:
            parts.append(x)
        elif width:
            shape = list(np.shape(x))
            shape[axis] = int(width)
            parts.append(np.full(shape, zero, dtype=x.dtype))
    return np.concatenate(parts, axis=axis)


def _pad_vjp(n: Call, g: Expr, i: int) -> Expr:
    """pad(x, (a, b), axis) -> the cotangent of x is g[..., a:a + length, ...]."""
    axis = params_of(n)["axis"] % len(n.shape)
    before = _sym(params_of(n)["dims"][0])
    stop = sympy.expand(before + n.args[0].shape[axis])
    return index(g, [(SLICE, None, None)] * axis + [(SLICE, before, stop)])


def _pad_text(n: Call, sub) -> str:
    a, b = (_bound_text(_sym(w)) for w in params_of(n)["dims"])
    axis = n.param("axis")
    tail = "" if axis is None else f", axis={axis}"
    return f"pad({sub(n.args[0], 0)}, ({a}, {b}){tail})"


def _pad_latex(n: Call, s) -> str:
    """[0; x; 0] for a vector, else pad with its widths and axis."""
    a, b = (_sym(w) for w in params_of(n)["dims"])
    rank = len(n.shape)
    axis = params_of(n)["axis"] % rank
    if rank == 1:
        rows = [rf"\mathbf{{0}}_{{{sympy.latex(a)}}}"] * (a != 0)
        rows += [s(n.args[0], 0)]
        rows += [rf"\mathbf{{0}}_{{{sympy.latex(b)}}}"] * (b != 0)
        return _bmatrix([[r] for r in rows])
    widths = f"{sympy.latex(a)}, {sympy.latex(b)}"
    return (
        rf"{latex_fn('pad')}_{{({widths}),\,\text{{axis}}\,{axis}}}\left({s(n.args[0], 0)}\right)"
    )


register(
    Function(
        name="pad",
        nargs=1,
        shape=_pad_shape,
        numpy=lambda x, dims=(), axis=-1: _pad_with(0, np.asarray(x), dims, axis),
        sympy=lambda x, dims=(), axis=-1: obj(_pad_with(sympy.Integer(0), obj(x), dims, axis)),
        latex=_pad_latex,
        vjp=_pad_vjp,
        params={"dims": (), "axis": -1},
        doc="pad(x, (before, after), axis=-1): zeros before and after along one axis (np.pad)",
        text=_pad_text,
    )
)
