"""sort along an axis (a stable sort, as np.sort) and its VJP unsort, the inverse permutation."""

from __future__ import annotations

import mpmath
import numpy as np
import sympy

from engine.expr import Call, Expr, Shape, ShapeError, call, format_shape
from engine.functions.base import (
    Function,
    latex_fn,
    need_rank,
    normalize_axis,
    obj,
    params_of,
    register,
)

# ---------------------------------------------------------------- sort and its inverse permutation
# sort(x, axis=-1, descending=False) is np.sort (torch.sort(...).values): a stable sort, so tied
# entries keep their order and the earlier one takes the earlier slot; ties are a kink (the
# gradient there depends on that choice). Its VJP scatters the cotangent back through the
# permutation: unsort(g, x) puts g's k-th entry (along the axis) where x's k-th smallest
# (largest) entry came from, so unsort(sort(x), x) = x.


def _stable_ranks(xs, descending: bool) -> list[int]:
    """The slot each entry takes in a stable sort (ascending, or descending)."""
    order = sorted(range(len(xs)), key=lambda j: (-xs[j] if descending else xs[j], j))
    ranks = [0] * len(xs)
    for slot, j in enumerate(order):
        ranks[j] = slot
    return ranks


class OrderStatistic(sympy.Function):
    """The entry in slot k of a stable sort of xs (descending when d is 1)."""

    is_real = True
    mp_jump = False

    @staticmethod
    def mp_compared(n: int) -> tuple[tuple[int, ...], bool]:
        return tuple(range(2, n)), False  # the order of xs (k and d are parameters)

    @classmethod
    def eval(cls, k, d, *xs):
        if all(x.is_number and x.is_comparable for x in xs):
            ranks = _stable_ranks(xs, bool(d))
            return xs[ranks.index(int(k))]
        return None

    def fdiff(self, argindex=1):
        k, d, *xs = self.args
        if argindex <= 2:
            return sympy.Integer(0)
        return SlotOf(k, d, argindex - 3, *xs)

    @staticmethod
    def mp_value(k, d, *xs):
        return xs[_stable_ranks(xs, bool(d)).index(int(k))]

    @staticmethod
    def mp_partials(v, k, d, *xs):
        ranks = _stable_ranks(xs, bool(d))
        return [0, 0] + [1 if r == int(k) else 0 for r in ranks]


class SlotOf(sympy.Function):
    """1 when entry j of xs takes slot k of the stable sort, else 0; derivative 0 (a kink)."""

    mp_jump = True

    @staticmethod
    def mp_compared(n: int) -> tuple[tuple[int, ...], bool]:
        return tuple(range(3, n)), False

    @classmethod
    def eval(cls, k, d, j, *xs):
        if all(x.is_number and x.is_comparable for x in xs):
            return sympy.Integer(int(_stable_ranks(xs, bool(d))[int(j)] == int(k)))
        return None

    def fdiff(self, argindex=1):
        return sympy.Integer(0)

    @staticmethod
    def mp_value(k, d, j, *xs):
        return mpmath.mpf(int(_stable_ranks(xs, bool(d))[int(j)] == int(k)))

    @staticmethod
    def mp_partials(v, k, d, j, *xs):
        return [0] * (3 + len(xs))


def _sort_key(x: np.ndarray) -> np.ndarray:
    if x.dtype == object:
        # the verifier's high-precision numbers order themselves by their real parts, at their
        # own precision (as floats, 1 + 1e-130 and 1 would tie); other objects as floats
        if all(getattr(v, "ordered_by_real_part", False) for v in x.flat):
            return x
        return np.vectorize(float, otypes=[float])(x)
    return x.real


def _np_order(x: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    key = _sort_key(x)
    return np.argsort(-key if descending else key, axis=axis, kind="stable")


def _np_sort(x, axis=-1, descending=False):
    x = np.asarray(x)
    return np.take_along_axis(x, _np_order(x, axis, descending), axis=axis)


def _np_unsort(g, x, axis=-1, descending=False):
    g, x = np.asarray(g), np.asarray(x)
    ranks = np.argsort(_np_order(x, axis, descending), axis=axis, kind="stable")
    return np.take_along_axis(g, ranks, axis=axis)


def _sym_sort(x, axis=-1, descending=False):
    x = obj(x)
    moved = np.moveaxis(x, axis, -1)
    out = np.empty(moved.shape, dtype=object)
    d = sympy.Integer(int(descending))
    for idx in np.ndindex(moved.shape[:-1]):
        row = moved[idx].tolist()
        for k in range(len(row)):
            out[idx + (k,)] = OrderStatistic(sympy.Integer(k), d, *row)
    return obj(np.moveaxis(out, -1, axis))


def _sym_unsort(g, x, axis=-1, descending=False):
    g, x = obj(g), obj(x)
    gm, xm = np.moveaxis(g, axis, -1), np.moveaxis(x, axis, -1)
    out = np.empty(xm.shape, dtype=object)
    d = sympy.Integer(int(descending))
    for idx in np.ndindex(xm.shape[:-1]):
        row, grow = xm[idx].tolist(), gm[idx].tolist()
        for j in range(len(row)):
            out[idx + (j,)] = sympy.Add(
                *[
                    grow[k] * SlotOf(sympy.Integer(k), d, sympy.Integer(j), *row)
                    for k in range(len(row))
                ]
            )
    return obj(np.moveaxis(out, -1, axis))


def _sort_shape(fname: str):
    def rule(shapes, p) -> Shape:
        s = shapes[0]
        need_rank(fname, s, tuple(range(1, 9)), "an array (not a scalar)")
        normalize_axis(p["axis"], len(s), fname)
        if len(shapes) == 2 and shapes[1] != s:
            raise ShapeError(
                f"{fname}(): shapes {format_shape(shapes[0])} and {format_shape(shapes[1])} differ"
            )
        return s

    return rule


def _sort_vjp(n: Call, g: Expr, i: int) -> Expr:
    """The cotangent scattered back through the sorting permutation: unsort(g, x)."""
    p = {k: v for k, v in n.params}
    return call("unsort", g, n.args[0], **p)


def _sort_latex(name: str):
    def rule(n: Call, s) -> str:
        p = params_of(n)
        rank = len(n.args[0].shape)
        notes = []
        if p["axis"] % rank != rank - 1:
            notes.append(rf"\text{{axis}}\,{p['axis'] % rank}")
        if p["descending"]:
            notes.append(r"\downarrow")
        sub = "_{" + r",\,".join(notes) + "}" if notes else ""
        args = ", ".join(s(a, 0) for a in n.args)
        return rf"{latex_fn(name)}{sub}\left({args}\right)"

    return rule


register(
    Function(
        name="sort",
        nargs=1,
        shape=_sort_shape("sort"),
        numpy=_np_sort,
        sympy=_sym_sort,
        latex=_sort_latex("sort"),
        vjp=_sort_vjp,
        params={"axis": -1, "descending": False},
        doc="sorted along an axis (stable; descending=True for largest first); VJP unsort",
    )
)
register(
    Function(
        name="unsort",
        nargs=2,
        shape=_sort_shape("unsort"),
        numpy=_np_unsort,
        sympy=_sym_unsort,
        latex=_sort_latex("unsort"),
        params={"axis": -1, "descending": False},
        doc="unsort(g, x): g put back where sort(x) took its entries from (sort's VJP)",
        nondifferentiable="sort's VJP is not differentiated again",
    )
)
