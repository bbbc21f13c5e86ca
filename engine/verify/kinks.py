"""Deciding a kink's branch exactly where the exact route's rounding cannot.

A kinked SymPy function (relu, abs, step, sign, maximum, clip, max of many, where, the sort's
order statistic and slot, argmax: its class's `mp_compared`) takes its branch from the order of
the values it compares. The exact route evaluates at 70 digits with a bound on each value's
rounding error; where two compared values lie within their bounds of each other (clip(D, -1,
1 + sigmoid(s) ** 2) with D - 1 = 1e-87 and sigmoid(s) ** 2 = 1e-106: both 1 at 70 digits),
rounding has not decided the order. `ExactOrder` then decides it in SymPy at the rational point
(exact for rational arithmetic, else by evalf to a strictly achieved precision) and gives
surrogate arguments in that order (ranks), from which the function's branch, partials and (for a
jump) value are taken. A tie stays a tie: the kink's convention applies.
"""

from __future__ import annotations

from typing import Any

import mpmath
import sympy

from engine.expr import EngineError
from engine.functions.elementwise import compared_with_zero

# |a - b| must exceed SETTLED times the two rounding bounds for rounding to decide an order
SETTLED = 4
# the working precision (digits) of SymPy's evalf when it decides an order rounding could not;
# a difference it finds no digit of at DECIDE_MAX_DIGITS working digits is a tie
DECIDE_DIGITS = 15
DECIDE_MAX_DIGITS = 2000
DECIDE_MAX_NODES = 20000  # subexpressions SymPy evaluates at the point to decide one order


class Undecided(Exception):
    """An order this point cannot decide exactly (a compared value depends on a number that is
    not exact, such as a placeholder's derivative value)."""


def compared(func) -> Any:
    """The `mp_compared` of a kinked function (None for a smooth one)."""
    return compared_with_zero if func is sympy.Abs else getattr(func, "mp_compared", None)


def jumps(func) -> bool:
    """Whether a kinked function's value jumps at its kink (step, sign, where, slot, argmax)."""
    return bool(getattr(func, "mp_jump", False))


def binary(r: Any) -> bool:
    """Whether the Rational r is exact at the working precision (a power-of-two denominator and
    a numerator within the mantissa): the points are floats, so their entries are."""
    return (
        isinstance(r, sympy.Rational)
        and r.q & (r.q - 1) == 0
        and int(r.p).bit_length() <= mpmath.mp.prec
    )


class ExactOrder:
    """Decides the orders rounding leaves open at one rational point (`exact`: symbol ->
    Rational; a symbol not in it is not exact there)."""

    def __init__(self, exact: dict):
        self.exact = exact
        self.at_point: dict[int, sympy.Basic] = {}  # nodes evaluated in SymPy at that point

    @classmethod
    def of_substitutions(cls, subs: dict) -> ExactOrder:
        """At the exact entries of a substitution (its placeholders' Float values are not)."""
        return cls({s: v for s, v in subs.items() if v.is_Rational})

    def surrogates(self, node: sympy.Basic, a: list, err: list) -> list | None:
        """`node`'s arguments with the compared ones replaced by their ranks in the exact order
        (0 staying 0 where a function compares with 0), when rounding leaves an order open (the
        values `a` within SETTLED times their bounds `err`); None when rounding settles it."""
        indices, with_zero = compared(node.func)(len(a))
        items = [(a[i], err[i], i) for i in indices]
        if with_zero:
            items.append((mpmath.mpf(0), mpmath.mpf(0), None))

        def unsettled(p: int, q: int) -> bool:
            (vp, ep, _), (vq, eq, _) = items[p], items[q]
            return ep + eq > 0 and not abs(vp - vq) > SETTLED * (ep + eq)

        # neighbours in value order settled settle every pair (the gaps add up), so the common
        # case costs a sort, not all pairs of a max over hundreds of entries
        ranked = sorted(range(len(items)), key=lambda p: items[p][0])
        if not any(unsettled(p, q) for p, q in zip(ranked, ranked[1:], strict=False)):
            return None
        n = len(items)
        exprs = [sympy.Integer(0) if i is None else node.args[i] for _, _, i in items]

        def sign(p: int, q: int) -> int:
            if unsettled(p, q):
                with sympy.evaluate(True):
                    return exact_sign(self.at(exprs[p]) - self.at(exprs[q]))
            d = items[p][0] - items[q][0]
            return (d > 0) - (d < 0)

        signs = {(p, q): sign(p, q) for p in range(n) for q in range(p + 1, n)}

        def below(p: int, q: int) -> bool:
            return signs[(p, q)] < 0 if p < q else signs[(q, p)] > 0

        rank = [sum(1 for q in range(n) if q != p and below(q, p)) for p in range(n)]
        zero = rank[-1] if with_zero else 0
        out = list(a)
        for p, (_, _, i) in enumerate(items):
            if i is not None:
                out[i] = mpmath.mpf(rank[p] - zero)
        return out

    def at(self, expr: sympy.Basic) -> sympy.Basic:
        """`expr` at the rational point, evaluated by SymPy (exact for rational arithmetic),
        one node of the DAG at a time (xreplace would walk the tree, exponential in depth)."""
        nodes = topological(expr)
        if sum(1 for n in nodes if id(n) not in self.at_point) > DECIDE_MAX_NODES:
            raise EngineError(
                "a kink's branch (relu, clip, max, sort, ...) is within rounding of its tie at "
                "the sampled inputs, and its arguments are too large to decide it exactly"
            )
        with sympy.evaluate(True):
            for n in nodes:
                if id(n) in self.at_point:
                    continue
                if n.is_Symbol:
                    if n not in self.exact:
                        raise Undecided
                    out = self.exact[n]
                elif not n.args:
                    out = n
                else:
                    out = n.func(*(self.at_point[id(c)] for c in n.args))
                self.at_point[id(n)] = out
        return self.at_point[id(expr)]


def exact_sign(d: sympy.Basic) -> int:
    """The sign of a number SymPy has at a rational point: exact where it is rational, else by
    evalf to a strictly achieved precision. A value evalf finds no digit of at DECIDE_MAX_DIGITS
    working digits is a tie (tanh(s) against (e^2s - 1) / (e^2s + 1)); an EngineError where it
    is not a real number."""
    if d.is_Rational:
        return int(d.p > 0) - int(d.p < 0)
    try:
        v = d.evalf(DECIDE_DIGITS, maxn=DECIDE_MAX_DIGITS, strict=True)
    except sympy.core.evalf.PrecisionExhausted:
        return 0
    except (ValueError, TypeError):
        v = None
    if v is None or not v.is_Number or not v.is_real:
        raise EngineError(
            "a kink's branch (relu, clip, max, sort, ...) is within rounding of its tie at the "
            "sampled inputs, and the exact check could not decide it"
        )
    return 0 if v.is_zero else 1 if v > 0 else -1


def topological(root: sympy.Basic) -> list[sympy.Basic]:
    """Distinct subexpressions of `root` (by identity: the exact route's expressions are
    unevaluated, so not hash-consed, and comparing them by value walks their trees), children
    before parents."""
    order: list[sympy.Basic] = []
    seen: set[int] = set()
    stack: list[tuple[sympy.Basic, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for a in node.args:
            if id(a) not in seen:
                stack.append((a, False))
    return order
