"""Export rewrites that move arithmetic off the full-size arrays onto the small ones.

Each rule is an identity of exact arithmetic on broadcast arrays (stated in its docstring); it
changes only the order in which the emitted code rounds, never the value. They serve speed:
a derived gradient such as LayerNorm's reads `sum(a * b / sigma, axis=1, keepdims=True) * xhat
/ d`, where dividing the (n, d) array by sigma before the sum, and multiplying by xhat before
dividing by d, each cost a pass over n * d entries that an (n, 1) array does in n.
"""

from __future__ import annotations

import sympy

from engine.expr import Call, Expr, call
from engine.functions.base import broadcast

ONE = sympy.Integer(1)


def _axes(axis, rank: int) -> set[int]:
    """The reduced axes of a reduction over an array of `rank` (all of them for None)."""
    if axis is None:
        return set(range(rank))
    return {a % rank for a in (axis if isinstance(axis, tuple) else (axis,))}


def smaller(shape, full) -> bool:
    """True when an array of `shape` broadcasts to `full` with fewer entries (a 1 or a missing
    axis where `full` has a size other than 1)."""
    if len(shape) > len(full):
        return False
    lead = len(full) - len(shape)
    if any(d != ONE for d in full[:lead]):
        return True
    return any(s == ONE and f != ONE for s, f in zip(shape, full[lead:], strict=True))


def _bshape(a: Expr, b: Expr):
    try:
        return broadcast(a.shape, b.shape)
    except Exception:  # shapes that do not broadcast: no rewrite
        return None


def constant_along(factor: Expr, shape, axis, keepdims: bool) -> bool:
    """True when `factor` broadcast to `shape` is constant along the reduced axes and broadcasts
    the same way against the reduction's result, so that it can leave the reduction.

    With keepdims the factor must have size 1 (or no axis) at every reduced axis; without, it
    must not reach any reduced axis at all (a scalar, or b of shape (d,) in sum(O * b, axis=0)
    for O of shape (n, d)), since the reduced axes disappear from the result.
    """
    rank, frank = len(shape), len(factor.shape)
    if frank > rank:
        return False
    lead = rank - frank
    reduced = _axes(axis, rank)
    if keepdims:
        return all(k < lead or factor.shape[k - lead] == ONE for k in reduced)
    return all(k < lead for k in reduced)


def pull_out_of_reduction(fn: str, x: Expr, axis, keepdims: bool, build) -> Expr | None:
    """sum(a * c) = sum(a) * c, sum(a / c) = sum(a) / c, sum(-a) = -sum(a) (and the same for
    mean), where a has the full shape of the reduced array and c is constant along the reduced
    axes (`constant_along`): linearity of the sum, with the count of a mean unchanged because a
    is full-shape. `build(fn, a)` makes the reduction of a (so a full sum can still become a dot
    product). None when no factor leaves.
    """
    if fn not in ("sum", "mean") or not isinstance(x, Call) or not x.shape:
        return None
    full = x.shape

    def inner(a: Expr) -> Expr:
        out = pull_out_of_reduction(fn, a, axis, keepdims, build)
        return out if out is not None else build(fn, a)

    if x.fn == "neg" and x.args[0].shape == full:
        return -inner(x.args[0])
    if x.fn == "div":
        a, c = x.args
        if a.shape == full and c.shape != full and constant_along(c, full, axis, keepdims):
            return inner(a) / c
    if x.fn == "mul":
        for a, c in (x.args, x.args[::-1]):
            if a.shape == full and c.shape != full and constant_along(c, full, axis, keepdims):
                return inner(a) * c
    return None


def two_pass_var(x: Expr, axis, keepdims: bool) -> Expr:
    """var(x) = mean((x - mean(x)) * (x - mean(x))), the mean inside keeping the reduced axes:
    the population variance written as the two-pass algorithm, so the centred array is one node
    that a standardization (x - mean(x)) / sqrt(var(x) + eps) shares, and no target runs a
    one-pass (Welford) kernel (torch.var's is ~20x slower than the two passes on CPU)."""
    inner = {} if axis is None else {"axis": axis, "keepdims": True}
    centred = x - call("mean", x, **inner)
    outer: dict = {"keepdims": True} if keepdims else {}
    if axis is not None:
        outer["axis"] = axis
    return call("mean", centred * centred, **outer)


def small_first(fn: str, left: Expr, right: Expr, shape) -> Expr | None:
    """A product or quotient regrouped so that a small factor meets another small one first:

        (x * y) * s = (x * s) * y,   (x * y) / s = (x / s) * y,   (x * y) op s = x * (y op s),
        (x / y) * s = (x * s) / y,   (x / y) / s = (x / s) / y,   s * (x * y) = (s * x) * y,
        (x / y) * s = x * (s / y),   (x / y) / s = x / (y * s)

    (commutativity and associativity of the product, `op` being * or /), taken only when s and
    the factor it meets broadcast to fewer entries than the result `shape`, so that one
    full-size pass becomes a small one. None when no pair qualifies.
    """
    if fn not in ("mul", "div"):
        return None

    def op(a: Expr, b: Expr) -> Expr:
        return a * b if fn == "mul" else a / b

    def small(a: Expr, b: Expr) -> bool:
        s = _bshape(a, b)
        return s is not None and smaller(s, shape)

    if isinstance(left, Call) and smaller(right.shape, shape):
        if left.fn == "mul":
            x, y = left.args
            if small(x, right):
                return op(x, right) * y
            if small(y, right):
                return x * op(y, right)
        if left.fn == "div":
            x, y = left.args
            if small(x, right):
                return op(x, right) / y
            if small(y, right):
                return x * (right / y) if fn == "mul" else x / (y * right)
    if fn == "mul" and isinstance(right, Call) and right.fn == "mul" and smaller(left.shape, shape):
        x, y = right.args
        if small(left, x):
            return (left * x) * y
    return None


def _leading(c: Expr, shape) -> tuple[int, ...] | None:
    """The leading axes of `shape` that c lacks, when c's shape is a proper, non-empty suffix of
    it (a scalar factor leaves a sum by `pull_out_of_reduction` instead)."""
    k = len(shape) - len(c.shape)
    if k <= 0 or not c.shape or tuple(c.shape) != tuple(shape[k:]):
        return None
    return tuple(range(k))


def total_of_product(a: Expr, b: Expr, vdot) -> Expr | None:
    """The sum of every entry of a * b, for a of the full shape, by linearity:

        sum(a * (u + v)) = sum(a * u) + sum(a * v)      (u + v of a's shape, u or v not),
        sum(a * c) = vdot(sum(a, axis=leading), c)      (c broadcast along the leading axes),
        sum(a * (u * c)) = vdot(sum(a * u, axis=leading), c),

    so a bias or a per-feature scale in `sum(O * (xhat * g + b))` costs a column sum, which the
    gradients (db = sum(O, axis=0), dg = sum(O * xhat, axis=0)) compute anyway, instead of a
    pass building xhat * g + b. `vdot(x, y)` is the caller's full sum of x * y for equal
    shapes. None when no rule applies.

    A difference is never split: the stable forms' x - max(x) would become a cancellation.
    """
    full = a.shape
    if not full:
        return None
    lead = _leading(b, full)
    if lead is not None:
        return vdot(call("sum", a, axis=lead[0] if len(lead) == 1 else lead), b)
    if b.shape != full or not isinstance(b, Call):
        return None
    if b.fn == "add" and any(u.shape != full for u in b.args):
        left, right = (_term(a, t, vdot) for t in b.args)
        return None if left is None or right is None else left + right
    if b.fn == "mul":
        for u, c in (b.args, b.args[::-1]):
            lead = _leading(c, full)
            if u.shape == full and lead is not None:
                return vdot(call("sum", a * u, axis=lead[0] if len(lead) == 1 else lead), c)
    return None


def _term(a: Expr, u: Expr, vdot) -> Expr | None:
    """sum(a * u) by the rules of `total_of_product`, else as a dot product when u has a's
    shape; None otherwise."""
    out = total_of_product(a, u, vdot)
    return vdot(a, u) if out is None and u.shape == a.shape else out


__all__ = [
    "constant_along",
    "pull_out_of_reduction",
    "small_first",
    "smaller",
    "total_of_product",
    "two_pass_var",
]
