"""Rules for reductions, length-1 axes and broadcast ones: the residue of derive at rank >= 3.

The reverse pass of a broadcast reduces one axis at a time and restores reduced axes with
expand_dims or keepdims; these rules merge what it leaves (`sum(sum(G, axis=0), axis=0)` is
`sum(G, axis=(0, 1))`, `squeeze(sum(G, axis=0, keepdims=True), 0)` is `sum(G, axis=0)`), gather
terms broadcast by `ones(...)` under one factor, and know that a centred array sums to zero.
Each is a small named function whose docstring states its identity; they join the rewriter's
table (`engine.derive.simplify.RULES`), and tests/test_simplify_rules.py checks each with the
verifier.
"""

from __future__ import annotations

from engine.expr import Call, Const, Expr, Ref, call
from engine.functions.base import broadcast, params_of

# Reductions r for which r(r(x, axis=A), axis=B) = r(x, axis=A ∪ B): a sum of sums, a mean of
# means over equal counts, a max of maxima, log-sum-exp of log-sum-exps. Not var.
NESTING = ("sum", "mean", "logsumexp", "max", "min")
# Reductions with keepdims=: squeeze removes the axes keepdims kept.
KEEPDIMS = ("sum", "mean", "var", "logsumexp", "norm", "max", "min")


def _is(e: Expr, *fns: str) -> bool:
    return isinstance(e, Call) and e.fn in fns


def _axes(n: Call) -> tuple[int, ...]:
    """The axes a reduction reduces, normalized and sorted (every axis when none is named)."""
    rank = len(n.args[0].shape)
    axis = params_of(n)["axis"]
    if axis is None:
        return tuple(range(rank))
    return tuple(sorted({a % rank for a in (axis if isinstance(axis, tuple) else (axis,))}))


def _reduce(fn: str, x: Expr, axes: tuple[int, ...], keepdims: bool = False) -> Expr:
    """fn(x, axis=axes) written plainly: no axis when every axis goes (without keepdims), an
    int for one axis (-1 for the last), a tuple for several."""
    rank = len(x.shape)
    axes = tuple(sorted(set(axes)))
    if axes == tuple(range(rank)) and not keepdims:
        return call(fn, x)
    if len(axes) == 1:
        axis = -1 if axes[0] == rank - 1 else axes[0]
        return call(fn, x, axis=axis, keepdims=True) if keepdims else call(fn, x, axis=axis)
    return call(fn, x, axis=axes, keepdims=True) if keepdims else call(fn, x, axis=axes)


def reduce_of_reduce(n: Call) -> Expr | None:
    """sum(sum(x, axis=A), axis=B) = sum(x, axis=A ∪ B), also mean, max, min, logsumexp.

    B counts among the axes A left; with keepdims on both, or on the inner one when B covers
    A, alike; keepdims on the outer one alone is expand_dims at B of the merged reduction."""
    if n.fn not in NESTING or not _is(n.args[0], n.fn):
        return None
    inner = n.args[0]
    (x,) = inner.args
    if x.shape == ():
        return None
    keep_in = bool(params_of(inner)["keepdims"])
    keep_out = bool(params_of(n)["keepdims"])
    a, b = _axes(inner), _axes(n)
    if not keep_in and not keep_out:
        left = [k for k in range(len(x.shape)) if k not in a]
        return _reduce(n.fn, x, a + tuple(left[k] for k in b))
    if keep_in and keep_out:
        return _reduce(n.fn, x, a + b, keepdims=True)
    if keep_in and set(a) <= set(b):
        return _reduce(n.fn, x, b)
    if not keep_in:  # the outer keepdims restores the axes B of the inner result
        left = [k for k in range(len(x.shape)) if k not in a]
        merged = _reduce(n.fn, x, a + tuple(left[k] for k in b))
        last = len(n.shape) - 1
        axis = b if len(b) > 1 else (-1 if b[0] == last else b[0])
        return call("expand_dims", merged, axis=axis)
    return None


def reduce_all_axes(n: Call) -> Expr | None:
    """sum(x, axis=(0, 1, ..., r-1)) = sum(x), also mean, var, logsumexp, max, min.

    Naming every axis (without keepdims) is reducing all."""
    if n.fn not in NESTING + ("var",) or not isinstance(params_of(n)["axis"], tuple):
        return None
    if params_of(n)["keepdims"] or _axes(n) != tuple(range(len(n.args[0].shape))):
        return None
    return call(n.fn, n.args[0])


def squeeze_of_keepdims(n: Call) -> Expr | None:
    """squeeze(sum(x, axis=A, keepdims=True), A) = sum(x, axis=A), any reduction with keepdims.

    squeeze removes exactly the axes keepdims kept (sum, mean, var, logsumexp, norm, max, min)."""
    from engine.functions.tensor import squeezed_axes

    (r,) = n.args
    if not _is(r, *KEEPDIMS) or not params_of(r)["keepdims"]:
        return None
    axes = _axes(r)
    if squeezed_axes(r.shape, params_of(n)["axis"]) != axes:
        return None
    params = {k: v for k, v in r.params if k != "keepdims"}
    if len(axes) == len(r.shape):
        params.pop("axis", None)
    return call(r.fn, r.args[0], **params)


def _unref(e: Expr) -> Expr:
    while isinstance(e, Ref):
        e = e.body
    return e


def _zeros(shape: tuple) -> Expr:
    return Const(0) if not shape else Const(0) * call("ones", dims=tuple(shape))


def centred_sum_is_zero(n: Call) -> Expr | None:
    """sum(x - mean(x, axis=A, keepdims=True), axis=B) = 0 for B ⊇ A (also mean, keepdims).

    Deviations from the mean sum to zero along the averaged axes; mean(x) alike for A = all."""
    if n.fn not in ("sum", "mean") or not _is(n.args[0], "sub"):
        return None
    x, m = n.args[0].args
    m = _unref(m)
    if not (_is(m, "mean") and m.args[0] == x and x.shape == n.args[0].shape):
        return None
    centred = _axes(m)
    if not params_of(m)["keepdims"] and len(centred) != len(x.shape):
        return None  # mean(x, axis=A) without keepdims lines up with x only by accident
    if not set(centred) <= set(_axes(n)):
        return None
    return _zeros(n.shape)


def _ones_factor(e: Expr) -> tuple[Expr, Expr] | None:
    """`b * ones(S)` or `ones(S) * b` -> (b, ones(S))."""
    if not _is(e, "mul"):
        return None
    a, b = e.args
    if _is(b, "ones") and not _is(a, "ones"):
        return a, b
    if _is(a, "ones") and not _is(b, "ones"):
        return b, a
    return None


def gather_broadcast_ones(n: Call) -> Expr | None:
    """a ± b * ones(S) = (a ± b) * ones(S) when a alone does not fill the shape.

    ones(S) then broadcasts the sum as it broadcast b; likewise ones(S) * a ± ones(S) * b."""
    a, b = n.args
    fa, fb = _ones_factor(a), _ones_factor(b)
    op = "add" if n.fn == "add" else "sub"
    if fa is not None and fb is not None and fa[1] == fb[1]:
        inner = call(op, fa[0], fb[0])
        return inner * fa[1]
    for i, (plain, f) in enumerate(((a, fb), (b, fa))):
        if f is None or plain.shape == n.shape or _ones_factor(plain) is not None:
            continue
        other, ones = f
        try:
            broadcast(plain.shape, other.shape)
        except Exception:
            continue
        inner = call(op, plain, other) if i == 0 else call(op, other, plain)
        return inner * ones
    return None


def add_negative_multiple(n: Call) -> Expr | None:
    """a + c B = a - |c| B and a - c B = a + |c| B for a negative number c."""
    a, b = n.args
    if not (_is(b, "mul") and isinstance(b.args[0], Const)):
        return None
    c = b.args[0].value
    if not c.is_negative or isinstance(b.args[1], Const):
        return None
    scaled = b.args[1] if c == -1 else Const(-c) * b.args[1]
    return a - scaled if n.fn == "add" else a + scaled


def _is_zeros(e: Expr) -> bool:
    """0, or the zero array 0 * ones(...)."""
    if isinstance(e, Const):
        return e.value == 0
    return _is(e, "mul") and isinstance(e.args[0], Const) and e.args[0].value == 0


def zero_array_absorbs(n: Call) -> Expr | None:
    """(0 * ones(S)) * b = 0 * ones(...) = b * (0 * ones(S)), and (0 * ones(S)) / b alike.

    The zero has the result's shape; wherever b is defined and, for the quotient, nonzero."""
    a, b = n.args
    zero = (_is_zeros(a) and not isinstance(a, Const)) or (n.fn == "mul" and _is_zeros(b))
    if not zero or (n.fn == "div" and isinstance(b, Const) and b.value == 0):
        return None
    return _zeros(n.shape)


def _perm_of(e: Expr) -> tuple[int, ...] | None:
    """The axis permutation of swapaxes(x, a, b) or transpose(x, axes) (output axis k is input
    axis perm[k]); None for anything else (x.T included: the rank-2 rules handle it)."""
    from engine.functions.base import normalize_axis
    from engine.functions.ops import permutation

    if not isinstance(e, Call) or not e.args:
        return None
    rank = len(e.shape)
    if e.fn == "swapaxes":
        a = normalize_axis(e.param("axis1"), rank, "swapaxes")
        b = normalize_axis(e.param("axis2"), rank, "swapaxes")
        perm = list(range(rank))
        perm[a], perm[b] = b, a
        return tuple(perm)
    if e.fn == "transpose" and e.param("axes") is not None:
        return permutation(e.param("axes"), rank, "transpose")
    return None


def permute_of_permute(n: Call) -> Expr | None:
    """swapaxes(transpose(x, p), a, b) = transpose(x, p with entries a and b exchanged).

    Any nesting of swapaxes and transpose(x, axes) is the one composed permutation: x itself
    when it is the identity, swapaxes(x, i, j) when it exchanges two axes."""
    outer, inner = _perm_of(n), _perm_of(n.args[0])
    if outer is None or inner is None or "swapaxes" not in (n.fn, n.args[0].fn):
        return None
    return _permuted(n.args[0].args[0], tuple(inner[k] for k in outer))


def _permuted(x: Expr, perm: tuple[int, ...]) -> Expr:
    """x with its axes permuted by perm, in the plainest form: x, a swapaxes, or a transpose."""
    rank = len(x.shape)
    moved = [k for k in range(rank) if perm[k] != k]
    if not moved:
        return x
    if len(moved) == 2:
        i, j = moved
        if (i, j) == (rank - 2, rank - 1):
            return call("swapaxes", x, axis1=-1, axis2=-2)
        return call("swapaxes", x, axis1=i, axis2=j)
    return call("transpose", x, axes=perm)


def transpose_as_swapaxes(n: Call) -> Expr | None:
    """transpose(x, p) = swapaxes(x, i, j) when p exchanges axes i and j and keeps the others.

    PyTorch's x.transpose(i, j); rank >= 3, where x.T is not defined."""
    perm = _perm_of(n)
    if n.fn != "transpose" or perm is None or len(n.shape) < 3:
        return None
    if sum(1 for k, p in enumerate(perm) if p != k) != 2:
        return None
    return _permuted(n.args[0], perm)


def last_axis_as_minus_one(n: Call) -> Expr | None:
    """sum(x, axis=r-1) = sum(x, axis=-1) for x of rank r >= 3, any reduction or expand_dims.

    (mean, var, logsumexp, max, min, norm; expand_dims' axis counts in the result): one name
    for the last axis, as the rest of a program writes it."""
    if n.fn not in KEEPDIMS + ("expand_dims",):
        return None
    axis = params_of(n)["axis"]
    rank = len(n.shape) if n.fn == "expand_dims" else len(n.args[0].shape)
    if rank < 3 or not isinstance(axis, int) or axis != rank - 1:
        return None
    return call(n.fn, n.args[0], **{**dict(n.params), "axis": -1})


# functions applied entry by entry, which commute with inserting length-1 axes
UNARY = ("exp", "log", "sqrt", "abs", "tanh", "sigmoid", "sin", "cos", "relu", "softplus")
UNARY += ("silu", "gelu", "gelu_tanh", "erf", "sign", "step", "log1p", "expm1", "logsigmoid")
REDUCING = ("sum", "mean", "var", "logsumexp", "max", "min")


def _keep_reductions(e: Expr, axes: tuple[int, ...]) -> Expr | None:
    """`e` with every reduction over `axes` given keepdims=True, when `e` is built entry by
    entry from such reductions and scalars alone; None otherwise."""
    if e.shape == ():
        return e
    if not isinstance(e, Call):
        return None
    if e.fn in REDUCING and not params_of(e)["keepdims"]:
        if _axes(e) != axes:
            return None
        return call(e.fn, e.args[0], **{**dict(e.params), "keepdims": True})
    elementwise = e.fn in ("add", "sub", "mul", "div", "neg") or (e.fn in UNARY and not e.params)
    if e.fn == "pow" and e.args[1].shape == ():
        elementwise = True
    if not elementwise or any(a.shape not in ((), e.shape) for a in e.args):
        return None
    args = [_keep_reductions(a, axes) for a in e.args]
    if any(a is None for a in args):
        return None
    return call(e.fn, *args, **dict(e.params))


def expand_dims_into_reductions(n: Call) -> Expr | None:
    """expand_dims(f(sum(x, axis=A), c), axis=A) = f(sum(x, axis=A, keepdims=True), c).

    For f applied entry by entry (+ - * / ** and elementwise functions) to reductions over A
    and scalars c: inserting length-1 axes commutes with f."""
    if n.fn != "expand_dims":
        return None
    (e,) = n.args
    if not isinstance(e, Call) or e.fn in REDUCING or e.shape == ():
        return None
    rank = len(n.shape)
    axis = params_of(n)["axis"]
    axes = tuple(sorted(a % rank for a in (axis if isinstance(axis, tuple) else (axis,))))
    out = _keep_reductions(e, axes)
    return out if out is not None and out.shape == n.shape else None


def ones_term_as_one(n: Call) -> Expr | None:
    """ones(S) + x = 1 + x and x - ones(S) = x - 1 when x alone has the shape of the sum.

    The number 1 broadcasts as ones(S) did (either side, + or -)."""
    a, b = n.args
    if _is(a, "ones") and b.shape == n.shape:
        return call(n.fn, Const(1), b)
    if _is(b, "ones") and a.shape == n.shape:
        return call(n.fn, a, Const(1))
    return None


def _without_ones(e: Expr) -> Expr | None:
    """The product `e` with one ones(...) factor taken out (of `*`, or a numerator of `/`)."""
    if _is(e, "mul"):
        a, b = e.args
        if _is(a, "ones"):
            return b
        if _is(b, "ones"):
            return a
        for i, side in enumerate((a, b)):
            inner = _without_ones(side)
            if inner is not None:
                return call("mul", inner, b) if i == 0 else call("mul", a, inner)
    if _is(e, "div"):
        inner = _without_ones(e.args[0])
        if inner is not None:
            return call("div", inner, e.args[1])
    return None


def drop_redundant_ones(n: Call) -> Expr | None:
    """a ± b * ones(S) / c = a ± b / c and b * ones(S) / c = b / c, when the shape allows.

    Broadcasting alone gives the result its shape (a fills it, or b and c do): ones(S) only
    multiplies by 1."""
    if n.fn in ("add", "sub"):
        a, b = n.args
        for i, (full, term) in enumerate(((a, b), (b, a))):
            if full.shape != n.shape:
                continue
            inner = _without_ones(term) if _is(term, "mul", "div") else None
            if inner is not None:
                return call(n.fn, full, inner) if i == 0 else call(n.fn, inner, full)
        return None
    if n.fn in ("mul", "div"):
        inner = _without_ones(n)
        if inner is not None and inner.shape == n.shape:
            return inner
    return None


def collect_across(n: Call) -> Expr | None:
    """(c x ± t) + d x = (c + d) x ± t and (c x ± t) - d x = (c - d) x ± t: like terms
    collect across a term between them."""
    from engine.derive.simplify import _coefficient

    a, b = n.args
    if not _is(a, "add", "sub") or isinstance(b, Const):
        return None
    first, t = a.args
    (c1, x1), (c2, x2) = _coefficient(first), _coefficient(b)
    if x1 != x2 or isinstance(x1, Const) or x1.shape != n.shape:
        return None
    c = c1 + c2 if n.fn == "add" else c1 - c2
    head = _zeros(x1.shape) if c == 0 else (x1 if c == 1 else Const(c) * x1)
    return call(a.fn, head, t)


RULES = (
    reduce_of_reduce,
    reduce_all_axes,
    squeeze_of_keepdims,
    centred_sum_is_zero,
    gather_broadcast_ones,
    add_negative_multiple,
    zero_array_absorbs,
    permute_of_permute,
    transpose_as_swapaxes,
    last_axis_as_minus_one,
    expand_dims_into_reductions,
    ones_term_as_one,
    drop_redundant_ones,
    collect_across,
)
