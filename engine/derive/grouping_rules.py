"""Terms over one divisor are written over it once: `g + a / s - b / s` is `g + (a - b) / s`.

LayerNorm's backward is textbook as `(dA - mean(dA) - A * mean(dA * A)) / sigma`, but a residual
stream adds a term of its own in front (`dX = G + ...`), and the two-term common-denominator rule
of engine.derive.simplify never sees the three quotients side by side. The rule here flattens a
sum, finds a divisor that two or more of its terms share, and writes those terms over it once,
positive terms first. tests/test_simplify_rules.py checks it as an identity with the verifier.
"""

from __future__ import annotations

import sympy

from engine.expr import Call, Const, Expr, call


def _terms(e: Expr, sign: int = 1) -> list[tuple[int, Expr]]:
    """The signed terms of a sum: a + b - c is [(1, a), (1, b), (-1, c)]."""
    if isinstance(e, Call) and e.fn in ("add", "sub"):
        a, b = e.args
        return _terms(a, sign) + _terms(b, sign if e.fn == "add" else -sign)
    if isinstance(e, Call) and e.fn == "neg":
        return _terms(e.args[0], -sign)
    return [(sign, e)]


def _signed_sum(parts: list[tuple[sympy.Expr, Expr]]) -> Expr:
    """c1 t1 + c2 t2 + ... written with `-` for negative coefficients, positive terms first."""
    from engine.derive.simplify import from_monomial, monomial

    ordered = [p for p in parts if p[0] > 0] + [p for p in parts if not p[0] > 0]
    out: Expr | None = None
    for c, t in ordered:
        _, num, den = monomial(t)
        if out is None:
            out = from_monomial(c, num, den)
        elif c > 0:
            out = out + from_monomial(c, num, den)
        else:
            out = out - from_monomial(-c, num, den)
    assert out is not None
    return out


def group_common_divisor(n: Call) -> Expr | None:
    """r + a / w + b / w = r + (a + b) / w: the terms of a sum that divide by w, over w once."""
    from engine.derive.simplify import monomial

    terms = _terms(n)
    if len(terms) < 3:  # two quotients alone: the simplifier's common-denominator rule
        return None
    split = [(s, monomial(t)) for s, t in terms]
    seen: list[Expr] = []
    for _, (_, _, den) in split:
        for w in den:
            if not isinstance(w, Const) and w not in seen:
                seen.append(w)
    from engine.derive.simplify import from_monomial

    for w in seen:
        over = [i for i, (_, (_, _, den)) in enumerate(split) if w in den]
        if len(over) < 2 or len(over) == len(split):
            continue
        grouped: list[tuple[sympy.Expr, Expr]] = []
        for i in over:
            s, (c, num, den) = split[i]
            rest = list(den)
            rest.remove(w)
            grouped.append((s * c, from_monomial(sympy.Integer(1), num, rest)))
        others = [
            (s * c, from_monomial(sympy.Integer(1), num, den))
            for i, (s, (c, num, den)) in enumerate(split)
            if i not in over
        ]
        inner = _signed_sum(grouped)
        quotient = inner / w
        head = _signed_sum(others)
        out = call("add", head, quotient)
        if out.shape != n.shape:
            continue
        return out
    return None
