"""Reductions (sum, mean, var, logsumexp) and the softmax family, with NumPy axis semantics."""

from __future__ import annotations

import numpy as np
import sympy

from engine.expr import Call, Expr, Shape, ShapeError, call
from engine.functions.base import (
    Function,
    latex_fn,
    need_rank,
    normalize_axis,
    obj,
    params_of,
    register,
    smooth_branch,
    sym_map,
    sym_sum,
)

REDUCE_PARAMS = {"axis": None, "keepdims": False}


def reduced_axes(axis, rank: int, fname: str) -> tuple[int, ...]:
    """An `axis` parameter (an int or a tuple of ints) as sorted axes in range(rank)."""
    axes = axis if isinstance(axis, tuple) else (axis,)
    if not axes:
        raise ShapeError(f"{fname}(): axis=() names no axis")
    out = tuple(sorted(normalize_axis(a, rank, fname) for a in axes))
    if len(set(out)) != len(out):
        raise ShapeError(f"{fname}(): axis {axis} repeats an axis")
    return out


def _reduce_shape(fname: str):
    def rule(shapes: tuple[Shape, ...], p) -> Shape:
        (s,) = shapes
        axis, keep = p["axis"], p["keepdims"]
        if axis is None:
            return tuple(sympy.Integer(1) for _ in s) if keep else ()
        need_rank(fname, s, tuple(range(1, 9)), "an array (not a scalar) when axis is given")
        axes = reduced_axes(axis, len(s), fname)
        if keep:
            return tuple(sympy.Integer(1) if k in axes else d for k, d in enumerate(s))
        return tuple(d for k, d in enumerate(s) if k not in axes)

    return rule


def _axis(node: Call) -> int | tuple[int, ...] | None:
    """The reduced axis (an int), axes (a sorted tuple, for a tuple parameter) or None."""
    axis = params_of(node)["axis"]
    if axis is None:
        return None
    rank = len(node.args[0].shape)
    if isinstance(axis, tuple):
        return reduced_axes(axis, rank, node.fn)
    return axis % rank


def count(node: Call) -> Expr:
    """How many entries a reduction averages over, as an expression of the sizes."""
    from engine.expr import Const
    from engine.sizes import size_expr

    shape = node.args[0].shape
    axis = _axis(node)
    if axis is None:
        dims = shape
    else:
        dims = tuple(shape[a] for a in (axis if isinstance(axis, tuple) else (axis,)))
    total: Expr | None = None
    for d in dims:
        term: Expr = size_expr(d)  # `h * dh` as Size(h) * Size(dh), never a Size named 'dh*h'
        total = term if total is None else total * term
    return total if total is not None else Const(1)


def expand_back(g: Expr, node: Call) -> Expr:
    """Reshape a reduction's cotangent so it broadcasts against the reduced argument."""
    axis = _axis(node)
    if axis is None or params_of(node)["keepdims"]:
        return g
    return call("expand_dims", g, axis=axis)


def _reduce_latex(symbol: str):
    def rule(n: Call, s) -> str:
        axis = _axis(n)
        rank = len(n.args[0].shape)
        arg = s(n.args[0], 0)
        if isinstance(axis, tuple):
            if len(axis) < rank:
                axes = ",".join(map(str, axis))
                return rf"{symbol}_{{\text{{axes}}\,{axes}}}\left({arg}\right)"
            return rf"{symbol}\left({arg}\right)"
        if axis is None or rank == 1:
            return rf"{symbol}\left({arg}\right)"
        if rank == 2:
            which = "row" if axis == 1 else "col"
            return rf"{symbol}_{{\text{{{which}}}}}\left({arg}\right)"
        return rf"{symbol}_{{\text{{axis}}\,{axis}}}\left({arg}\right)"

    return rule


def _np_reduce(f):
    return lambda x, axis=None, keepdims=False: np.asarray(f(x, axis=axis, keepdims=keepdims))


def _np_mean(x, axis=None, keepdims=False):
    return np.asarray(np.mean(x, axis=axis, keepdims=keepdims))


def _np_var(x, axis=None, keepdims=False):
    # Not np.var: for complex input it takes |x - mean|^2, which breaks complex-step.
    m = np.mean(x, axis=axis, keepdims=True)
    return np.asarray(np.mean((x - m) ** 2, axis=axis, keepdims=keepdims))


def _finite_max(x, axis=None):
    """max of x's real part along axis (kept as length 1), 0 where it is not finite: the shift
    of a log-sum-exp, which leaves an all -inf row at -inf instead of making it NaN."""
    with smooth_branch():
        m = np.asarray(np.max(x.real, axis=axis, keepdims=True))
    if m.dtype != object:  # (object arrays: the verifier's high-precision numbers, always finite)
        m = np.where(np.isfinite(m), m, 0.0)
    return m


def _np_logsumexp(x, axis=None, keepdims=False):
    m = _finite_max(x, axis)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return np.asarray(out if keepdims else np.squeeze(out, axis=axis))


def _sym_count(x: np.ndarray, axis) -> int:
    if axis is None:
        return x.size
    axes = axis if isinstance(axis, tuple) else (axis,)
    return int(np.prod([x.shape[a] for a in axes]))


def _sym_mean(x, axis=None, keepdims=False):
    return obj(sym_sum(x, axis, keepdims) / _sym_count(x, axis))


def _sym_var(x, axis=None, keepdims=False):
    m = sym_sum(x, axis, True) / _sym_count(x, axis)
    return obj(sym_sum((x - m) ** 2, axis, keepdims) / _sym_count(x, axis))


def _sym_logsumexp(x, axis=None, keepdims=False):
    return sym_map(sympy.log)(sym_sum(sym_map(sympy.exp)(x), axis, keepdims))


def reduction(name, np_f, sym_f, vjp, latex, doc):
    return register(
        Function(
            name=name,
            nargs=1,
            shape=_reduce_shape(name),
            numpy=np_f,
            sympy=sym_f,
            latex=latex,
            vjp=vjp,
            params=dict(REDUCE_PARAMS),
            doc=doc,
        )
    )


def _sum_vjp(n: Call, g: Expr, i: int) -> Expr:
    x = n.args[0]
    g = expand_back(g, n)
    return g * call("ones", dims=x.shape) if g.shape != x.shape else g


def _mean_vjp(n: Call, g: Expr, i: int) -> Expr:
    return _sum_vjp(n, g, i) / count(n)


def _var_vjp(n: Call, g: Expr, i: int) -> Expr:
    x = n.args[0]
    centred = x - call("mean", x, **_keep(n))
    return 2 * expand_back(g, n) * centred / count(n)


def _keep(n: Call) -> dict:
    axis = params_of(n)["axis"]
    return {} if axis is None else {"axis": axis, "keepdims": True}


def _logsumexp_vjp(n: Call, g: Expr, i: int) -> Expr:
    x = n.args[0]
    axis = params_of(n)["axis"]
    p = call("softmax", x, axis=axis if axis is not None else -1)
    if axis is None and len(x.shape) != 1:
        p = call("exp", x - n)
    return expand_back(g, n) * p


reduction(
    "sum",
    _np_reduce(np.sum),
    sym_sum,
    _sum_vjp,
    _reduce_latex(r"{\textstyle\sum}"),  # braces: \textstyle must not leak into the rest
    "sum of entries (all, or along axis)",
)
reduction("mean", _np_mean, _sym_mean, _mean_vjp, _reduce_latex(latex_fn("mean")), "mean")
reduction(
    "var",
    _np_var,
    _sym_var,
    _var_vjp,
    _reduce_latex(latex_fn("Var")),
    "population variance (ddof = 0)",
)
reduction(
    "logsumexp",
    _np_logsumexp,
    _sym_logsumexp,
    _logsumexp_vjp,
    _reduce_latex(latex_fn("logsumexp")),
    "log of the sum of exponentials, computed max-shifted",
)


# ---------------------------------------------------------------- softmax family


def _softmax_shape(fname: str):
    def rule(shapes, p) -> Shape:
        (s,) = shapes
        need_rank(fname, s, tuple(range(1, 9)), "a vector or matrix")
        reduced_axes(p["axis"], len(s), fname)
        return s

    return rule


def _np_softmax(x, axis=-1):
    with smooth_branch():
        m = np.max(x.real, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def _np_log_softmax(x, axis=-1):
    # (x - m) - log(sum(exp(x - m))), not x - logsumexp(x): the latter rounds m + log(...) at
    # the scale of m first, an error of |m| * 1e-16 where the answer may be -log(3) exactly
    shifted = x - _finite_max(x, axis)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _sym_softmax(x, axis=-1):
    e = sym_map(sympy.exp)(x)
    return obj(e / sym_sum(e, axis, True))


def _sym_log_softmax(x, axis=-1):
    return obj(x - _sym_logsumexp(x, axis, True))


def softmax_vjp(n: Call, g: Expr, i: int) -> Expr:
    """p * (g - sum(p * g, axis, keepdims=True)), with p = softmax(x)."""
    axis = params_of(n)["axis"]
    return n * (g - call("sum", n * g, axis=axis, keepdims=True))


def log_softmax_vjp(n: Call, g: Expr, i: int) -> Expr:
    """g - softmax(x) * sum(g, axis, keepdims=True)."""
    axis = params_of(n)["axis"]
    p = call("softmax", n.args[0], axis=axis)
    return g - p * call("sum", g, axis=axis, keepdims=True)


def _softmax_latex(name: str):
    def rule(n: Call, s) -> str:
        rank = len(n.args[0].shape)
        axes = reduced_axes(params_of(n)["axis"], rank, name)
        if axes == (rank - 1,):
            note = ""
        elif len(axes) == 1:
            note = rf"_{{\text{{axis}}\,{axes[0]}}}"
        else:
            note = rf"_{{\text{{axes}}\,{','.join(map(str, axes))}}}"
        # log_softmax is \log\operatorname{softmax}: an underscore in \operatorname subscripts.
        head = r"\log\operatorname{softmax}" if name == "log_softmax" else latex_fn(name)
        return rf"{head}{note}\left({s(n.args[0], 0)}\right)"

    return rule


for _name, _np_f, _sym_f, _vjp, _doc in (
    ("softmax", _np_softmax, _sym_softmax, softmax_vjp, "softmax, max-shifted"),
    ("log_softmax", _np_log_softmax, _sym_log_softmax, log_softmax_vjp, "log of softmax"),
):
    register(
        Function(
            name=_name,
            nargs=1,
            shape=_softmax_shape(_name),
            numpy=_np_f,
            sympy=_sym_f,
            latex=_softmax_latex(_name),
            vjp=_vjp,
            params={"axis": -1},
            doc=_doc,
        )
    )
