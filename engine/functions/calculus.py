"""grad and jacobian: derivative nodes, evaluated by each backend by its own independent route."""

from __future__ import annotations

from engine.expr import Call, EngineError, Ref, ShapeError, Size, Var, format_shape
from engine.functions.base import PREC_ATOM, Function, register


def _grad_shape(shapes, p):
    f, x = shapes
    if f != ():
        raise ShapeError(f"grad() needs a scalar function, got shape {format_shape(f)}")
    return x


def _jacobian_shape(shapes, p):
    f, x = shapes
    if len(f) != 1 or len(x) != 1:
        raise ShapeError(
            "jacobian() needs a vector function of a vector, got "
            f"{format_shape(f)} of {format_shape(x)}"
        )
    return (f[0], x[0])


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
register(
    Function(
        name="jacobian",
        nargs=2,
        shape=_jacobian_shape,
        numpy=_no_numpy,
        sympy=_no_numpy,
        latex=_jac_latex,
        doc="Jacobian J[i, j] = d f_i / d x_j of a vector f with respect to a vector x",
    )
)
