"""The expression tree: immutable nodes over shaped tensors that every backend walks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sympy

Dim = sympy.Expr  # a size: a positive-integer Symbol or an Integer
Shape = tuple[Dim, ...]


class EngineError(Exception):
    """Base class for every error the engine reports to a user as one clean line."""


class ShapeError(EngineError):
    """Operands whose shapes do not fit the operation."""


def format_shape(shape: Shape) -> str:
    """`(n, d)` style, `()` for a scalar."""
    if not shape:
        return "scalar"
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class Expr:
    """A node of the expression tree. Subclasses are immutable and compare structurally."""

    __slots__ = ("shape", "_hash")
    shape: Shape

    def children(self) -> tuple[Expr, ...]:
        return ()

    def key(self) -> tuple:
        raise NotImplementedError

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Expr) or self._hash != other._hash:
            return False
        return type(self) is type(other) and self.key() == other.key()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("expression nodes are immutable")

    def __reduce__(self) -> tuple:
        # Pickling (a Program sent back from a worker of engine.budget): slot by slot, past the
        # immutability guard; the hash is recomputed from the key in the receiving process.
        state = {
            slot: getattr(self, slot)
            for cls in type(self).__mro__
            for slot in getattr(cls, "__slots__", ())
            if slot != "_hash"
        }
        return (_unpickle, (type(self), state))

    def _init(self, shape: Shape, key: tuple) -> None:
        object.__setattr__(self, "shape", tuple(shape))
        object.__setattr__(self, "_hash", hash((type(self).__name__, key)))

    # Operators, so rules and tests can build trees in the field's own notation.
    def __add__(self, other: ExprLike) -> Expr:
        return call("add", self, as_expr(other))

    def __radd__(self, other: ExprLike) -> Expr:
        return call("add", as_expr(other), self)

    def __sub__(self, other: ExprLike) -> Expr:
        return call("sub", self, as_expr(other))

    def __rsub__(self, other: ExprLike) -> Expr:
        return call("sub", as_expr(other), self)

    def __mul__(self, other: ExprLike) -> Expr:
        return call("mul", self, as_expr(other))

    def __rmul__(self, other: ExprLike) -> Expr:
        return call("mul", as_expr(other), self)

    def __truediv__(self, other: ExprLike) -> Expr:
        return call("div", self, as_expr(other))

    def __rtruediv__(self, other: ExprLike) -> Expr:
        return call("div", as_expr(other), self)

    def __pow__(self, other: ExprLike) -> Expr:
        return call("pow", self, as_expr(other))

    def __neg__(self) -> Expr:
        return call("neg", self)

    def __matmul__(self, other: Expr) -> Expr:
        return call("matmul", self, other)

    @property
    def T(self) -> Expr:  # noqa: N802 - NumPy's name
        return call("transpose", self)

    def walk(self) -> Iterator[Expr]:
        """Every node once, children before parents."""
        seen: set[int] = set()
        stack: list[tuple[Expr, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if id(node) in seen:
                continue
            if expanded:
                seen.add(id(node))
                yield node
            else:
                stack.append((node, True))
                for c in reversed(node.children()):
                    if id(c) not in seen:
                        stack.append((c, False))

    def __str__(self) -> str:
        from engine.printing.text import to_text

        return to_text(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self}>"

    def _repr_latex_(self) -> str:
        from engine.display import expr_latex

        return expr_latex(self)


def _unpickle(cls: type[Expr], state: dict[str, Any]) -> Expr:
    node = object.__new__(cls)
    for slot, value in state.items():
        object.__setattr__(node, slot, value)
    object.__setattr__(node, "_hash", hash((cls.__name__, node.key())))
    return node


class Var(Expr):
    """A declared input variable with a type (`real`, `simplex`, ...) and a shape."""

    __slots__ = ("name", "vtype")

    def __init__(self, name: str, vtype: str, shape: Shape):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "vtype", vtype)
        self._init(shape, (name, vtype, tuple(shape)))

    def key(self) -> tuple:
        return (self.name, self.vtype, self.shape)


class Const(Expr):
    """An exact scalar constant (a SymPy Integer, Rational or `pi`)."""

    __slots__ = ("value",)

    def __init__(self, value: sympy.Expr | int):
        value = sympy.sympify(value) if isinstance(value, int) else value
        object.__setattr__(self, "value", value)
        self._init((), (value,))

    def key(self) -> tuple:
        return (self.value,)


class Size(Expr):
    """A size symbol used as a scalar, such as `d` in `sqrt(d)`."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)
        self._init((), (name,))

    @property
    def symbol(self) -> sympy.Symbol:
        return size_symbol(self.name)

    def key(self) -> tuple:
        return (self.name,)


class Ref(Expr):
    """A named definition (`p := softmax(z)`): evaluates as its body, prints as its name."""

    __slots__ = ("name", "body")

    def __init__(self, name: str, body: Expr):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "body", body)
        self._init(body.shape, (name, body))

    def children(self) -> tuple[Expr, ...]:
        return (self.body,)

    def key(self) -> tuple:
        return (self.name, self.body)


class Call(Expr):
    """An application of a registered function (see `engine.functions`) to arguments."""

    __slots__ = ("fn", "args", "params")

    def __init__(self, fn: str, args: tuple[Expr, ...], params: tuple[tuple[str, Any], ...], shape):
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "args", tuple(args))
        object.__setattr__(self, "params", tuple(params))
        self._init(shape, (fn, self.args, self.params))

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def key(self) -> tuple:
        return (self.fn, self.args, self.params)

    def param(self, name: str, default: Any = None) -> Any:
        for k, v in self.params:
            if k == name:
                return v
        return default

    @property
    def spec(self):
        from engine.functions import REGISTRY

        return REGISTRY[self.fn]


ExprLike = Expr | int | sympy.Expr


def as_expr(x: ExprLike) -> Expr:
    if isinstance(x, Expr):
        return x
    if isinstance(x, int | sympy.Expr):
        return Const(sympy.sympify(x) if isinstance(x, int) else x)
    raise TypeError(f"cannot use {type(x).__name__} in an expression")


def size_symbol(name: str) -> sympy.Symbol:
    """The SymPy symbol for a size, a positive integer."""
    return sympy.Symbol(name, positive=True, integer=True)


def call(fn: str, *args: Expr, **params: Any) -> Expr:
    """Build `fn(*args, **params)`, checking arity, parameters and shapes against the registry."""
    from engine.functions import REGISTRY

    spec = REGISTRY.get(fn)
    if spec is None:
        raise EngineError(f"unknown function '{fn}'")
    return spec.build(args, params)


def map_calls(expr: Expr, rule: Callable[[Call], Expr]) -> Expr:
    """Rebuild `expr` children first, passing every call through `rule`; shared nodes once.

    Named definitions (`Ref`) are left as they are: a rule sees their names, not their bodies.
    """
    memo: dict[int, Expr] = {}

    def go(n: Expr) -> Expr:
        if id(n) in memo:
            return memo[id(n)]
        out = n
        if isinstance(n, Call):
            args = tuple(go(a) for a in n.args)
            out = rule(n if args == n.args else Call(n.fn, args, n.params, n.shape))
        memo[id(n)] = out
        return out

    return go(expr)


def free_vars(expr: Expr) -> dict[str, Var]:
    """The variables an expression depends on, by name."""
    return {n.name: n for n in expr.walk() if isinstance(n, Var)}


def size_names(expr: Expr) -> set[str]:
    """Every size symbol the expression uses, in shapes or as a scalar."""
    names: set[str] = set()
    for n in expr.walk():
        if isinstance(n, Size):
            names.add(n.name)
        for d in n.shape:
            names.update(s.name for s in d.free_symbols)
        if isinstance(n, Call):
            for _, v in n.params:
                if isinstance(v, tuple):
                    for d in v:
                        if isinstance(d, sympy.Expr):
                            names.update(s.name for s in d.free_symbols)
                elif isinstance(v, sympy.Expr):
                    names.update(s.name for s in v.free_symbols)
    return names


def contains_derivative(expr: Expr) -> bool:
    return any(isinstance(n, Call) and n.fn in DERIVATIVE_FNS for n in expr.walk())


DERIVATIVE_FNS = ("grad", "jacobian", "hessian")  # derivative nodes, evaluated by the backends
