"""grad, jacobian and hessian: derivative nodes, evaluated by each backend by its own route.

jacobian(f, x) has shape f.shape + x.shape (J[i..., j...] = d f[i...] / d x[j...]) for any ranks;
hessian(f, x) of a scalar f is jacobian(grad(f, x), x), of shape x.shape + x.shape, and every
backend and the verifier evaluate it as that nested derivative (see `expand_hessians`).
"""

from __future__ import annotations

from engine.expr import (
    Call,
    EngineError,
    Expr,
    Ref,
    ShapeError,
    Size,
    Var,
    call,
    format_shape,
    map_calls,
)
from engine.functions.base import PREC_ATOM, Function, register


def _grad_shape(shapes, p):
    f, x = shapes
    if f != ():
        raise ShapeError(f"grad() needs a scalar function, got shape {format_shape(f)}")
    return x


def _jacobian_shape(shapes, p):
    f, x = shapes
    return tuple(f) + tuple(x)


def _hessian_shape(shapes, p):
    f, x = shapes
    if f != ():
        raise ShapeError(f"hessian() needs a scalar function, got shape {format_shape(f)}")
    return tuple(x) + tuple(x)


def _no_numpy(*args, **kw):
    raise EngineError("derivative nodes are evaluated by the backend, not elementwise")


def _grad_latex(n: Call, s) -> str:
    # A name or a function call needs no brackets: \nabla_z \operatorname{CE}(p, y).
    return rf"\nabla_{{{s(n.args[1], 0)}}} {s(n.args[0], PREC_ATOM)}"


def _jac_latex(n: Call, s) -> str:
    f, x = n.args
    if isinstance(f, Var | Ref | Size):
        return rf"\frac{{\partial {s(f, 0)}}}{{\partial {s(x, 0)}}}"
    return rf"\frac{{\partial}}{{\partial {s(x, 0)}}} {s(f, PREC_ATOM)}"


register(
    Function(
        name="grad",
        nargs=2,
        shape=_grad_shape,
        numpy=_no_numpy,
        sympy=_no_numpy,
        latex=_grad_latex,
        doc="gradient of a scalar f with respect to a variable x (shape of x)",
    )
)


def _hess_latex(n: Call, s) -> str:
    return rf"\nabla^{{2}}_{{{s(n.args[1], 0)}}} {s(n.args[0], PREC_ATOM)}"


def expand_hessians(e: Expr) -> Expr:
    """Every hessian(f, x) in `e` written as the nested derivative jacobian(grad(f, x), x)."""
    if not any(isinstance(n, Call) and n.fn == "hessian" for n in e.walk()):
        return e

    def expand(n: Call) -> Expr:
        if n.fn != "hessian":
            return n
        f, x = n.args
        return call("jacobian", call("grad", f, x), x)

    return map_calls(e, expand)


register(
    Function(
        name="jacobian",
        nargs=2,
        shape=_jacobian_shape,
        numpy=_no_numpy,
        sympy=_no_numpy,
        latex=_jac_latex,
        doc="Jacobian J[i.., j..] = d f[i..] / d x[j..] of f with respect to x (shape f + x)",
    )
)
register(
    Function(
        name="hessian",
        nargs=2,
        shape=_hessian_shape,
        numpy=_no_numpy,
        sympy=_no_numpy,
        latex=_hess_latex,
        doc="Hessian H = jacobian(grad(f, x), x) of a scalar f (shape x.shape + x.shape)",
    )
)
