"""Matrix functions of the Matrix Cookbook: det, logdet, inv, solve and the 2-norm."""

from __future__ import annotations

import numpy as np
import sympy

from engine.expr import Call, Expr, Shape, ShapeError, call, format_shape
from engine.functions.base import (
    PREC_MUL,
    PREC_POSTFIX,
    Function,
    obj,
    params_of,
    register,
    sym_map,
    sym_sum,
)
from engine.functions.reductions import REDUCE_PARAMS, _reduce_shape, expand_back


def _square(fname: str, s: Shape) -> None:
    if len(s) != 2 or s[0] != s[1]:
        raise ShapeError(f"{fname}() needs a square matrix, got shape {format_shape(s)}")


# ---------------------------------------------------------------- exact (SymPy) forms


def _minors(x: np.ndarray):
    """det of the submatrix of rows `rows` and columns `cols` by cofactor expansion along its
    first row, memoized: division-free polynomials in the entries, shared between minors."""
    memo: dict[tuple[tuple[int, ...], tuple[int, ...]], sympy.Expr] = {}

    def det(rows: tuple[int, ...], cols: tuple[int, ...]) -> sympy.Expr:
        if not rows:
            return sympy.Integer(1)
        key = (rows, cols)
        if key not in memo:
            r, rest = rows[0], rows[1:]
            terms = [
                (-1) ** j * x[r, c] * det(rest, cols[:j] + cols[j + 1 :])
                for j, c in enumerate(cols)
            ]
            memo[key] = sympy.Add(*terms)
        return memo[key]

    return det


def sym_det(x: np.ndarray) -> sympy.Expr:
    n = x.shape[0]
    return _minors(x)(tuple(range(n)), tuple(range(n)))


def sym_inv(x: np.ndarray) -> np.ndarray:
    """The adjugate over the determinant: entry (i, j) is (-1)^(i+j) M_ji / det X."""
    n = x.shape[0]
    det = _minors(x)
    full = tuple(range(n))
    d = det(full, full)
    if d == 0:
        raise ZeroDivisionError("inv() of a singular matrix")
    out = np.empty((n, n), dtype=object)
    for i in range(n):
        for j in range(n):
            minor = det(full[:j] + full[j + 1 :], full[:i] + full[i + 1 :])
            out[i, j] = (-1) ** (i + j) * minor / d
    return out


def _sym_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return obj(sym_inv(a) @ b)


def _sym_norm(x, axis=None, keepdims=False):
    return sym_map(sympy.sqrt)(sym_sum(obj(x * x), axis, keepdims))


# ---------------------------------------------------------------- float and object forms


def _lu_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A^{-1} B by Gauss-Jordan with partial pivoting on object arrays (the verifier's
    high-precision numbers)."""
    n = a.shape[0]
    m = np.array(a, dtype=object)
    rhs = np.array(b, dtype=object).reshape(n, -1)
    for k in range(n):
        p = max(range(k, n), key=lambda r: abs(m[r, k]))
        if p != k:
            m[[k, p]], rhs[[k, p]] = m[[p, k]], rhs[[p, k]]
        pivot = m[k, k]
        # row first: `row * f` broadcasts over the row, `f * row` would hand the row to f
        m[k] = m[k] / pivot
        rhs[k] = rhs[k] / pivot
        for r in range(n):
            if r != k:
                f = m[r, k]
                m[r] = m[r] - m[k] * f
                rhs[r] = rhs[r] - rhs[k] * f
    return rhs.reshape(np.shape(b))


def _object_det(x: np.ndarray):
    """det by LU with partial pivoting on object arrays (a third of Gauss-Jordan's work)."""
    n = x.shape[0]
    m = np.array(x, dtype=object)
    det = 1
    for k in range(n):
        p = max(range(k, n), key=lambda r: abs(m[r, k]))
        if p != k:
            m[[k, p]] = m[[p, k]]
            det = -det
        pivot = m[k, k]
        det = det * pivot
        for r in range(k + 1, n):
            m[r, k + 1 :] = m[r, k + 1 :] - m[k, k + 1 :] * (m[r, k] / pivot)
    return det


def _np_det(x):
    if x.dtype == object:
        return obj(_object_det(x))
    return np.asarray(np.linalg.det(x))


def _np_logdet(x):
    """log det X, for det X > 0 (NaN otherwise, as torch.logdet); complex input (a complex
    step) goes through log(det), which is analytic there."""
    if x.dtype == object:
        return obj(_np_det(x)[()].log())
    if np.iscomplexobj(x):
        return np.asarray(np.log(np.linalg.det(x)))
    sign, value = np.linalg.slogdet(x)
    return np.asarray(value if sign > 0 else np.nan)


def _np_inv(x):
    if x.dtype == object:
        return _lu_solve(x, np.eye(x.shape[0]).astype(object))
    try:
        return np.linalg.inv(x)
    except np.linalg.LinAlgError:  # singular: NaN, which the verifier reports as not finite
        return np.full(x.shape, np.nan)


def _np_solve(a, b):
    if a.dtype == object or b.dtype == object:
        return _lu_solve(a, b)
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        return np.full(np.broadcast_shapes(b.shape), np.nan)


def _np_norm(x, axis=None, keepdims=False):
    """sqrt(sum(x * x)): analytic, so complex steps go through; real floats use NumPy's norm,
    which scales to avoid overflow."""
    if x.dtype.kind == "f" and x.dtype.itemsize <= 8 and x.ndim:
        return np.asarray(np.linalg.norm(x, axis=axis, keepdims=keepdims))
    return np.asarray(np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims)))


# ---------------------------------------------------------------- shapes


def _det_shape(fname: str):
    def rule(shapes, p) -> Shape:
        _square(fname, shapes[0])
        return ()

    return rule


def _inv_shape(shapes, p) -> Shape:
    _square("inv", shapes[0])
    return shapes[0]


def _solve_shape(shapes, p) -> Shape:
    a, b = shapes
    _square("solve", a)
    if len(b) not in (1, 2) or b[0] != a[0]:
        raise ShapeError(
            f"solve(A, B) needs B of shape ({a[0]},) or ({a[0]}, k), got {format_shape(b)}"
        )
    return b


def _norm_shape(shapes, p) -> Shape:
    if len(shapes[0]) not in (1, 2):
        raise ShapeError(f"norm() needs a vector or matrix, got shape {format_shape(shapes[0])}")
    return _reduce_shape("norm")(shapes, p)


# ---------------------------------------------------------------- VJPs


def _det_vjp(n: Call, g: Expr, i: int) -> Expr:
    """d det X = det X tr(X^{-1} dX): the cotangent is g det(X) X^{-T}."""
    return g * n * call("inv", n.args[0]).T


def _logdet_vjp(n: Call, g: Expr, i: int) -> Expr:
    """d log det X = tr(X^{-1} dX): the cotangent is g X^{-T}."""
    return g * call("inv", n.args[0]).T


def _inv_vjp(n: Call, g: Expr, i: int) -> Expr:
    """d X^{-1} = -X^{-1} dX X^{-1}: the cotangent is -X^{-T} G X^{-T}."""
    return -(n.T @ g @ n.T)


def _solve_vjp(n: Call, g: Expr, i: int) -> Expr:
    """Z = A^{-1} B: the cotangent of B is A^{-T} G, that of A is -(A^{-T} G) Z^T."""
    a = n.args[0]
    gb = call("solve", a.T, g)
    if i == 1:
        return gb
    return -call("outer", gb, n) if len(n.shape) == 1 else -(gb @ n.T)


def _norm_vjp(n: Call, g: Expr, i: int) -> Expr:
    """d ||x|| = <x, dx> / ||x||: the cotangent is g x / ||x|| (for x != 0; at x = 0 the norm
    has a cone, no derivative, and PyTorch returns 0 there)."""
    return expand_back(g, n) * n.args[0] / expand_back(n, n)


# ---------------------------------------------------------------- LaTeX


def _wrap(s, e: Expr) -> str:
    return s(e, PREC_POSTFIX + 1)


def _norm_latex(n: Call, s) -> str:
    x = n.args[0]
    axis = params_of(n)["axis"]
    inner = rf"\left\lVert {s(x, 0)} \right\rVert"
    if axis is None:
        return inner + ("_F" if len(x.shape) == 2 else "")
    which = "row" if axis % 2 == 1 else "col"
    return inner + (rf"_{{\text{{{which}}}}}" if len(x.shape) == 2 else "")


register(
    Function(
        name="det",
        nargs=1,
        shape=_det_shape("det"),
        numpy=_np_det,
        sympy=lambda x: obj(sym_det(x)),
        latex=lambda n, s: rf"\det\left({s(n.args[0], 0)}\right)",
        vjp=_det_vjp,
        doc="determinant of a square matrix",
    )
)
register(
    Function(
        name="logdet",
        nargs=1,
        shape=_det_shape("logdet"),
        numpy=_np_logdet,
        sympy=lambda x: obj(sympy.log(sym_det(x))),
        latex=lambda n, s: rf"\log\det\left({s(n.args[0], 0)}\right)",
        vjp=_logdet_vjp,
        doc="log of the determinant, for det > 0 (spd matrices); NaN elsewhere as torch.logdet",
    )
)
register(
    Function(
        name="inv",
        nargs=1,
        shape=_inv_shape,
        numpy=_np_inv,
        sympy=lambda x: obj(sym_inv(x)),
        latex=lambda n, s: f"{_wrap(s, n.args[0])}^{{-1}}",
        vjp=_inv_vjp,
        precedence=PREC_POSTFIX,
        doc="matrix inverse",
    )
)
register(
    Function(
        name="solve",
        nargs=2,
        shape=_solve_shape,
        numpy=_np_solve,
        sympy=_sym_solve,
        latex=lambda n, s: f"{_wrap(s, n.args[0])}^{{-1}} {s(n.args[1], PREC_MUL + 1)}",
        vjp=_solve_vjp,
        precedence=PREC_MUL,
        doc="solve(A, B) = A^{-1} B, B a vector or matrix (numpy.linalg.solve)",
    )
)
register(
    Function(
        name="norm",
        nargs=1,
        shape=_norm_shape,
        numpy=_np_norm,
        sympy=_sym_norm,
        latex=_norm_latex,
        vjp=_norm_vjp,
        params=dict(REDUCE_PARAMS),
        doc="2-norm of a vector, Frobenius norm of a matrix; axis= for row or column norms",
    )
)
