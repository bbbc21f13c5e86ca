"""Rewrites a tree into the numerically stable, CSE-friendly forms that code export emits.

softmax becomes exp(x - max) / sum with the max, shifted logits, exponentials and their sum as
separate nodes, so log(softmax) (as log_softmax), logsumexp and the softmax itself share them
once common subexpressions are merged. The losses become sums, a full sum of a product becomes
one `_vdot`, and a double transpose disappears. Internal functions start with an underscore.
"""

from __future__ import annotations

import sympy

from engine.export.shrink import (
    pull_out_of_reduction,
    small_first,
    total_of_product,
    two_pass_var,
)
from engine.expr import Call, Const, Expr, Ref, Var, call
from engine.functions.base import params_of
from engine.functions.elementwise import GELU_TANH_C
from engine.types import TYPES

HALF = Const(sympy.Rational(1, 2))


def strip_refs(e: Expr) -> Expr:
    while isinstance(e, Ref):
        e = e.body
    return e


def _reduced_shape(shape, axis: int | None, keepdims: bool):
    if axis is None:
        return tuple(sympy.Integer(1) for _ in shape) if keepdims else ()
    axes = {a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,))}
    if keepdims:
        return tuple(sympy.Integer(1) if k in axes else d for k, d in enumerate(shape))
    return tuple(d for k, d in enumerate(shape) if k not in axes)


def amax(x: Expr, axis: int | None, keepdims: bool = True) -> Expr:
    """max of x along axis (all axes when None), keeping the reduced axes unless told not to."""
    shape = _reduced_shape(x.shape, axis, keepdims)
    return Call("_amax", (x,), (("axis", axis), ("keepdims", keepdims)), shape)


def squeeze(x: Expr, axis: int | None, shape) -> Expr:
    return Call("_squeeze", (x,), (("axis", axis),), shape)


def vdot(a: Expr, b: Expr) -> Expr:
    return Call("_vdot", (a, b), (), ())


def _sum_keep(x: Expr, axis: int | None) -> Expr:
    return (
        call("sum", x, keepdims=True) if axis is None else call("sum", x, axis=axis, keepdims=True)
    )


def drop_ones(e: Expr) -> Expr:
    """e without its ones(...) factors, for an operand of a sum whose other side is full-shape.

    ones(n, d) * m only broadcasts m to (n, d); a + ones(n, d) * m = a + m when a has the shape
    (n, d), by broadcasting. Products and quotients of such factors drop them too; a derived
    LayerNorm gradient would otherwise build and multiply a full (n, d) array of ones.
    """
    if not isinstance(e, Call):
        return e
    if e.fn == "mul":
        left, right = e.args
        if isinstance(left, Call) and left.fn == "ones":
            return drop_ones(right)
        if isinstance(right, Call) and right.fn == "ones":
            return drop_ones(left)
        dl, dr = drop_ones(left), drop_ones(right)
        return e if (dl, dr) == (left, right) else dl * dr
    if e.fn == "div":
        dl = drop_ones(e.args[0])
        return e if dl == e.args[0] else dl / e.args[1]
    if e.fn == "neg":
        dx = drop_ones(e.args[0])
        return e if dx == e.args[0] else -dx
    return e


def share_definitions(roots: list[Expr]) -> list[Expr]:
    """Every subtree equal to a definition's body becomes the definition itself (one name).

    A derived program's gradients read `t1` where its value reads `X @ W1`: the same array,
    but two different trees, so the emitter would compute both and everything built on them
    (GELU's 0.5 * (1 + erf(...)) twice). A Ref evaluates as its body, so the swap is exact.
    """
    bodies: dict[Expr, Ref] = {}
    for root in roots:
        for node in root.walk():
            if isinstance(node, Ref) and isinstance(node.body, Call):
                bodies.setdefault(node.body, node)
    if not bodies:
        return roots
    memo: dict[tuple[Expr, bool], Expr] = {}

    def swap(e: Expr, top: bool = True) -> Expr:
        key = (e, top)
        if key in memo:
            return memo[key]
        out = e
        if isinstance(e, Call):
            if top and e in bodies:
                out = swap(bodies[e])
            else:
                args = tuple(swap(a) for a in e.args)
                out = e if args == e.args else Call(e.fn, args, e.params, e.shape)
        elif isinstance(e, Ref):
            body = swap(e.body, top=False)
            out = e if body == e.body else Ref(e.name, body)
        memo[key] = out
        return out

    return [swap(r) for r in roots]


class Lowering:
    """Lowers many roots with one memo, so equal subtrees stay equal (and merge in CSE)."""

    def __init__(self) -> None:
        self.memo: dict[Expr, Expr] = {}

    def __call__(self, expr: Expr) -> Expr:
        for node in expr.walk():
            if node not in self.memo:
                self.memo[node] = self._lower(node)
        return self.memo[expr]

    # ------------------------------------------------------------ stable pieces

    def shifted(self, x: Expr, axis: int | None) -> tuple[Expr, Expr]:
        """(x - max, sum(exp(x - max))) along axis, both keeping the reduced axes.

        For a vector the max and the sum are scalars (0-d broadcasts, and is cheaper).
        """
        if len(x.shape) == 1:
            sh = x - amax(x, None, keepdims=False)
            return sh, call("sum", call("exp", sh))
        sh = x - amax(x, axis)
        return sh, _sum_keep(call("exp", sh), axis)

    def softmax(self, x: Expr, axis: int) -> Expr:
        sh, s = self.shifted(x, axis)
        return call("exp", sh) / s

    def log_softmax(self, x: Expr, axis: int) -> Expr:
        sh, s = self.shifted(x, axis)
        return sh - call("log", s)

    def log_of(self, original: Expr, lowered: Expr) -> Expr:
        """log of a value, reading through definitions for log(softmax) and log(sigmoid)."""
        src = strip_refs(original)
        if isinstance(src, Call) and src.fn == "softmax":
            return self.log_softmax(self.memo[src.args[0]], params_of(src)["axis"])
        if isinstance(src, Call) and src.fn == "sigmoid":
            return -call("softplus", -self.memo[src.args[0]])
        return call("log", lowered)

    def cross_entropy_of_softmax(self, p: Expr, y: Expr) -> Expr | None:
        """CE(softmax(x), y) for y whose rows sum to 1 (simplex, onehot): sum(log s) - y . (x - m).

        -sum(y * ((x - m) - log s)) with sum(y, axis=-1) = 1 per row, so the log-sum term needs
        no pass over y. The type is part of the contract: the program's gradient (p - y) holds
        only for such y, and the verifier samples only such y.
        """
        src, target = strip_refs(p), strip_refs(y)
        if not (isinstance(src, Call) and src.fn == "softmax" and isinstance(target, Var)):
            return None
        x = src.args[0]
        if not TYPES[target.vtype].sums_to_one or target.shape != x.shape:
            return None
        axis = params_of(src)["axis"]
        if axis % len(x.shape) != len(x.shape) - 1:
            return None
        sh, s = self.shifted(self.memo[x], axis)
        log_s = call("log", s)
        return (call("sum", log_s) if log_s.shape else log_s) - vdot(self.memo[y], sh)

    @staticmethod
    def total(x: Expr) -> Expr:
        """sum of every entry: by `total_of_product` when a factor is broadcast (a bias, a
        per-feature scale), else as one fused dot product when x is a product of equal shapes."""
        if isinstance(x, Call) and x.fn == "mul" and x.shape:
            a, b = x.args
            for u, v in ((a, b), (b, a)):
                split = total_of_product(u, v, vdot) if u.shape == x.shape else None
                if split is not None:
                    return split
            if a.shape == b.shape:
                return vdot(a, b)
        return call("sum", x)

    def reduce(self, node: Call):
        """Builds node's reduction (its axis, keepdims) of another array; a full sum as `total`."""
        params = dict(node.params)

        def build(fn: str, x: Expr) -> Expr:
            if fn == "sum" and not params.get("keepdims") and params.get("axis") is None:
                return self.total(x)
            return call(fn, x, **params)

        return build

    # ------------------------------------------------------------ the rules

    def _lower(self, node: Expr) -> Expr:
        if isinstance(node, Ref):
            return Ref(node.name, self.memo[node.body])
        if not isinstance(node, Call):
            return node
        orig = node.args
        a = tuple(self.memo[x] for x in orig)
        fn = node.fn
        p = params_of(node) if fn in _WITH_PARAMS else {}
        if fn == "transpose" and node.params:  # transpose(x, axes): np.transpose / permute
            return Call("_permute", a, node.params, node.shape)
        if fn == "transpose":
            (x,) = a
            if len(x.shape) < 2:
                return x
            if isinstance(x, Call) and x.fn == "transpose":
                return x.args[0]
            return call("transpose", x)
        if fn == "softmax":
            return self.softmax(a[0], p["axis"])
        if fn == "log_softmax":
            return self.log_softmax(a[0], p["axis"])
        if fn == "logsumexp":
            x, axis, keep = a[0], p["axis"], p["keepdims"]
            sh, s = self.shifted(x, axis)
            out = call("log", s) + sh.args[1]  # log(sum(exp(x - m))) + m
            if len(x.shape) == 1:  # m and s are scalars here
                return call("expand_dims", out, axis=0) if keep else out
            return out if keep else squeeze(out, axis, node.shape)
        if fn == "log":
            return self.log_of(orig[0], a[0])
        if fn == "cross_entropy":
            fast = self.cross_entropy_of_softmax(orig[0], orig[1])
            return fast if fast is not None else -self.total(a[1] * self.log_of(orig[0], a[0]))
        if fn == "entropy":
            return -self.total(a[0] * self.log_of(orig[0], a[0]))
        if fn == "kl":
            return self.total(a[0] * call("log", a[0] / a[1]))
        if fn == "silu":
            return a[0] * call("sigmoid", a[0])
        if fn == "gelu":
            x = a[0]
            return x * (HALF * (1 + call("erf", x / call("sqrt", Const(2)))))
        if fn == "gelu_tanh":
            x = a[0]
            k = call("sqrt", 2 / Const(sympy.pi))
            t = call("tanh", k * (x + Const(GELU_TANH_C) * x**3))
            return x * (HALF * (1 + t))
        if fn == "var":
            return two_pass_var(a[0], p["axis"], p["keepdims"])
        if fn in ("sum", "mean"):
            pulled = pull_out_of_reduction(fn, a[0], p["axis"], p["keepdims"], self.reduce(node))
            if pulled is not None:
                return pulled
        if fn == "sum" and p["axis"] is None and not p["keepdims"]:
            return self.total(a[0])
        if fn in ("mul", "div"):
            regrouped = small_first(fn, a[0], a[1], node.shape)
            if regrouped is not None:
                return regrouped
        if fn in ("add", "sub"):
            x, y = a
            if x.shape == node.shape:
                y = drop_ones(y)
            elif y.shape == node.shape:
                x = drop_ones(x)
            if (x, y) != a:
                return Call(fn, (x, y), node.params, node.shape)
        if a == orig:
            return node
        return Call(fn, a, node.params, node.shape)


_WITH_PARAMS = frozenset({"softmax", "log_softmax", "logsumexp", "sum", "mean", "var"})
