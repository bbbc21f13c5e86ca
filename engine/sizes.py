"""Size relations (`d = h * dh`) and the size expressions written in indices and shapes."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

import sympy

from engine.expr import Const, EngineError, Expr, Size

if TYPE_CHECKING:
    from engine.parser import Environment

MAX_RELATIONS = 32  # declared relations in one environment
MAX_RELATION_TEXT = 200  # characters in the right-hand side of one relation
MAX_SIZE_INTEGER = 10**6  # largest integer in a size expression (an index, a bound, a factor)
# largest integer in a relation: its sizes become array lengths, at the exact route's sizes too
# (as for a literal size in a type, engine.parser.MAX_LITERAL_DIM)
MAX_RELATION_INTEGER = 64
# A relation may not grow past 64**2 when every size is 8 (h * dh is 64 there, h**5 is 32768):
# the exact route builds SymPy arrays of these lengths.
GROWTH_PROBE, MAX_GROWTH = 8, 64**2
# The numeric route's sizes for the sizes a relation multiplies (h and dh in d = h * dh):
# distinct and small, so a product such as d stays near the other numeric sizes (24 = 4 * 6).
RELATION_NUMERIC_SIZES = (4, 6, 3, 5, 2, 7, 8, 9)


class SizeError(EngineError):
    """A size relation or size expression that is not in the language."""


def size_expression(
    node: ast.AST,
    lookup: Callable[[str], sympy.Expr],
    what: str,
    limit: int = MAX_SIZE_INTEGER,
) -> sympy.Expr:
    """An integer expression of sizes (`2*dh`, `d - 1`, `-1`): names, integers, +, - and *."""
    if isinstance(node, ast.Name):
        return lookup(node.id)
    if isinstance(node, ast.Constant):
        v = node.value
        if type(v) is not int:
            raise SizeError(f"{what}: {v!r} is not an integer")
        if abs(v) > limit:
            raise SizeError(f"{what}: integer {v} is too large (limit {limit})")
        return sympy.Integer(v)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = size_expression(node.operand, lookup, what, limit)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult):
        a = size_expression(node.left, lookup, what, limit)
        b = size_expression(node.right, lookup, what, limit)
        if isinstance(node.op, ast.Add):
            return a + b
        return a - b if isinstance(node.op, ast.Sub) else sympy.expand(a * b)
    raise SizeError(f"{what}: only sizes, integers, +, - and * are allowed")


def parse_size_text(text: str, lookup: Callable[[str], sympy.Expr], what: str) -> sympy.Expr:
    """`"h * dh"` -> h*dh, through `ast` and `size_expression` (never eval or sympify)."""
    if not isinstance(text, str) or not text.strip():
        raise SizeError(f"{what}: expected a size expression such as 'h * dh'")
    if len(text) > MAX_RELATION_TEXT:
        raise SizeError(f"{what}: too long ({len(text)} characters, limit {MAX_RELATION_TEXT})")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise SizeError(f"{what}: cannot read {text!r} (expected e.g. 'h * dh')") from None
    try:
        return size_expression(tree.body, lookup, what, MAX_RELATION_INTEGER)
    except RecursionError:
        raise SizeError(f"{what}: nested too deeply") from None


def relations_from_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """`['d=h*dh']` (the CLI's --size-rel) -> {'d': 'h*dh'}."""
    out: dict[str, str] = {}
    for item in pairs:
        name, eq, rhs = str(item).partition("=")
        if not eq or not name.strip():
            raise SizeError(f"--size-rel {item!r}: expected NAME=EXPRESSION, e.g. 'd=h*dh'")
        if name.strip() in out:
            raise SizeError(f"size relation for {name.strip()!r} given twice")
        out[name.strip()] = rhs.strip()
    return out


def declare_relations(env: Environment, relations: Mapping[str, str]) -> None:
    """Add `name = expression` relations to `env`: every later use of `name` (in a type such as
    `real[n, d]`, in `ones(d)`, as the scalar `d`) stands for the expression, so shapes agree
    symbolically (reshape of (n, d) into (n, h, dh) is checked as n*h*dh = n*h*dh) and the
    verifier chooses the free sizes and computes the related ones. The sizes on the right are
    declared as new size symbols; a relation may use the names of earlier relations."""
    from engine.parser import check_identifier

    if not isinstance(relations, Mapping):
        raise SizeError("sizes must be a table of name = 'expression', e.g. d = 'h * dh'")
    if len(relations) > MAX_RELATIONS:
        raise SizeError(f"too many size relations ({len(relations)}, limit {MAX_RELATIONS})")
    for name, text in relations.items():
        check_identifier(name, "size")
        if name in env.sizes or name in env.size_rels:
            raise SizeError(
                f"size relation {name!r}: {name!r} is already a size (relations come first, "
                "in the order they use each other)"
            )
        if isinstance(text, int) and not isinstance(text, bool):
            text = str(text)
        what = f"size relation {name} = {text!r}"

        def lookup(size: str, what: str = what, name: str = name) -> sympy.Expr:
            if size == name:
                raise SizeError(f"{what}: a size cannot be defined by itself")
            if size in env.size_rels:
                return env.size_rels[size]
            if size in env.vars or size in env.defs:
                raise SizeError(f"{what}: {size!r} is a variable, not a size")
            check_identifier(size, "size")
            from engine.expr import size_symbol

            return env.sizes.setdefault(size, size_symbol(size))

        value = sympy.expand(parse_size_text(text, lookup, what))
        if value.is_positive is False or not value.free_symbols and value < 1:
            raise SizeError(f"{what}: a size must be positive")
        probe = value.xreplace({s: sympy.Integer(GROWTH_PROBE) for s in value.free_symbols})
        if probe > MAX_GROWTH:
            raise SizeError(
                f"{what}: grows too fast ({probe} when every size is {GROWTH_PROBE}, "
                f"limit {MAX_GROWTH})"
            )
        env.size_rels[name] = value


def relation_numeric_sizes(env: Environment) -> dict[str, int]:
    """Small distinct numeric sizes for the sizes that relations combine (see
    RELATION_NUMERIC_SIZES); the other sizes keep the verifier's usual values."""
    used: set[str] = set()
    for value in env.size_rels.values():
        used.update(s.name for s in value.free_symbols)
    names = [s for s in env.sizes if s in used]
    table = RELATION_NUMERIC_SIZES
    return {s: table[i % len(table)] for i, s in enumerate(names)}


def size_expr(value: sympy.Expr) -> Expr:
    """A size expression as a formula (`h * dh` as Size(h) * Size(dh)), for `d` used as a scalar."""
    value = sympy.expand(value)
    if value.is_Integer:
        return Const(value)
    if value.is_Symbol:
        return Size(value.name)
    if value.is_Add:
        terms = [size_expr(t) for t in value.as_ordered_terms()]
        out = terms[0]
        for t in terms[1:]:
            out = out + t
        return out
    if value.is_Mul:
        factors = [size_expr(f) for f in value.as_ordered_factors()]
        out = factors[0]
        for f in factors[1:]:
            out = out * f
        return out
    if value.is_Pow and value.exp.is_Integer and value.exp > 0:
        return size_expr(value.base) ** Const(value.exp)
    raise SizeError(f"cannot use the size expression {value} as a scalar")
