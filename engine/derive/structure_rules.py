"""Simplifier rules for slices and blocks: the zero-padded cotangents of slices add up blockwise.

Each rule is a small named function whose docstring states the identity; tests/test_structure.py
turns every rule into claims and checks them with the verifier.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy

from engine.expr import Call, Expr, call
from engine.functions.base import params_of
from engine.functions.structure import ALL, SLICE, TO_END, items_of

Rule = Callable[[Call], Expr | None]


def _is(e: Expr, fn: str) -> bool:
    return isinstance(e, Call) and e.fn == fn


def _axis(n: Call) -> int:
    return params_of(n)["axis"] % len(n.shape)


def _slices_one_axis(n: Call, axis: int) -> bool:
    """n = x[:, ..., :, a:b]: a slice of `axis`, every axis before it whole, none after."""
    kinds = params_of(n)["kinds"]
    return (
        len(kinds) == axis + 1
        and all(k == ALL for k in kinds[:axis])
        and kinds[axis] in (SLICE, TO_END)
    )


def blockwise_sum(n: Call) -> Expr | None:
    """concat([a1, ..., ak]) ± concat([b1, ..., bk]) = concat([a1 ± b1, ..., ak ± bk]) along one
    axis, when a_i and b_i have the same shape (the same blocks); a sum of zero-padded slices
    becomes one block matrix."""
    a, b = n.args
    if not (_is(a, "concat") and _is(b, "concat")) or a.shape != b.shape:
        return None
    if _axis(a) != _axis(b) or len(a.args) != len(b.args):
        return None
    if any(x.shape != y.shape for x, y in zip(a.args, b.args, strict=True)):
        return None
    op = "add" if n.fn == "add" else "sub"
    parts = [call(op, x, y) for x, y in zip(a.args, b.args, strict=True)]
    return call("concat", *parts, axis=params_of(a)["axis"])


def slice_of_concat(n: Call) -> Expr | None:
    """concat([a1, ..., ak], axis)[..., s:e] = a_i when s:e is exactly the extent of a_i along
    the axis and every other axis is taken whole."""
    x = n.args[0]
    if not _is(x, "concat"):
        return None
    axis = _axis(x)
    kinds = params_of(n)["kinds"]
    if (
        len(kinds) != axis + 1
        or any(k != ALL for k in kinds[:axis])
        or kinds[axis] not in (SLICE, TO_END)
    ):
        return None
    start, stop = items_of(n)[axis][1]
    offset = sympy.Integer(0)
    for part in x.args:
        end = sympy.expand(offset + part.shape[axis])
        if sympy.expand(start - offset) == 0 and sympy.expand(stop - end) == 0:
            return part
        offset = end
    return None


def slice_of_scaled(n: Call) -> Expr | None:
    """(c * A)[idx] = c * A[idx] and (A * c)[idx] = A[idx] * c for a scalar c (also / c and
    -A): the slice moves onto the array, where it may meet a concat (slice_of_concat)."""
    x = n.args[0]
    if _is(x, "neg"):
        return -Call(n.fn, (x.args[0],), n.params, n.shape)
    if not (_is(x, "mul") or _is(x, "div")):
        return None
    a, b = x.args
    if b.shape == () and a.shape == x.shape:
        return call(x.fn, Call(n.fn, (a,), n.params, n.shape), b)
    if x.fn == "mul" and a.shape == () and b.shape == x.shape:
        return call(x.fn, a, Call(n.fn, (b,), n.params, n.shape))
    return None


def concat_of_slices(n: Call) -> Expr | None:
    """concat([X[..., 0:a1], X[..., a1:a2], ..., X[..., ak:d]], axis) = X: slices of one array
    that tile its axis in order (every other axis taken whole) join back into it."""
    axis = _axis(n)
    source = None
    offset = sympy.Integer(0)
    for part in n.args:
        if not _is(part, "getitem"):
            return None
        base = part.args[0]
        if source is None:
            source = base
        if base != source or base.shape[:axis] != n.shape[:axis]:
            return None
        kinds = params_of(part)["kinds"]
        if (
            len(kinds) != axis + 1
            or any(k != ALL for k in kinds[:axis])
            or kinds[axis] not in (SLICE, TO_END)
        ):
            return None
        start, stop = items_of(part)[axis][1]
        if sympy.expand(start - offset) != 0:
            return None
        offset = stop
    if source is None or source.shape != n.shape:
        return None
    return source if sympy.expand(offset - source.shape[axis]) == 0 else None


STRUCTURE_RULES: tuple[Rule, ...] = (
    blockwise_sum,
    slice_of_concat,
    slice_of_scaled,
    concat_of_slices,
)
