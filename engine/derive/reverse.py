"""Symbolic reverse mode on whole vectors and matrices: cotangents built from the registry VJPs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy

from engine.derive.simplify import Rewriter, is_call, is_const, is_scalar, unref
from engine.expr import DERIVATIVE_FNS, Call, Const, EngineError, Expr, Ref, Var, call, map_calls
from engine.functions.base import params_of


class DeriveError(EngineError):
    """An expression the symbolic differentiator cannot handle."""


# ---------------------------------------------------------------- forward canonicalization


def _reduce_kw(node: Call) -> dict:
    """The axis/keepdims parameters of a reduction, as keywords to rebuild it."""
    return dict(node.params)


def _softmax_axis(reduction: Call) -> int | None:
    """The softmax axis a keepdims reduction stands for (None if it does not fit)."""
    x = reduction.args[0]
    p = params_of(reduction)
    if len(x.shape) == 1 and p["axis"] in (None, 0, -1):
        return -1
    if p["axis"] is not None and p["keepdims"]:
        return p["axis"]
    return None


def canonical_forward(e: Expr) -> Expr:
    """Rewrite the forward expression into forms with known compact VJPs.

    exp(x - logsumexp(x)) and exp(x) / sum(exp(x)) become softmax(x); x - logsumexp(x) and
    log(softmax(x)) become log_softmax(x); (a * b) / s with s a scalar becomes a * (b / s) when
    b / s is a LayerNorm or RMSNorm normalization. Named definitions are kept.
    """
    return map_calls(e, _forward_rule)


def _forward_rule(n: Call) -> Expr:
    if n.fn == "exp":
        x = unref(n.args[0])
        if is_call(x, "sub") and is_call(unref(x.args[1]), "logsumexp"):
            lse = unref(x.args[1])
            axis = _softmax_axis(lse)
            if lse.args[0] == x.args[0] and axis is not None:
                return _softmax("softmax", x.args[0], axis)
    if n.fn == "div":
        a, b = n.args
        b0 = unref(b)
        if is_call(unref(a), "exp") and is_call(b0, "sum") and is_call(unref(b0.args[0]), "exp"):
            x = unref(a).args[0]
            axis = _softmax_axis(b0)
            if unref(b0.args[0]).args[0] == x and axis is not None:
                return _softmax("softmax", x, axis)
        if is_call(a, "mul"):
            for keep, inner in ((a.args[0], a.args[1]), (a.args[1], a.args[0])):
                if normalization(inner / b) is not None:
                    return keep * (inner / b)
    if n.fn == "sub" and is_call(unref(n.args[1]), "logsumexp"):
        lse = unref(n.args[1])
        axis = _softmax_axis(lse)
        if lse.args[0] == n.args[0] and axis is not None:
            return _softmax("log_softmax", n.args[0], axis)
    if n.fn == "log" and is_call(unref(n.args[0]), "softmax"):
        sm = unref(n.args[0])
        return Call("log_softmax", sm.args, sm.params, sm.shape)
    return n


def name_normalizations(e: Expr, name_step: Callable[[str, Expr], Ref], rewriter: Rewriter) -> Expr:
    """Name each LayerNorm/RMSNorm value xhat in the forward tree (a step `xhat = ...`).

    Only a name: the derivative still comes from the registry's VJPs, and the rewriter, which
    learns the body, writes the backward terms through xhat where they contain it.
    """

    def name(n: Call) -> Expr:
        info = normalization(n)
        if info is None:
            return n
        stem = info.x.name if isinstance(info.x, Var) else "x"
        ref = name_step(stem + "hat", n)
        rewriter.defs.setdefault(n, ref)
        return ref

    return map_calls(e, name)


def _softmax(fn: str, x: Expr, axis: int) -> Expr:
    return call(fn, x) if axis in (-1, len(x.shape) - 1) else call(fn, x, axis=axis)


@dataclass(frozen=True)
class Normalization:
    """A recognized LayerNorm (x - mean(x)) / sqrt(var(x) + eps) or RMSNorm x / sqrt(ms + eps)."""

    kind: str  # "layernorm" or "rmsnorm"
    x: Expr
    denominator: Expr
    params: dict = field(default_factory=dict)  # axis/keepdims of the reductions
    eps: Expr | None = None


def normalization(e: Expr) -> Normalization | None:
    """Recognize a normalization layer's core, looking through named definitions."""
    e = unref(e)
    if not is_call(e, "div"):
        return None
    num, den = unref(e.args[0]), e.args[1]
    root = unref(den)
    if not is_call(root, "sqrt"):
        return None
    inside = unref(root.args[0])
    eps = None
    if is_call(inside, "add"):
        stat, eps = unref(inside.args[0]), inside.args[1]
        if not is_scalar(eps):
            return None
    else:
        stat = inside
    if is_call(stat, "var") and is_call(num, "sub") and is_call(unref(num.args[1]), "mean"):
        x, m = num.args[0], unref(num.args[1])
        if stat.args[0] == x and m.args[0] == x and stat.params == m.params:
            if _stat_fits(stat, e.shape):
                return Normalization("layernorm", x, den, _reduce_kw(stat), eps)
    if is_call(stat, "mean") and is_call(unref(stat.args[0]), "pow"):
        sq = unref(stat.args[0])
        if is_const(sq.args[1], 2) and sq.args[0] == e.args[0] and _stat_fits(stat, e.shape):
            return Normalization("rmsnorm", e.args[0], den, _reduce_kw(stat), eps)
    return None


def _stat_fits(stat: Call, shape: tuple) -> bool:
    p = params_of(stat)
    return p["axis"] is None or p["keepdims"]


# ---------------------------------------------------------------- reverse accumulation


@dataclass
class Backward:
    """The cotangents of a reverse pass, plus the intermediates it chose to name."""

    gradients: dict[str, Expr]
    steps: list[tuple[str, Expr]]


def roles_of(forward: Expr) -> dict[int, str]:
    """Conventional names of forward nodes, by id: P = softmax(S), xhat = normalized x."""
    roles: dict[int, str] = {}
    for n in forward.walk():
        info = normalization(n) if is_call(n, "div") else None
        if info is not None:
            roles.setdefault(id(n), (info.x.name if isinstance(info.x, Var) else "x") + "hat")
        if is_call(n, "softmax"):
            big = len(n.shape) >= 2  # a matrix, or a stack of them (one per head)
            roles.setdefault(id(n), "P" if big else "p")
            scores = n.args[0]
            # a masked softmax, softmax(where(mask, S, -inf)): the scores are S, not the masked
            # array, so dS names S's cotangent where(mask, ..., 0) (the mask shows once)
            if is_call(scores, "where") and isinstance(scores.args[2], Const):
                if scores.args[2].value == -sympy.oo:
                    scores = scores.args[1]
            if not isinstance(scores, Ref | Var):
                roles.setdefault(id(scores), "S" if big else "s")
    return roles


def _depends(nodes: list[Expr], names: set[str]) -> set[int]:
    dep: set[int] = set()
    for n in nodes:
        if isinstance(n, Var):
            if n.name in names:
                dep.add(id(n))
        elif any(id(c) in dep for c in n.children()):
            dep.add(id(n))
    return dep


def reverse(
    output: Expr,
    wrt: list[Var],
    seed: Expr,
    rewriter: Rewriter,
    name_step: Callable[[str, Expr], Ref] | None = None,
    roles: dict[int, str] | None = None,
    hints: dict[Expr, str] | None = None,
) -> dict[str, Expr]:
    """Cotangents of every `wrt` variable, given the output cotangent `seed`.

    Contributions are added up per node (by identity) in reverse topological order; each node's
    total is simplified before it is pulled back. The cotangent of a named definition `X` that
    is more than an atom is offered to `name_step` as `dX`, which may bind it as a program step.
    A node with a role (`roles`, by id: "S" for softmax logits, ...) leaves its cotangent in
    `hints` as "dS", a name for it should it be repeated.
    """
    nodes = list(output.walk())
    dep = _depends(nodes, {v.name for v in wrt})
    if id(output) not in dep:
        raise DeriveError("the expression does not depend on " + ", ".join(v.name for v in wrt))
    parts: dict[int, list[Expr]] = {id(output): [seed]}
    grads: dict[str, list[Expr]] = {}
    for node in reversed(nodes):
        contributions = parts.pop(id(node), None)
        if contributions is None or id(node) not in dep:
            continue
        g = rewriter.simplify(_total(contributions))
        if roles is not None and hints is not None and id(node) in roles and isinstance(g, Call):
            hints.setdefault(g, "d" + roles[id(node)])
        if isinstance(node, Var):
            grads.setdefault(node.name, []).append(g)
            continue
        if isinstance(node, Ref):
            if (
                name_step is not None
                and isinstance(g, Call)
                and _worth_a_name(node, g, dep, rewriter)
            ):
                g = name_step("d" + node.name, g)
            parts.setdefault(id(node.body), []).append(g)
            continue
        assert isinstance(node, Call)
        for target, ct in _pullback(node, g, dep):
            parts.setdefault(id(target), []).append(ct)
    out = {}
    for v in wrt:
        if v.name not in grads:
            raise DeriveError(f"the expression does not depend on {v.name}")
        out[v.name] = rewriter.simplify(_total(grads[v.name]))
    return out


def _size(e: Expr) -> int:
    """Nodes of `e` as written: a name counts as one."""
    if isinstance(e, Call):
        return 1 + sum(_size(a) for a in e.args)
    return 1


def _worth_a_name(node: Ref, g: Call, dep: set[int], rewriter: Rewriter) -> bool:
    """Name the cotangent dX of a definition X unless the next pullback cancels it away.

    A trial pullback through X's body with g written out is compared with one through the name
    dX: g is inlined only when the written-out result is smaller even than the one that holds
    the name, i.e. when the rewriter cancelled g away. The CE chain -y / p through
    p = softmax(z) gives p - y that way; dP = O @ V.T in attention stays named.
    """
    body = node.body
    if not isinstance(body, Call) or body.spec.vjp is None or body.fn in DERIVATIVE_FNS:
        return True
    placeholder = Ref("d" + node.name, g)

    def cost(ct: Expr) -> int:
        pulled = [rewriter.simplify(c) for _, c in _pullback(body, ct, dep)]
        return sum(_size(c) for c in pulled)

    return cost(g) >= cost(placeholder)


def _total(items: list[Expr]) -> Expr:
    total = items[0]
    for x in items[1:]:
        total = total + x
    return total


def _pullback(node: Call, g: Expr, dep: set[int]) -> list[tuple[Expr, Expr]]:
    """(child, cotangent) pairs for one node, from the registry's VJP rules."""
    if node.fn in DERIVATIVE_FNS:
        raise DeriveError(f"cannot differentiate through a nested {node.fn}()")
    spec = node.spec
    if spec.vjp is None:
        raise DeriveError(f"{node.fn}() has no derivative rule")
    out = []
    for i, arg in enumerate(node.args):
        if id(arg) in dep:
            out.append((arg, spec.vjp(node, g, i)))
    return out
