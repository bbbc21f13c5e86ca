"""Text printer: a tree back to formula-language source that the parser reads again."""

from __future__ import annotations

import sympy

from engine.expr import Call, Const, Expr, Ref, Size, Var
from engine.functions.base import PREC_ATOM, PREC_MUL, PREC_NEG, PREC_POSTFIX, PREC_POW


def const_text(value: sympy.Expr) -> str:
    if value == sympy.pi:
        return "pi"
    if value in (sympy.oo, -sympy.oo):  # IEEE infinity (select area)
        return "inf" if value == sympy.oo else "-inf"
    if value.is_Integer:
        return str(value)
    if value.is_Rational:
        # A finite decimal prints as a decimal; anything else as a quotient.
        p, q = int(value.p), int(value.q)
        q2 = q
        for f in (2, 5):
            while q2 % f == 0:
                q2 //= f
        if q2 == 1 and len(str(float(value))) < 18:
            text = repr(float(value))
            return text[:-2] if text.endswith(".0") else text
        return f"{p}/{q}"
    return str(value)


def precedence(e: Expr) -> int:
    if isinstance(e, Const):
        v = e.value
        if v.is_Rational and not v.is_Integer and "/" in const_text(v):
            return PREC_MUL
        return PREC_NEG if v.is_negative else PREC_ATOM
    if isinstance(e, Call):
        return e.spec.precedence
    return PREC_ATOM


def text_precedence(e: Expr) -> int:
    """Binding strength in the text form: a function call is an atom whatever its LaTeX."""
    if isinstance(e, Call) and (not e.spec.infix or (e.spec.infix == ".T" and e.params)):
        return PREC_ATOM
    return precedence(e)


def _mixes_products(parent: Call, left: Expr) -> bool:
    """A matrix product beside a Hadamard product of arrays (same precedence level in Python)."""
    if not isinstance(left, Call):
        return False
    if parent.fn == "matmul" and left.fn in ("mul", "div"):
        return all(a.shape for a in left.args)
    return parent.fn == "mul" and left.fn == "matmul" and bool(parent.args[1].shape)


def to_text(e: Expr) -> str:
    """Formula-language source for `e` (definitions print as their names)."""
    if isinstance(e, Var | Size):
        return e.name
    if isinstance(e, Ref):
        return e.name
    if isinstance(e, Const):
        return const_text(e.value)
    assert isinstance(e, Call)

    def sub(child: Expr, prec: int) -> str:
        text = to_text(child)
        return f"({text})" if text_precedence(child) < prec else text

    spec = e.spec
    if spec.text is not None:
        return spec.text(e, sub)
    if spec.infix == ".T" and not e.params:
        return sub(e.args[0], PREC_POSTFIX + 1) + ".T"
    if spec.name == "neg":
        return "-" + sub(e.args[0], PREC_NEG + 1)
    if spec.infix and spec.infix != ".T":
        a, b = e.args
        if spec.name == "pow":
            return f"{sub(a, PREC_POW + 1)} ** {sub(b, PREC_NEG)}"
        left_prec = spec.precedence
        left = sub(a, left_prec)
        if _mixes_products(e, a) and not left.startswith("("):
            # `P * dS @ K` means `(P * dS) @ K` in Python, but few readers know that: say it.
            left = f"({left})"
        return f"{left} {spec.infix} {sub(b, left_prec + 1)}"
    string_param = getattr(spec, "string_param", None)
    parts = [f'"{v}"' for k, v in e.params if k == string_param]  # einsum("ij,jk->ik", ...)
    parts += [to_text(a) for a in e.args]
    for k, v in e.params:
        if k == "dims":
            parts.extend(str(d) for d in v)
        elif k in spec.positional:  # swapaxes(x, -1, -2), transpose(x, (0, 2, 1))
            parts.append(str(v))
        elif k != string_param:
            parts.append(f"{k}={v}")
    return f"{spec.name}({', '.join(parts)})"
