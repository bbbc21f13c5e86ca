"""Whitelist parser: formula-language text to expression trees, via `ast`, never `eval`."""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import sympy

from engine.expr import (
    Call,
    Const,
    EngineError,
    Expr,
    Ref,
    Size,
    Var,
    call,
    size_names,
    size_symbol,
)
from engine.functions import REGISTRY
from engine.index_type import INDEX, IndexVar  # integer labels (issue 8)
from engine.sizes import SizeError
from engine.types import TYPES

MAX_TEXT = 4000  # characters in one formula
MAX_NODES = 1500  # syntax nodes in one formula
MAX_LITERAL_DIM = 64  # largest integer size written literally (use a size symbol beyond)
MAX_EXPONENT = 64  # largest constant exponent
MAX_MAGNITUDE_DIGITS = 300  # a constant power may not exceed 10**300
MAX_CONSTANT_EXPONENT = 4096  # largest exponent of a number (no variables, no sizes)
MAX_EXACT_DIGITS = 50_000  # digits of a number's power as an exact rational (0.999 ** 4096: 28672)
# Nested constant powers multiply: ((s ** 64) ** 64) ** 64 is s ** 262144, which the exact check
# must raise a rational to. The product of nested constant exponents is capped here.
MAX_NESTED_EXPONENT = MAX_EXPONENT**2
MAX_RANK = 4
MAX_DECLARATIONS = 10_000  # variables plus definitions in one environment
# Tensors (issue 8): parameters that take a tuple of axes, and einsum's operands in a formula.
TUPLE_PARAMS = frozenset({"axis", "axes"})
MAX_EINSUM_OPERANDS = 3

PUBLIC_FUNCTIONS = frozenset(name for name, f in REGISTRY.items() if f.public)
SIZE_FUNCTIONS = frozenset({"eye", "ones", "tril", "triu"})
DERIVATIVES = frozenset({"grad", "jacobian", "hessian"})
RESERVED = PUBLIC_FUNCTIONS | {"pi", "split", "inf"}
LIST_FUNCTIONS = frozenset({"concat", "stack"})  # take a list of arrays, as in the array API


class ParseError(EngineError):
    """Formula text that is not in the language."""


@dataclass
class Environment:
    """The names a formula may use: variables, let-bound definitions and size symbols."""

    vars: dict[str, Var] = field(default_factory=dict)
    defs: dict[str, Ref] = field(default_factory=dict)
    sizes: dict[str, sympy.Symbol] = field(default_factory=dict)
    # declared size relations (d = h * dh): the name stands for the expression (engine.sizes)
    size_rels: dict[str, sympy.Expr] = field(default_factory=dict)

    def names(self) -> set[str]:
        return set(self.vars) | set(self.defs) | set(self.sizes) | set(self.size_rels)

    def __contains__(self, name: str) -> bool:
        return (
            name in self.vars or name in self.defs or name in self.sizes or name in self.size_rels
        )


_TYPE_RE = re.compile(r"^\s*([A-Za-z_]\w*)\s*(?:\[(.*)\])?\s*$", re.DOTALL)
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifier(name: str, what: str) -> None:
    if not isinstance(name, str) or not _IDENT_RE.match(name) or len(name) > 40:
        raise ParseError(f"{what} name {name!r} is not a valid identifier")
    if name.startswith("__") or keyword.iskeyword(name):
        raise ParseError(f"{what} name {name!r} is not allowed")
    if name in RESERVED:
        raise ParseError(f"{what} name {name!r} is reserved (a function or constant)")


def parse_type(name: str, text: str, env: Environment) -> Var:
    """`real[n, d]` -> Var(name, 'real', (n, d)); new size symbols are added to `env`."""
    if not isinstance(text, str):
        raise ParseError(f"variable {name!r}: its type must be a string such as 'real[n]'")
    m = _TYPE_RE.match(text)
    if not m:
        raise ParseError(
            f"variable {name!r}: cannot read type {text!r} (expected e.g. 'real[n, d]')"
        )
    tname, dims_text = m.group(1), m.group(2)
    vtype = TYPES.get(tname)
    if vtype is None:
        raise ParseError(f"variable {name!r}: unknown type {tname!r} (known: {', '.join(TYPES)})")
    dims: list[sympy.Expr] = []
    if dims_text is not None:
        parts = [p.strip() for p in dims_text.split(",")]
        if parts == [""]:
            raise ParseError(f"variable {name!r}: empty shape '[]'; write no brackets for a scalar")
        for part in parts:
            if part.isascii() and part.isdigit():
                value = int(part)
                if not 1 <= value <= MAX_LITERAL_DIM:
                    raise ParseError(
                        f"variable {name!r}: size {part} is out of range 1..{MAX_LITERAL_DIM}; "
                        "use a size symbol"
                    )
                dims.append(sympy.Integer(value))
            elif part in env.size_rels:
                dims.append(env.size_rels[part])
            else:
                check_identifier(part, "size")
                if part in env.vars or part in env.defs or part == name:
                    raise ParseError(f"variable {name!r}: size {part!r} is already a variable name")
                env.sizes.setdefault(part, size_symbol(part))
                dims.append(env.sizes[part])
    if len(dims) > MAX_RANK:
        raise ParseError(f"variable {name!r}: rank {len(dims)} is above the limit {MAX_RANK}")
    if vtype.square and (len(dims) != 2 or dims[0] != dims[1]):
        raise ParseError(
            f"variable {name!r}: type {tname!r} needs a square matrix, e.g. '{tname}[n, n]'"
        )
    if len(dims) < vtype.min_rank:
        raise ParseError(
            f"variable {name!r}: type {tname!r} needs at least one axis, e.g. '{tname}[n]'"
        )
    if tname == INDEX:  # integer labels: the last size is the bound of the entries, not an axis
        return IndexVar(name, tuple(dims[:-1]), dims[-1])
    return Var(name, tname, tuple(dims))


def build_environment(
    vars: Mapping[str, str],
    defs: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    sizes: Mapping[str, str] | None = None,
) -> Environment:
    """Declare size relations (name -> 'h * dh', see engine.sizes), then variables (name -> type
    text), then let-bind definitions in order."""
    env = Environment()
    if sizes:
        from engine.sizes import declare_relations

        try:
            declare_relations(env, sizes)
        except SizeError as e:
            raise ParseError(str(e)) from None
    if not isinstance(vars, Mapping):
        raise ParseError("vars must be a table of name = 'type'")
    if len(vars) > MAX_DECLARATIONS:
        raise ParseError(f"too many variables ({len(vars)}, limit {MAX_DECLARATIONS})")
    for name, text in vars.items():
        check_identifier(name, "variable")
        if name in env.sizes or name in env.size_rels:
            raise ParseError(f"variable {name!r} is already a size symbol")
        env.vars[name] = parse_type(name, text, env)
    items = defs.items() if isinstance(defs, Mapping) else (defs or [])
    for name, text in items:
        check_identifier(name, "definition")
        if len(env.vars) + len(env.defs) >= MAX_DECLARATIONS:
            raise ParseError(f"too many variables and definitions (limit {MAX_DECLARATIONS})")
        if name in env:
            raise ParseError(f"definition {name!r}: the name is already taken")
        try:
            body = parse_formula(text, env)
        except EngineError as e:
            raise ParseError(f"definition {name!r}: {e}") from None
        env.defs[name] = Ref(name, body)
    return env


def parse_formula(text: str, env: Environment) -> Expr:
    """Parse one expression of the formula language."""
    tree = _parse_ast(text)
    if isinstance(tree.body, ast.Compare):
        if not all(isinstance(op, ast.Eq) for op in tree.body.ops):
            raise ParseError("comparisons inside an expression not allowed in a formula")
        raise ParseError("'==' is only allowed once, between the two sides of an equation")
    return _Builder(env, text.strip()).build(tree.body)


def parse_equation(text: str, env: Environment) -> tuple[Expr, Expr]:
    """Parse `lhs == rhs`."""
    tree = _parse_ast(text)
    body = tree.body
    if not (
        isinstance(body, ast.Compare) and len(body.ops) == 1 and isinstance(body.ops[0], ast.Eq)
    ):
        raise ParseError("an equation needs exactly one '==' between its two sides")
    b = _Builder(env, text.strip())
    return b.build(body.left), b.build(body.comparators[0])


# ---------------------------------------------------------------- inequality claims
RELATIONS = {ast.Eq: "==", ast.LtE: "<=", ast.GtE: ">=", ast.Lt: "<", ast.Gt: ">"}


def parse_claim(text: str, env: Environment) -> tuple[Expr, str, Expr]:
    """Parse a claim `lhs REL rhs` with REL one of == <= >= < > (an inequality holds entry by
    entry, over every entry); returns (lhs, relation, rhs)."""
    tree = _parse_ast(text)
    body = tree.body
    if not isinstance(body, ast.Compare) or len(body.ops) != 1:
        raise ParseError(
            "a claim needs exactly one relation ('==', '<=', '>=', '<' or '>') between its two "
            "sides"
        )
    relation = RELATIONS.get(type(body.ops[0]))
    if relation is None:
        raise ParseError("a claim's relation must be one of '==', '<=', '>=', '<', '>'")
    b = _Builder(env, text.strip())
    return b.build(body.left), relation, b.build(body.comparators[0])


def _parse_ast(text: str) -> ast.Expression:
    if not isinstance(text, str):
        raise ParseError("a formula must be text")
    if len(text) > MAX_TEXT:
        raise ParseError(f"formula is too long ({len(text)} characters, limit {MAX_TEXT})")
    if not text.strip():
        raise ParseError("empty formula")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        where = f" at column {e.offset}" if e.offset else ""
        raise ParseError(f"syntax error{where}: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError, OverflowError) as e:
        raise ParseError(f"cannot parse formula: {type(e).__name__}") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ParseError(f"formula is too large ({count} syntax nodes, limit {MAX_NODES})")
    return tree


_BINOPS = {
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "div",
    ast.Pow: "pow",
    ast.MatMult: "matmul",
}

_FORBIDDEN = {
    ast.Lambda: "lambda expressions",
    ast.ListComp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.GeneratorExp: "generator expressions",
    ast.Subscript: "indexing and slicing",
    ast.Starred: "star arguments",
    ast.IfExp: "conditional expressions",
    ast.BoolOp: "'and'/'or'",
    ast.NamedExpr: "':=' assignments",
    ast.JoinedStr: "strings",
    ast.List: "lists",
    ast.Tuple: "tuples",
    ast.Dict: "dicts",
    ast.Set: "sets",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Compare: "comparisons inside an expression",
    ast.Slice: "slicing",
}


class _Builder:
    def __init__(self, env: Environment, source: str = ""):
        self.env = env
        self.source = source  # the text parsed: a decimal literal is read from it exactly

    def build(self, node: ast.AST) -> Expr:
        method = getattr(self, "_" + type(node).__name__, None)
        if method is None:
            what = _FORBIDDEN.get(type(node), f"'{type(node).__name__}' syntax")
            raise ParseError(f"{what} not allowed in a formula")
        try:
            return method(node)
        except RecursionError:
            raise ParseError("formula is nested too deeply") from None

    def _BinOp(self, node: ast.BinOp) -> Expr:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise ParseError(f"operator '{_op_text(node.op)}' is not allowed")
        left, right = self.build(node.left), self.build(node.right)
        if op == "pow":
            _check_power(left, right)
        return call(op, left, right)

    def _UnaryOp(self, node: ast.UnaryOp) -> Expr:
        operand = self.build(node.operand)
        if isinstance(node.op, ast.USub):
            if isinstance(operand, Const):
                return Const(-operand.value)
            return call("neg", operand)
        if isinstance(node.op, ast.UAdd):
            return operand
        raise ParseError(f"operator '{_op_text(node.op)}' is not allowed")

    def _Constant(self, node: ast.Constant) -> Expr:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ParseError(f"constant {v!r} is not allowed (only numbers)")
        if isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                raise ParseError("number is out of range")
            # the rational number the literal spells (1.00000000000000000001 is not 1.0)
            literal = ast.get_source_segment(self.source, node) if self.source else None
            try:
                frac = Fraction((literal or repr(v)).replace("_", ""))
            except (ValueError, ZeroDivisionError):
                frac = Fraction(repr(v))
            return Const(sympy.Rational(frac.numerator, frac.denominator))
        if abs(v) > 10**15:
            raise ParseError("integer is too large (limit 10**15)")
        return Const(sympy.Integer(v))

    def _Name(self, node: ast.Name) -> Expr:
        name = node.id
        if name.startswith("__"):
            raise ParseError(f"name {name!r} is not allowed")
        env = self.env
        if name in env.vars:
            return env.vars[name]
        if name in env.defs:
            return env.defs[name]
        if name in env.sizes:
            return Size(name)
        if name in env.size_rels:
            from engine.sizes import size_expr

            return size_expr(env.size_rels[name])
        if name == "pi":
            return Const(sympy.pi)
        if name == "inf":  # IEEE infinity: exp(-inf) = 0, where(mask, S, -inf) before softmax
            return Const(sympy.oo)
        if name in PUBLIC_FUNCTIONS:
            raise ParseError(f"function {name!r} must be called with arguments")
        raise ParseError(f"unknown name {name!r}")

    def _Attribute(self, node: ast.Attribute) -> Expr:
        if node.attr != "T":
            raise ParseError(f"attribute '.{node.attr}' is not allowed (only '.T', the transpose)")
        return call("transpose", self.build(node.value))

    def _Call(self, node: ast.Call) -> Expr:
        if isinstance(node.func, ast.Attribute) and node.func.attr != "T":
            # x.__class__(), os.system(...): name the attribute, as for one that is not called
            self._Attribute(node.func)
        if not isinstance(node.func, ast.Name):
            raise ParseError("only named functions can be called, e.g. softmax(z)")
        name = node.func.id
        if name == "split":
            raise ParseError("split() gives k parts: take one with split(x, k, axis=a)[i]")
        if name not in PUBLIC_FUNCTIONS:
            if name.startswith("__"):
                raise ParseError(f"name {name!r} is not allowed")
            raise ParseError(f"unknown function {name!r}")
        spec = REGISTRY[name]
        params = {}
        string_param = getattr(spec, "string_param", None)
        for kw in node.keywords:
            if kw.arg is None:
                raise ParseError(f"{name}(): '**' arguments are not allowed")
            if kw.arg not in spec.params or kw.arg in ("dims", string_param):
                raise ParseError(f"{name}() has no parameter {kw.arg!r}")
            params[kw.arg] = _literal_param(name, kw.arg, kw.value)
        if string_param is not None or spec.positional:
            return self._call_with_literals(name, spec, node.args, params)
        if name in SIZE_FUNCTIONS:
            if not node.args:
                raise ParseError(f"{name}() needs at least one size, e.g. {name}(n)")
            return call(name, dims=tuple(self._size_arg(name, a) for a in node.args), **params)
        if name in LIST_FUNCTIONS or name in ("reshape", "pad"):
            return self._structure_call(name, node, params)
        if name in DERIVATIVES:
            if len(node.args) != 2:
                raise ParseError(f"{name}() takes two arguments: {name}(f, x)")
            f = self.build(node.args[0])
            wrt = node.args[1]
            if not (isinstance(wrt, ast.Name) and wrt.id in self.env.vars):
                raise ParseError(f"{name}(): the second argument must be a declared variable")
            return call(name, f, self.env.vars[wrt.id])
        args = tuple(self.build(a) for a in node.args)
        return call(name, *args, **params)

    def _call_with_literals(self, name: str, spec, args: list[ast.AST], params: dict) -> Expr:
        """einsum's leading subscripts string (the only string literal of the language), and
        parameters written positionally after the array arguments (swapaxes(x, -1, -2))."""
        args = list(args)
        string_param = getattr(spec, "string_param", None)
        if string_param is not None:
            if not args or not (
                isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)
            ):
                raise ParseError(
                    f'{name}() takes a subscripts string first, e.g. {name}("ij,jk->ik", A, B)'
                )
            params[string_param] = args.pop(0).value
            if not 1 <= len(args) <= MAX_EINSUM_OPERANDS:
                raise ParseError(
                    f"{name}() takes 1 to {MAX_EINSUM_OPERANDS} operands, got {len(args)}"
                )
            return call(name, *(self.build(a) for a in args), **params)
        extra = args[spec.nargs :]
        if len(extra) > len(spec.positional):
            raise ParseError(
                f"{name}() takes {spec.nargs} array argument{'s' * (spec.nargs != 1)} and at "
                f"most {len(spec.positional)} more ({', '.join(spec.positional)})"
            )
        for key, value in zip(spec.positional, extra, strict=False):
            if key in params:
                raise ParseError(f"{name}(): {key} is given twice")
            params[key] = _literal_param(name, key, value)
        return call(name, *(self.build(a) for a in args[: spec.nargs]), **params)

    def _size_arg(self, fname: str, a: ast.AST) -> sympy.Expr:
        if isinstance(a, ast.Name) and a.id in self.env.sizes:
            return self.env.sizes[a.id]
        if isinstance(a, ast.Name) and a.id in self.env.size_rels:
            return self.env.size_rels[a.id]
        if isinstance(a, ast.Constant) and type(a.value) is int:
            if not 1 <= a.value <= MAX_LITERAL_DIM:
                raise ParseError(f"{fname}(): size {a.value} is out of range 1..{MAX_LITERAL_DIM}")
            return sympy.Integer(a.value)
        if isinstance(a, ast.BinOp | ast.UnaryOp):  # a size expression such as d - dh
            value = self._size_expr(a, f"{fname}() size")
            if value.is_positive is False:
                raise ParseError(f"{fname}(): size {value} is not positive")
            return value
        raise ParseError(f"{fname}() takes sizes: size symbols or small integers")

    # ------------------------------------------------ structure (engine.functions.structure)

    def _size_expr(self, node: ast.AST, what: str) -> sympy.Expr:
        """An index bound or reshape size: integers and sizes with +, - and * (engine.sizes)."""
        from engine.sizes import size_expression

        env = self.env

        def lookup(name: str) -> sympy.Expr:
            if name in env.size_rels:
                return env.size_rels[name]
            if name in env.sizes:
                return env.sizes[name]
            if name in env.vars or name in env.defs:
                raise ParseError(f"{what}: {name!r} is a variable; bounds are integers or sizes")
            raise ParseError(f"{what}: unknown size {name!r}")

        try:
            return size_expression(node, lookup, what)
        except SizeError as e:
            raise ParseError(str(e)) from None

    def _Subscript(self, node: ast.Subscript) -> Expr:
        from engine.functions.structure import INDEX, SLICE, index, split_part

        sl = node.slice
        items = list(sl.elts) if isinstance(sl, ast.Tuple) else [sl]
        value = node.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            if value.func.id == "split":
                if len(items) != 1 or isinstance(items[0], ast.Slice):
                    raise ParseError("split(x, k, axis=a)[i] takes one part number i")
                x, parts, axis = self._split_args(value)
                return split_part(x, parts, axis, self._size_expr(items[0], "split part"))
        x = self.build(value)
        parsed: list[tuple] = []
        for it in items:
            if isinstance(it, ast.Slice):
                if it.step is not None and self._size_expr(it.step, "slice step") != 1:
                    raise ParseError("slices with a step are not supported (only a:b)")
                lo = None if it.lower is None else self._size_expr(it.lower, "slice start")
                hi = None if it.upper is None else self._size_expr(it.upper, "slice stop")
                parsed.append((SLICE, lo, hi))
            elif isinstance(it, ast.Constant) and it.value is Ellipsis:
                raise ParseError("'...' is not allowed in an index; write every axis")
            elif isinstance(it, ast.Constant) and it.value is None:
                raise ParseError("None (newaxis) is not allowed in an index; use expand_dims")
            else:
                parsed.append((INDEX, self._size_expr(it, "index")))
        return index(x, parsed)

    def _split_args(self, node: ast.Call) -> tuple[Expr, sympy.Expr, int]:
        if len(node.args) != 2:
            raise ParseError("split() takes an array and a number of parts: split(x, k, axis=a)")
        axis = 0
        for kw in node.keywords:
            if kw.arg != "axis":
                raise ParseError(f"split() has no parameter {kw.arg!r}")
            axis = _literal_param("split", "axis", kw.value)
        x = self.build(node.args[0])
        return x, self._size_expr(node.args[1], "split parts"), axis

    def _structure_call(self, name: str, node: ast.Call, params: dict) -> Expr:
        if name == "reshape":
            if len(node.args) != 2 or not isinstance(node.args[1], ast.Tuple | ast.List):
                raise ParseError(
                    "reshape() takes an array and a tuple of sizes: reshape(X, (n, d))"
                )
            dims = tuple(self._size_expr(d, "reshape size") for d in node.args[1].elts)
            return call(name, self.build(node.args[0]), dims=dims, **params)
        if name == "pad":
            widths = node.args[1] if len(node.args) == 2 else None
            if not isinstance(widths, ast.Tuple) or len(widths.elts) != 2:
                raise ParseError("pad() takes an array and two widths: pad(x, (1, 2), axis=-1)")
            dims = tuple(self._size_expr(w, "pad width") for w in widths.elts)
            return call(name, self.build(node.args[0]), dims=dims, **params)
        if len(node.args) != 1 or not isinstance(node.args[0], ast.List | ast.Tuple):
            raise ParseError(f"{name}() takes a list of arrays: {name}([a, b], axis=0)")
        arrays = tuple(self.build(a) for a in node.args[0].elts)
        return call(name, *arrays, **params)


def _literal_param(fname: str, key: str, value: ast.AST):
    if key in ("keepdims", "descending"):
        if isinstance(value, ast.Constant) and isinstance(value.value, bool):
            return value.value
        raise ParseError(f"{fname}(): {key} must be True or False")
    if key in TUPLE_PARAMS and isinstance(value, ast.Tuple):
        if not 1 <= len(value.elts) <= MAX_RANK * 2:
            raise ParseError(f"{fname}(): {key} must be a tuple of 1 to {MAX_RANK * 2} axes")
        return tuple(_literal_param(fname, key + " entry", v) for v in value.elts)
    sign = 1
    if isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.USub):
        sign, value = -1, value.operand
    if isinstance(value, ast.Constant) and type(value.value) is int and abs(value.value) < 16:
        return sign * value.value
    what = "a small integer or a tuple of them" if key in TUPLE_PARAMS else "a small integer"
    raise ParseError(f"{fname}(): {key} must be {what}")


def _op_text(op: ast.AST) -> str:
    return {
        ast.Mod: "%",
        ast.FloorDiv: "//",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.BitOr: "|",
        ast.BitAnd: "&",
        ast.BitXor: "^",
        ast.Invert: "~",
        ast.Not: "not",
    }.get(type(op), type(op).__name__)


def _is_constant(e: Expr) -> bool:
    """No variables and no sizes (not even as `ones(n)`), so it evaluates without inputs."""
    return all(not isinstance(n, Var | Size | Ref) for n in e.walk()) and not size_names(e)


def _magnitudes(e: Expr) -> np.ndarray:
    """|entries| of a constant expression (a scalar or a small literal array such as eye(3))."""
    from engine.backends.numpy_backend import evaluate

    with _quiet():
        return np.abs(np.asarray(evaluate(e, {}, {}), dtype=complex)).ravel()


def _check_power(base: Expr, exponent: Expr) -> None:
    """Refuse powers that would blow up exact arithmetic (e.g. 10 ** 10 ** 10)."""
    if not _is_constant(exponent):
        _check_size_exponent(exponent)
        outer = _exponent_magnitude(exponent, 10)
        if outer is not None and not outer * _nested_exponent(base) <= MAX_NESTED_EXPONENT:
            raise ParseError(
                f"nested powers are too large (the product of the exponents must be at most "
                f"{MAX_NESTED_EXPONENT})"
            )
        return
    e = float(np.max(_magnitudes(exponent)))  # nan stays nan and is refused below
    constant = _is_constant(base)
    # A number to a large power is one number (Adam's 0.999 ** 1000, float32's 2 ** -149):
    # bounded by the digits of its exact value; a variable's power stays at most 64.
    limit = MAX_CONSTANT_EXPONENT if constant else MAX_EXPONENT
    if not abs(e) <= limit:
        what = "of a number " if constant else ""
        raise ParseError(f"exponent {what}is too large (|exponent| <= {limit})")
    if constant and not abs(e) * _exact_digits(base) <= MAX_EXACT_DIGITS:
        raise ParseError(
            f"constant power is too large for exact arithmetic (at most {MAX_EXACT_DIGITS} digits)"
        )
    if not abs(e) * _nested_exponent(base) <= MAX_NESTED_EXPONENT:
        raise ParseError(
            f"nested powers are too large (the product of the exponents must be at most "
            f"{MAX_NESTED_EXPONENT})"
        )
    if constant:
        b = _magnitudes(base)
        with _quiet():
            digits = np.max(np.abs(np.log10(b[b > 0])), initial=0.0) * e
        if not digits <= MAX_MAGNITUDE_DIGITS:
            raise ParseError("constant power is too large")


def _exact_digits(base: Expr) -> int:
    """Decimal digits of the numerators and denominators of the numbers in a constant base: its
    power to e has about e times as many as an exact rational."""
    digits = 0
    for node in base.walk():
        if isinstance(node, Const) and node.value.is_Rational:
            digits += len(str(abs(node.value.p))) + len(str(node.value.q))
        elif isinstance(node, Const):
            digits += 20  # pi, e: the exact route keeps them symbolic
    return max(digits, 1)


def _exponent_magnitude(exponent: Expr, size: int) -> float | None:
    """max |exponent| with every size set to `size`; None if it depends on variables."""
    if any(isinstance(n, Var | Ref) for n in exponent.walk()):
        return None
    from engine.backends.numpy_backend import evaluate

    sizes = {name: size for name in size_names(exponent)}
    with _quiet():
        return float(np.max(np.abs(np.asarray(evaluate(exponent, {}, sizes), dtype=complex))))


def _check_size_exponent(exponent: Expr) -> None:
    """An exponent made of sizes (x ** n) may not grow past 64**2 at sizes of 64."""
    e = _exponent_magnitude(exponent, MAX_LITERAL_DIM)
    if e is not None and not e <= MAX_NESTED_EXPONENT:
        raise ParseError(
            f"exponent grows too fast with the sizes (at most {MAX_NESTED_EXPONENT} when "
            f"every size is {MAX_LITERAL_DIM})"
        )


def _nested_exponent(e: Expr) -> float:
    """The largest product of exponents along a chain of powers nested inside `e`.

    Exponents made of sizes count at a size of 10, above any size the exact check uses.
    """
    product: dict[int, float] = {}
    for node in e.walk():
        inner = max((product[id(c)] for c in node.children()), default=1.0)
        if isinstance(node, Call) and node.fn == "pow":
            inner *= _exponent_magnitude(node.args[1], 10) or 1.0
        product[id(node)] = inner
    return product[id(e)]


def _quiet():
    return np.errstate(all="ignore")
