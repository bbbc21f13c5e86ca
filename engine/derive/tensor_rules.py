"""Rewrite rules for tensors of any rank: swapaxes, transpose(x, axes), einsum, tuple axes.

Each rule is a small named function whose docstring states its identity; tests/test_tensor.py
turns every one into a claim and checks it with the verifier. They join the rewriter's table
(`engine.derive.simplify.RULES`) through `tensor_rules`, which keeps the older rule of a
function for the cases these do not handle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from engine.expr import Call, Expr, call
from engine.functions.base import normalize_axis, params_of

Rule = Callable[[Call], Expr | None]


def applies_to(*fns: str) -> Callable[[Rule], Rule]:
    """A rule of the named functions: on any other call it does not apply (returns None)."""

    def wrap(rule: Rule) -> Rule:
        @functools.wraps(rule)
        def apply(n: Call) -> Expr | None:
            return rule(n) if n.fn in fns else None

        return apply

    return wrap


def _pair(n: Call) -> tuple[int, int]:
    rank = len(n.shape)
    a = normalize_axis(n.param("axis1"), rank, "swapaxes")
    b = normalize_axis(n.param("axis2"), rank, "swapaxes")
    return (a, b) if a <= b else (b, a)


def _is(e: Expr, fn: str) -> bool:
    return isinstance(e, Call) and e.fn == fn


def _swap_last(x: Expr) -> Expr:
    """The batched transpose of x: x.T for a matrix, swapaxes(x, -1, -2) above rank 2."""
    return x.T if len(x.shape) == 2 else call("swapaxes", x, axis1=-1, axis2=-2)


@applies_to("swapaxes")
def swapaxes_same_axis(n: Call) -> Expr | None:
    """swapaxes(x, a, a) = x."""
    a, b = _pair(n)
    return n.args[0] if a == b else None


@applies_to("swapaxes")
def swapaxes_involution(n: Call) -> Expr | None:
    """swapaxes(swapaxes(x, a, b), a, b) = x (a swap undoes itself)."""
    (x,) = n.args
    if _is(x, "swapaxes") and _pair(x) == _pair(n):
        return x.args[0]
    return None


@applies_to("swapaxes")
def swapaxes_of_matrix(n: Call) -> Expr | None:
    """swapaxes(A, 0, 1) = A.T for a matrix A."""
    (x,) = n.args
    return x.T if len(x.shape) == 2 and _pair(n) == (0, 1) else None


@applies_to("swapaxes")
def swapaxes_of_product(n: Call) -> Expr | None:
    """swapaxes(A @ B, -1, -2) = swapaxes(B, -1, -2) @ swapaxes(A, -1, -2) (batched (AB)ᵀ = BᵀAᵀ)
    for A and B of rank 2 or more."""
    (x,) = n.args
    rank = len(n.shape)
    if not _is(x, "matmul") or _pair(n) != (rank - 2, rank - 1):
        return None
    a, b = x.args
    if len(a.shape) < 2 or len(b.shape) < 2:
        return None
    return _swap_last(b) @ _swap_last(a)


@applies_to("swapaxes")
def swapaxes_of_scaled(n: Call) -> Expr | None:
    """swapaxes(s * A) = s * swapaxes(A), swapaxes(A / s) = swapaxes(A) / s, swapaxes(-A) =
    -swapaxes(A), for a scalar s."""
    (x,) = n.args
    params = dict(n.params)
    if _is(x, "neg"):
        return -call("swapaxes", x.args[0], **params)
    if _is(x, "mul") or _is(x, "div"):
        a, b = x.args
        if x.fn == "mul" and a.shape == () and b.shape:
            return a * call("swapaxes", b, **params)
        if b.shape == () and a.shape:
            inner = call("swapaxes", a, **params)
            return inner * b if x.fn == "mul" else inner / b
    return None


@applies_to("einsum")
def einsum_pull_scalar(n: Call) -> Expr | None:
    """einsum(s, ..., c * X, ...) = c * einsum(s, ..., X, ...), and likewise X / c and -X, for a
    scalar c (einsum is linear in each operand)."""
    for i, x in enumerate(n.args):
        if not x.shape:
            continue
        inner, factor, op = None, None, None
        if _is(x, "neg"):
            inner = x.args[0]
        elif _is(x, "mul") and x.args[0].shape == () and x.args[1].shape:
            inner, factor, op = x.args[1], x.args[0], "mul"
        elif _is(x, "mul") and x.args[1].shape == () and x.args[0].shape:
            inner, factor, op = x.args[0], x.args[1], "mul"
        elif _is(x, "div") and x.args[1].shape == () and x.args[0].shape:
            inner, factor, op = x.args[0], x.args[1], "div"
        if inner is None:
            continue
        args = list(n.args)
        args[i] = inner
        out = call("einsum", *args, **dict(n.params))
        if op is None:
            return -out
        return factor * out if op == "mul" else out / factor
    return None


def _reduced(n: Call) -> tuple[int, ...] | None:
    """The axes a reduction (or expand_dims) names, normalized and sorted; None for all."""
    axis = params_of(n)["axis"]  # with the default filled in: expand_dims(x) is axis=0
    if axis is None:
        return None
    rank = len(n.shape) if n.fn == "expand_dims" else len(n.args[0].shape)
    return tuple(sorted(a % rank for a in (axis if isinstance(axis, tuple) else (axis,))))


def _axis_param(axes: tuple[int, ...]) -> int | tuple[int, ...]:
    return axes[0] if len(axes) == 1 else axes


@applies_to("sum", "mean")
def sum_of_sum_keepdims(n: Call) -> Expr | None:
    """sum(sum(x, axis=a, keepdims=True), axis=b, keepdims=True) = sum(x, axis=a ∪ b,
    keepdims=True) (and for mean: every entry is averaged over the same count), a, b disjoint."""
    (x,) = n.args
    if not (_is(x, n.fn) and x.param("keepdims") and n.param("keepdims")):
        return None
    if n.param("axis") is None:
        return None
    inner, outer = _reduced(x), _reduced(n)
    if inner is None or outer is None or set(inner) & set(outer):
        return None
    axes = tuple(sorted(inner + outer))
    return call(n.fn, x.args[0], axis=_axis_param(axes), keepdims=True)


@applies_to("sum", "mean")
def sum_over_unit_axes(n: Call) -> Expr | None:
    """sum(x, axis=A) = squeeze(x, A) (x itself with keepdims) when every axis in A has
    length 1: a sum of one entry (also for mean)."""
    (x,) = n.args
    axes = _reduced(n)
    if axes is None or any(x.shape[a] != 1 for a in axes):
        return None
    if n.param("keepdims"):
        return x
    return call("squeeze", x, axis=_axis_param(axes))


@applies_to("expand_dims")
def expand_dims_of_reduction(n: Call) -> Expr | None:
    """expand_dims(sum(x, axis=A), axis=A) = sum(x, axis=A, keepdims=True), for any reduction
    (sum, mean, var, logsumexp); and expand_dims(squeeze(x, A), A) = x."""
    (x,) = n.args
    new = _reduced(n)
    if _is(x, "squeeze"):  # squeeze(x) without an axis removes every length-1 axis
        from engine.functions.tensor import squeezed_axes

        if squeezed_axes(x.args[0].shape, x.param("axis")) == new:
            return x.args[0]
        return None
    if not (isinstance(x, Call) and x.fn in ("sum", "mean", "var", "logsumexp")):
        return None
    if x.param("keepdims") or _reduced(x) != new:
        return None
    return call(x.fn, x.args[0], **dict(x.params), keepdims=True)


@applies_to("einsum")
def einsum_identity(n: Call) -> Expr | None:
    """einsum("ij->ij", X) = X (one operand, its letters unchanged and none repeated)."""
    from engine.functions.tensor import parse_subscripts

    sub = parse_subscripts(n.param("subscripts"), len(n.args))
    if len(n.args) == 1 and sub.inputs[0] == sub.output:
        return n.args[0]
    return None


@applies_to("einsum")
def einsum_scalar_operand(n: Call) -> Expr | None:
    """einsum(",ij->ij", c, X) = c * einsum("ij->ij", X): a scalar operand (no letters) is a
    factor of every term."""
    from engine.functions.tensor import parse_subscripts

    sub = parse_subscripts(n.param("subscripts"), len(n.args))
    if len(n.args) < 2:
        return None
    for i, letters in enumerate(sub.inputs):
        if not letters:
            rest = [a for k, a in enumerate(n.args) if k != i]
            spec = ",".join(s for k, s in enumerate(sub.inputs) if k != i) + "->" + sub.output
            return n.args[i] * call("einsum", *rest, subscripts=spec)
    return None


@applies_to("squeeze")
def squeeze_of_expand_dims(n: Call) -> Expr | None:
    """squeeze(expand_dims(x, A), A) = x."""
    (x,) = n.args
    if not _is(x, "expand_dims"):
        return None
    from engine.functions.tensor import squeezed_axes

    return x.args[0] if squeezed_axes(x.shape, n.param("axis")) == _reduced(x) else None


@applies_to("expand_dims")
def expand_dims_of_scalar(n: Call) -> Expr | None:
    """expand_dims(c, axis) = c * ones(1, ..., 1) for a scalar c."""
    (x,) = n.args
    if x.shape:
        return None
    ones = call("ones", dims=n.shape)
    return ones if _is_one(x) else x * ones


def _is_one(e: Expr) -> bool:
    from engine.expr import Const

    return isinstance(e, Const) and e.value == 1


@applies_to("transpose")
def transpose_of_matrix(n: Call) -> Expr | None:
    """transpose(A, (1, 0)) = A.T for a matrix A."""
    (x,) = n.args
    return x.T if len(x.shape) == 2 and _perm(n) == (1, 0) else None


def _perm(n: Call) -> tuple[int, ...] | None:
    from engine.functions.ops import permutation

    axes = n.param("axes")
    return None if axes is None else permutation(axes, len(n.shape), "transpose")


@applies_to("transpose")
def transpose_identity(n: Call) -> Expr | None:
    """transpose(x, (0, 1, ..., r-1)) = x."""
    perm = _perm(n)
    return n.args[0] if perm is not None and perm == tuple(range(len(perm))) else None


@applies_to("transpose")
def transpose_compose(n: Call) -> Expr | None:
    """transpose(transpose(x, p), q) = transpose(x, (p[q[0]], p[q[1]], ...)): permutations
    compose (x.T is the reversed permutation of a matrix)."""
    (x,) = n.args
    if not _is(x, "transpose"):
        return None
    rank = len(n.shape)
    inner = _perm(x) or tuple(reversed(range(rank)))
    outer = _perm(n) or tuple(reversed(range(rank)))
    if _perm(x) is None and _perm(n) is None:
        return None  # x.T.T: the rank-2 rule
    return call("transpose", x.args[0], axes=tuple(inner[k] for k in outer))


SWAPAXES_RULES: tuple[Rule, ...] = (
    swapaxes_same_axis,
    swapaxes_involution,
    swapaxes_of_matrix,
    swapaxes_of_product,
    swapaxes_of_scaled,
)
TRANSPOSE_RULES: tuple[Rule, ...] = (transpose_identity, transpose_of_matrix, transpose_compose)
EINSUM_RULES: tuple[Rule, ...] = (einsum_pull_scalar, einsum_identity, einsum_scalar_operand)
REDUCTION_RULES: tuple[Rule, ...] = (sum_of_sum_keepdims, sum_over_unit_axes)
EXPAND_RULES: tuple[Rule, ...] = (expand_dims_of_reduction, expand_dims_of_scalar)
SQUEEZE_RULES: tuple[Rule, ...] = (squeeze_of_expand_dims,)


def _first(rules: tuple[Rule, ...]) -> Rule:
    def apply(n: Call) -> Expr | None:
        for rule in rules:
            out = rule(n)
            if out is not None:
                return out
        return None

    return apply


def tensor_rules(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The rewriter's rules for swapaxes and transpose(x, axes); a transpose without axes (or of
    one without axes) keeps the older rule, and a tuple-axis reduction has no local rule."""
    old_transpose = rules.get("transpose")
    transpose_axes = _first(TRANSPOSE_RULES)

    def transpose(n: Call) -> Expr | None:
        (x,) = n.args
        if n.params or (_is(x, "transpose") and x.params):
            return transpose_axes(n)
        return old_transpose(n) if old_transpose is not None else None

    out: dict[str, Rule] = {
        "swapaxes": _first(SWAPAXES_RULES),
        "transpose": transpose,
        "einsum": _first(EINSUM_RULES),
        "squeeze": _first(SQUEEZE_RULES),
    }
    for fn in ("sum", "mean", "var", "logsumexp"):
        own = REDUCTION_RULES if fn in ("sum", "mean") else ()
        out[fn] = _then(own, _skip_tuple_axes(rules[fn]) if fn in rules else None)
    out["expand_dims"] = _then(EXPAND_RULES, rules.get("expand_dims"))
    return out


def _then(first: tuple[Rule, ...], rest: Rule | None) -> Rule:
    """These rules first, then the older rule of the function (if any)."""
    mine = _first(first)

    def apply(n: Call) -> Expr | None:
        out = mine(n)
        if out is None and rest is not None:
            out = rest(n)
        return out

    return apply


def _skip_tuple_axes(rule: Rule) -> Rule:
    def apply(n: Call) -> Expr | None:
        return None if isinstance(n.param("axis"), tuple) else rule(n)

    return apply


ALL_RULES: tuple[Rule, ...] = (
    SWAPAXES_RULES + TRANSPOSE_RULES + EINSUM_RULES + REDUCTION_RULES + EXPAND_RULES + SQUEEZE_RULES
)
