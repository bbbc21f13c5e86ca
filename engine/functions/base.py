"""The function registry: one `Function` record per operation of the formula language."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from engine.expr import Call, EngineError, Expr, Shape, ShapeError, format_shape

# True while a NumPy form compares values only to pick the numerically stable branch of a smooth
# function (sigmoid's x >= 0, the max shift of softmax and logsumexp): both branches give the same
# value there, so the verifier's high-precision confirmation need not look closer at such a
# comparison, as it does at a kink's (engine/verify/precision.py).
SMOOTH_BRANCH: contextvars.ContextVar[bool] = contextvars.ContextVar("smooth_branch", default=False)


@contextlib.contextmanager
def smooth_branch() -> Iterator[None]:
    """Comparisons inside pick a smooth function's stable branch, not a kink's (SMOOTH_BRANCH)."""
    token = SMOOTH_BRANCH.set(True)
    try:
        yield
    finally:
        SMOOTH_BRANCH.reset(token)


# Printing precedences, shared by the text and LaTeX printers.
PREC_ADD = 10
PREC_MUL = 20
PREC_NEG = 25
PREC_POW = 30
PREC_POSTFIX = 35
PREC_ATOM = 40
VARIADIC = -1  # Function.nargs of a function taking a list of arrays (concat, stack)

LatexRule = Callable[[Call, Callable[[Expr, int], str]], str]
TextRule = Callable[[Call, Callable[[Expr, int], str]], str]
VjpRule = Callable[[Call, Expr, int], Expr]


@dataclass(frozen=True)
class Function:
    """Everything about one operation: its shape rule, NumPy and SymPy forms, VJP and LaTeX."""

    name: str
    nargs: int
    shape: Callable[[tuple[Shape, ...], dict[str, Any]], Shape]
    numpy: Callable[..., np.ndarray]
    sympy: Callable[..., np.ndarray]
    latex: LatexRule
    vjp: VjpRule | None = None
    params: dict[str, Any] = field(default_factory=dict)
    precedence: int = PREC_ATOM
    infix: str | None = None  # text form of an operator (`+`, `@`, ...)
    doc: str = ""
    public: bool = True  # callable by name from the formula language
    # Piecewise with a kink where its (first) argument crosses 0 (relu, abs, step, sign): the
    # verifier places inputs on both sides of every kink, and its derivative at the kink follows
    # PyTorch's convention (relu'(0) = abs'(0) = step'(0) = sign'(0) = 0) in every backend.
    kink: bool = False
    # Formula-language text when it is not `name(args, key=value)` (X[:, :dh], concat([a, b]));
    # it must parse back to the same tree. `nargs = VARIADIC` takes one or more arguments.
    text: TextRule | None = None
    # Kinked in general (maximum, clip): the expressions whose sign change is a kink (a - b for
    # maximum(a, b); x - lo and x - hi for clip). The verifier straddles each as it does `kink`.
    kinks: Callable[[Call], list[Expr]] | None = None
    # Why grad/jacobian refuse to pass through it ("its value is an index" for argmax); empty for
    # the differentiable functions.
    nondifferentiable: str = ""
    # Parameters that may also be written positionally after the array arguments, as NumPy
    # writes them: transpose(x, (0, 2, 1)), swapaxes(x, -1, -2), squeeze(x, 0).
    positional: tuple[str, ...] = ()

    def build(self, args: tuple[Expr, ...], params: dict[str, Any]) -> Call:
        if self.nargs == VARIADIC and not args:
            raise EngineError(f"{self.name}() needs at least one array")
        if self.nargs != VARIADIC and len(args) != self.nargs:
            raise EngineError(
                f"{self.name}() takes {self.nargs} argument{'s' * (self.nargs != 1)}, "
                f"got {len(args)}"
            )
        unknown = set(params) - set(self.params)
        if unknown:
            raise EngineError(f"{self.name}() has no parameter '{sorted(unknown)[0]}'")
        full = {**self.params, **{k: v for k, v in params.items()}}
        shape = self.shape(tuple(a.shape for a in args), full)
        if self.name in ("grad", "jacobian"):
            _refuse_nondifferentiable(self.name, *args)
        derivative = self.name in ("grad", "jacobian", "hessian")
        if derivative and getattr(args[1], "vtype", "") == "index":
            raise EngineError(  # integer labels (issue 8): no derivative with respect to them
                f"{self.name}(): {args[1].name} is an index variable (integer labels); "
                "it is not differentiable"
            )
        # Parameters equal to their defaults are left out, so equal trees print the same.
        kept = tuple((k, v) for k, v in full.items() if k in params and v != self.params[k])
        return Call(self.name, args, kept, shape)


REGISTRY: dict[str, Function] = {}


def _refuse_nondifferentiable(fname: str, f: Expr, x: Expr) -> None:
    """A one-line error for grad/jacobian through a function whose value is not differentiable
    (argmax: an index), when its argument depends on the variable differentiated."""
    for node in f.walk():
        if isinstance(node, Call) and node.spec.nondifferentiable:
            if any(a == x for arg in node.args for a in arg.walk()):
                raise EngineError(
                    f"{node.fn}() is not differentiable ({node.spec.nondifferentiable}); "
                    f"{fname}() cannot pass through it"
                )


def register(fn: Function) -> Function:
    if fn.name in REGISTRY:
        raise ValueError(f"function {fn.name} registered twice")
    REGISTRY[fn.name] = fn
    return fn


def params_of(node: Call) -> dict[str, Any]:
    """A call's parameters with the registry defaults filled in."""
    return {**node.spec.params, **dict(node.params)}


# ---------------------------------------------------------------- shape helpers


def broadcast(*shapes: Shape) -> Shape:
    """NumPy broadcasting of symbolic shapes; distinct size symbols never broadcast."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[sympy.Expr] = []
    for i in range(rank):
        dims = {s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0}
        dims.discard(sympy.Integer(1))
        if len(dims) > 1:
            raise ShapeError(
                "shapes " + " and ".join(format_shape(s) for s in shapes) + " do not broadcast"
            )
        out.append(dims.pop() if dims else sympy.Integer(1))
    return tuple(out)


def normalize_axis(axis: int, rank: int, fname: str) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"{fname}(): axis {axis} is out of range for an array of rank {rank}")
    return axis % rank


def same_shape(fname: str, a: Shape, b: Shape) -> Shape:
    if a != b:
        raise ShapeError(f"{fname}(): shapes {format_shape(a)} and {format_shape(b)} differ")
    return a


def need_rank(fname: str, shape: Shape, ranks: tuple[int, ...], what: str) -> None:
    if len(shape) not in ranks:
        raise ShapeError(f"{fname}() needs {what}, got shape {format_shape(shape)}")


# ---------------------------------------------------------------- SymPy object-array helpers


def obj(x: Any) -> np.ndarray:
    """Wrap a SymPy value or an object array as an object ndarray (0-d for scalars)."""
    if isinstance(x, np.ndarray) and x.dtype == object:
        return x
    arr = np.empty((), dtype=object) if not isinstance(x, np.ndarray) else None
    if arr is not None:
        arr[()] = x
        return arr
    return x.astype(object)


def sym_map(f: Callable[[sympy.Expr], sympy.Expr]) -> Callable[[np.ndarray], np.ndarray]:
    """Apply a scalar SymPy function to every entry of an object array."""
    uf = np.frompyfunc(f, 1, 1)

    def apply(x: np.ndarray) -> np.ndarray:
        return obj(uf(x))

    return apply


def sym_sum(x: np.ndarray, axis: int | tuple | None = None, keepdims: bool = False) -> np.ndarray:
    x = obj(x)  # arithmetic on 0-d object arrays gives a bare SymPy scalar (var of a scalar)
    if x.size == 0:
        raise EngineError("sum over an empty axis")
    if axis is None:
        total = sympy.Add(*x.ravel().tolist())
        return obj(total) if not keepdims else np.full((1,) * x.ndim, total, dtype=object)
    axes = sorted(a % x.ndim for a in (axis if isinstance(axis, tuple) else (axis,)))
    moved = np.moveaxis(x, axes, list(range(x.ndim - len(axes), x.ndim)))
    out = np.empty(moved.shape[: x.ndim - len(axes)], dtype=object)
    for idx in np.ndindex(out.shape):
        out[idx] = sympy.Add(*moved[idx].ravel().tolist())
    if keepdims:
        out = np.expand_dims(out, tuple(axes))
    return obj(out)


# ---------------------------------------------------------------- LaTeX helpers


def latex_fn(name: str) -> str:
    return rf"\operatorname{{{name}}}"


def latex_axis_note(node: Call, rank_default: int = -1) -> str:
    """A subscript naming the axis of a reduction when it is not the obvious one."""
    axis = dict(node.params).get("axis")
    if axis is None:
        return ""
    return rf"_{{\text{{axis}}={axis}}}"
