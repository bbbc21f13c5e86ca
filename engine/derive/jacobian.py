"""Jacobians from the VJP rules: pull back a symbolic cotangent u, then read off the matrix.

The reverse pass gives E(u) = J^T u, linear in u. Pushing the identity through E with the
forward rules of the linear operations alone gives J^T (shape (n, m)); its transpose is J.
"""

from __future__ import annotations

from engine.derive.reverse import DeriveError
from engine.expr import Call, Const, Expr, Ref, Var, call
from engine.functions.base import params_of

U_NAME = "u__cotangent"


def cotangent_var(m) -> Var:
    """The symbolic output cotangent u (a name the formula language cannot spell)."""
    return Var(U_NAME, "real", (m,))


def linearize(e: Expr, m) -> Expr:
    """d e / d u as an array of shape e.shape + (m,), for e linear in u."""
    memo: dict[int, Expr | None] = {}

    def t(n: Expr) -> Expr | None:
        if id(n) in memo:
            return memo[id(n)]
        out = _rule(n, t, m)
        if out is not None:
            out = _fit(out, n.shape + (m,))
        memo[id(n)] = out
        return out

    out = t(e)
    if out is None:
        # no term of the pullback reads u: the Jacobian is zero (the function is constant in
        # the variable, as ((x - mean(x)) * sum(x - mean(x))) ** 2, whose sum is 0), as the
        # gradient of such a function is (sum(x - mean(x)) * x gives 0 * ones(n, n))
        return Const(0) * call("ones", dims=tuple(e.shape) + (m,))
    return out


def _fit(tangent: Expr, shape: tuple) -> Expr:
    """Broadcast a tangent up to `shape` (a constant summand may widen the result)."""
    if tangent.shape == tuple(shape):
        return tangent
    ones = call("ones", dims=tuple(shape[:-1]) + (1,)) if len(shape) > 1 else None
    if ones is None:
        raise DeriveError("cannot form this Jacobian symbolically")
    out = ones * tangent
    if out.shape != tuple(shape):
        raise DeriveError("cannot form this Jacobian symbolically")
    return out


def _col(b: Expr) -> Expr:
    """b with a trailing axis, to scale each column of a tangent."""
    return b if b.shape == () else call("expand_dims", b, axis=-1)


def _rule(n: Expr, t, m) -> Expr | None:
    if isinstance(n, Var):
        return call("eye", dims=(m,)) if n.name == U_NAME else None
    if isinstance(n, Ref):
        return t(n.body)
    if not isinstance(n, Call) or not n.args:
        return None
    ts = [t(a) for a in n.args]
    if all(x is None for x in ts):
        return None
    fn = n.fn
    if fn in ("add", "sub"):
        a, b = ts
        if a is None:
            return b if fn == "add" else -b
        if b is None:
            return a
        return a + b if fn == "add" else a - b
    if fn == "neg":
        return -ts[0]
    if fn in ("mul", "div"):
        a, b = n.args
        if ts[1] is not None and fn == "mul":
            a, b, ta = b, a, ts[1]
            if ts[0] is not None:
                raise DeriveError("the cotangent pass is not linear (a product of two terms)")
        elif ts[1] is not None:
            raise DeriveError("the cotangent pass is not linear (a division by a cotangent)")
        else:
            ta = ts[0]
        return ta * _col(b) if fn == "mul" else ta / _col(b)
    if fn in ("sum", "mean"):
        (x,) = n.args
        p = params_of(n)
        axes = range(len(x.shape)) if p["axis"] is None else [p["axis"] % len(x.shape)]
        out = ts[0]
        for ax in sorted(axes, reverse=True):
            out = call("sum", out, axis=ax, keepdims=p["keepdims"])
        if fn == "mean":
            from engine.functions.reductions import count

            out = out / count(n)
        return out
    if fn == "expand_dims":
        axis = params_of(n)["axis"] % len(n.shape)
        return call("expand_dims", ts[0], axis=axis)
    if fn == "transpose" and len(n.shape) <= 1:
        return ts[0]
    if fn == "matmul":
        a, b = n.args
        if ts[0] is None and len(b.shape) == 1:
            return a @ ts[1]
        if ts[1] is None and len(a.shape) == 1:
            return b.T @ ts[0] if len(b.shape) == 2 else b @ ts[0]
    if fn in (
        "getitem",
        "concat",
        "stack",
        "reshape",
        "pad",
    ):  # structure: linear, act on leading axes
        return _structure_tangent(n, ts, m)
    raise DeriveError(f"cannot form the Jacobian through {fn}() symbolically")


def _structure_tangent(n: Call, ts: list, m) -> Expr:
    """The tangent (trailing axis m) of a slice, concat, stack or reshape: the same operation on
    the leading axes; an argument without a tangent contributes zeros."""
    from engine.functions.structure import zeros

    if n.fn == "getitem":
        return call("getitem", ts[0], **dict(n.params))
    if n.fn == "reshape":
        return call("reshape", ts[0], dims=tuple(n.shape) + (m,))
    if n.fn == "pad":
        axis = params_of(n)["axis"] % len(n.shape)
        return call("pad", ts[0], dims=params_of(n)["dims"], axis=axis)
    parts = [z if z is not None else zeros(a.shape + (m,)) for a, z in zip(n.args, ts, strict=True)]
    return call(n.fn, *parts, axis=params_of(n)["axis"] % len(n.shape))
