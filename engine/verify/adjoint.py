"""Exact derivatives at a point: reverse mode over a SymPy expression's DAG at mpmath precision.

The exact route needs the value of grad(f, x) at rational points, not a symbolic derivative:
`sympy.diff` of a two-head attention loss takes minutes (each Mul's derivative copies the tree),
while one reverse sweep over the DAG of f's distinct subexpressions costs about two evaluations.
Only elementary rules of SymPy's own node types are used (sum, product and power rules, exp, log,
...), so the route stays independent of the engine's VJP registry. A node type without a rule
raises `NoAdjoint`, and the caller falls back to `sympy.diff`.

A kinked node (relu, clip, max, step, sort, ...) takes its branch from the order of the values
it compares. On a DAG with such nodes the sweep keeps forward rounding bounds, and an order they
leave open is decided exactly (engine/verify/kinks.py); without the rational point to decide it
at, such a node raises NoAdjoint.
"""

from __future__ import annotations

from typing import Any

import mpmath
import sympy

from engine.functions.elementwise import Absolute, Relu, Sign, Step
from engine.functions.probability import XLogY
from engine.verify.kinks import ExactOrder, Undecided, binary, compared, jumps, topological

_POS_INF, _NEG_INF = sympy.oo, -sympy.oo  # singletons, compared by identity


class NoAdjoint(Exception):
    """An expression this sweep cannot differentiate at this point."""


def _value(node: sympy.Basic, vals: dict, point: dict) -> Any:
    if node.is_Symbol:
        if node not in point:
            raise NoAdjoint
        return point[node]
    if node.is_Rational:
        return mpmath.mpf(node.p) / node.q
    if node in (sympy.oo, -sympy.oo):  # `inf` in a claim (where(mask, S, -inf))
        return mpmath.inf if node == sympy.oo else -mpmath.inf
    if node is sympy.nan or node is sympy.zoo:  # inf - inf, 1/0: no value, left to sympy.diff
        raise NoAdjoint
    if node.is_Number or node.is_NumberSymbol:
        return mpmath.mpf(sympy.Float(node, mpmath.mp.dps + 5)._mpf_)
    a = [vals[id(x)] for x in node.args]
    if node.is_Add:
        return mpmath.fsum(a)
    if node.is_Mul:
        return mpmath.fprod(a)
    if node.is_Pow:
        b, e = a
        return b ** int(node.args[1]) if node.args[1].is_Integer else mpmath.power(b, e)
    f = _rule(node.func)
    if f is None:
        raise NoAdjoint
    return f[0](*a)


def _partials(node: sympy.Basic, v: Any, a: list) -> list:
    """d node / d arg_i at the point, for each argument."""
    if node.is_Add:
        return [1] * len(a)
    if node.is_Mul:
        out = []
        for i in range(len(a)):
            out.append(mpmath.fprod(a[:i] + a[i + 1 :]))
        return out
    if node.is_Pow:
        b, e = a
        if node.args[1].is_number:
            return [e * mpmath.power(b, e - 1) if b != 0 or e >= 1 else _no(), 0]
        if b <= 0:
            raise NoAdjoint
        return [e * mpmath.power(b, e - 1), v * mpmath.log(b)]
    f = _rule(node.func)
    return f[1](v, *a)


def _rule(func) -> tuple | None:
    """(value, partials) of a SymPy function: from the table, or its own `mp_value` and
    `mp_partials` (the selection functions of engine/functions/select.py carry theirs)."""
    f = _FUNCTIONS.get(func)
    if f is None and hasattr(func, "mp_value"):
        return func.mp_value, lambda v, *a: [0 if p is None else p for p in func.mp_partials(v, *a)]
    return f


def _no():
    raise NoAdjoint


def _xlogy_value(x, y):
    return mpmath.mpf(0) if x == 0 else x * mpmath.log(y)


def _xlogy_partials(v, x, y):
    if y == 0:
        raise NoAdjoint
    return [mpmath.log(y), x / y]


_FUNCTIONS = {
    sympy.exp: (mpmath.exp, lambda v, x: [v]),
    sympy.log: (mpmath.log, lambda v, x: [1 / x]),
    sympy.tanh: (mpmath.tanh, lambda v, x: [1 - v * v]),
    sympy.sin: (mpmath.sin, lambda v, x: [mpmath.cos(x)]),
    sympy.cos: (mpmath.cos, lambda v, x: [-mpmath.sin(x)]),
    sympy.erf: (mpmath.erf, lambda v, x: [2 / mpmath.sqrt(mpmath.pi) * mpmath.exp(-x * x)]),
    # the kinked functions, with PyTorch's subgradient at the kink (as their SymPy forms' fdiff)
    Absolute: (abs, lambda v, x: [mpmath.sign(x)]),
    sympy.Abs: (abs, lambda v, x: [mpmath.sign(x)]),
    Relu: (lambda x: x if x > 0 else mpmath.mpf(0), lambda v, x: [1 if x > 0 else 0]),
    Step: (lambda x: mpmath.mpf(1 if x > 0 else 0), lambda v, x: [0]),
    Sign: (lambda x: mpmath.mpf(mpmath.sign(x)), lambda v, x: [0]),
    XLogY: (_xlogy_value, _xlogy_partials),
}


def _finite(x: Any) -> bool:
    return not isinstance(x, mpmath.mpc) and mpmath.isfinite(x)


class _Rounding:
    """Forward rounding bounds, kept only for a DAG with kinked nodes: u |v| per node plus
    |partial| x each argument's bound (an infinite bound where a partial has no value), and the
    kinked nodes' branches decided exactly where those bounds leave them open."""

    def __init__(self, exact: dict | None):
        # symbol -> Rational, the point, for deciding an order exactly (none: it is Undecided)
        self.order = ExactOrder(exact or {})
        self.u = mpmath.eps * 4
        self.err: dict[int, Any] = {}
        self.partials: dict[int, list] = {}  # the forward pass's partials, reused backward

    def smooth(self, node: sympy.Basic, v: Any, a: list) -> None:
        if node.is_Symbol and binary(self.order.exact.get(node)):
            self.err[id(node)] = mpmath.mpf(0)  # a float's exact value (the points are floats)
            return
        if not _finite(v):  # an infinity (a claim's `inf`) is exact, as in exact.py
            self.err[id(node)] = mpmath.mpf(0)
            return
        if not node.args or node.is_Number or node.is_NumberSymbol:
            self.err[id(node)] = self.u * abs(v)
            return
        try:
            parts = _partials(node, v, a)
        except NoAdjoint:
            self.err[id(node)] = mpmath.inf
            return
        self.partials[id(node)] = parts
        err = self.u * abs(v)
        for child, p in zip(node.args, parts, strict=True):
            if p != 0:
                err += abs(p) * self.err[id(child)]
        self.err[id(node)] = err if _finite(err) else mpmath.inf

    def kinked(self, node: sympy.Basic, a: list) -> tuple[Any, list] | None:
        """(value, partials) from surrogate arguments in the exact order, when rounding leaves
        the order of the compared values open; None when it settles it."""
        err = [self.err[id(c)] for c in node.args]
        indices, _ = compared(node.func)(len(a))
        f = _rule(node.func)
        jump = jumps(node.func)
        # a jump's value is exact once its branch is decided (where's is its chosen argument's);
        # the continuous kinked functions are 1-Lipschitz in what they compare
        carried = mpmath.fsum(e for i, e in enumerate(err) if not jump or i not in indices)
        try:
            surrogate = self.order.surrogates(node, a, err)
        except Undecided:
            raise NoAdjoint from None
        at_surrogate = None if surrogate is None else f[0](*surrogate)
        v = at_surrogate if jump and surrogate is not None else f[0](*a)
        self.err[id(node)] = (self.u * abs(v) if _finite(v) else 0) + carried
        if surrogate is None:
            return None
        return v, f[1](at_surrogate, *surrogate)


def gradient_at(
    f: sympy.Basic, wrt: list[sympy.Symbol], point: dict, exact: dict | None = None
) -> list[tuple[Any, Any]]:
    """The gradient of the scalar `f` with respect to the symbols `wrt`, at `point` (symbol ->
    mpmath number), at the current mpmath precision, each entry with a bound on its rounding
    error: eps times the sum over paths of |adjoint x partial| (a cancellation of large
    contributions, as in the gradient of sum(softmax(z)) = 0, shows as a large bound).

    `exact` (symbol -> Rational, the same point) decides a kink's branch that rounding leaves
    open (the module docstring); without it such a node raises NoAdjoint."""
    order = topological(f)
    # a claim that writes `inf` has infinite intermediate values (where(mask, S, -inf) before a
    # softmax: exp(-inf) = 0 with derivative 0); any NaN, or an infinite or NaN gradient entry
    # or bound, still leaves the point to sympy.diff (looked up on the DAG: `f.has` walks the tree)
    infinite = any(node is _POS_INF or node is _NEG_INF for node in order)
    rounding = _Rounding(exact) if any(compared(n.func) for n in order if n.args) else None
    vals: dict[int, Any] = {}  # all three tables keyed by id(node), as in _topological
    decided: dict[int, list] = {}  # partials of kinked nodes whose branch was decided exactly
    for node in order:
        surrogate = None
        if rounding is not None and node.args and compared(node.func):
            surrogate = rounding.kinked(node, [vals[id(x)] for x in node.args])
        if surrogate is not None:
            v, decided[id(node)] = surrogate
        else:
            v = _value(node, vals, point)
        if isinstance(v, mpmath.mpc):
            if v.imag != 0:
                raise NoAdjoint
            v = v.real
        if not mpmath.isfinite(v) and not (infinite and mpmath.isinf(v)):
            raise NoAdjoint
        vals[id(node)] = v
        if rounding is not None and surrogate is None and not compared(node.func):
            rounding.smooth(node, v, [vals[id(x)] for x in node.args])
    adj: dict[int, Any] = {id(f): mpmath.mpf(1)}
    mag: dict[int, Any] = {id(f): mpmath.mpf(1)}
    for node in reversed(order):
        g = adj.get(id(node))
        if g is None or not node.args or node.is_Number or node.is_NumberSymbol:
            continue
        m = mag[id(node)]
        a = [vals[id(x)] for x in node.args]
        parts = decided.get(id(node))
        if parts is None and rounding is not None:
            parts = rounding.partials.get(id(node))
        if parts is None:
            parts = _partials(node, vals[id(node)], a)
        for child, p in zip(node.args, parts, strict=True):
            if p != 0:
                k = id(child)
                adj[k] = adj.get(k, 0) + g * p
                mag[k] = mag.get(k, 0) + m * abs(p)
    eps = mpmath.eps * len(order)
    zero = mpmath.mpf(0)
    # a symbol may occur as several objects (distinct Symbol instances of one name): sum them
    ids: dict[sympy.Basic, list[int]] = {}
    for node in order:
        if node.is_Symbol:
            ids.setdefault(node, []).append(id(node))
    grads = [sum((adj.get(k, zero) for k in ids.get(s, ())), zero) for s in wrt]
    mags = [sum((mag.get(k, zero) for k in ids.get(s, ())), zero) for s in wrt]
    finite = all(mpmath.isfinite(x) for x in grads + mags)
    if infinite and not finite:
        raise NoAdjoint
    return [(g, eps * m) for g, m in zip(grads, mags, strict=True)]
