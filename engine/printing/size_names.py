"""Sizes printed under the name a size relation gives them: `d` for `h * dh` when `d = h * dh`.

The parser expands a relation's name into its value (shapes hold `dh*h`), so a derived program
would print `reshape(dO, (n, dh*h))` where the reader wrote `(n, d)`. While a program prints
(`named_sizes`), a size expression equal to a declared relation prints as its name; the text still
parses back to the same tree (the parser expands the name again).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping

import sympy

from engine.expr import Call, Const, Expr, Size

_NAMES: contextvars.ContextVar[dict[sympy.Expr, str] | None] = contextvars.ContextVar(
    "size_names", default=None
)
_ARITHMETIC = {"mul", "add", "sub", "neg", "pow"}


@contextlib.contextmanager
def named_sizes(relations: Mapping[str, sympy.Expr]) -> Iterator[None]:
    """Print the sizes of `relations` (name -> value) under their names inside the block."""
    token = _NAMES.set({sympy.expand(v): k for k, v in relations.items()})
    try:
        yield
    finally:
        _NAMES.reset(token)


def dim_name(d: sympy.Expr) -> str | None:
    """The relation name of the size expression `d`, if one is declared and printing."""
    names = _NAMES.get()
    return names.get(sympy.expand(d)) if names and isinstance(d, sympy.Expr) else None


def _value(e: Expr) -> sympy.Expr | None:
    """A formula made of sizes and integers as a SymPy size expression, else None."""
    if isinstance(e, Size):
        return e.symbol
    if isinstance(e, Const):
        return e.value if e.value.is_Integer else None
    if not isinstance(e, Call) or e.fn not in _ARITHMETIC or e.shape:
        return None
    args = [_value(a) for a in e.args]
    if any(a is None for a in args):
        return None
    if e.fn == "neg":
        return -args[0]
    a, b = args
    return {"mul": a * b, "add": a + b, "sub": a - b, "pow": a**b}[e.fn]


def expr_name(e: Expr) -> str | None:
    """The relation name of a product or sum of sizes written as a formula (`dh * h` -> `d`)."""
    if not _NAMES.get() or not isinstance(e, Call):
        return None
    value = _value(e)
    return dim_name(value) if value is not None else None


def dim_text(d: sympy.Expr) -> str:
    """One entry of a shape (`dims=`) as text."""
    return dim_name(d) or str(d)


def dim_latex(d: sympy.Expr) -> str:
    """One entry of a shape as LaTeX."""
    from engine.printing.latex import size_latex

    name = dim_name(d)
    if name:
        return size_latex(name)
    if not isinstance(d, sympy.Expr):
        return str(d)
    # dh as d_{h} (never `dh`, which reads as d times h), in products too
    return sympy.latex(d, symbol_names={s: size_latex(s.name) for s in d.free_symbols})
