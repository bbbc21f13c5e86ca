"""Arithmetic operators, the matrix product and the transpose."""

from __future__ import annotations

import numpy as np
import sympy

from engine.expr import Call, Const, Expr, Shape, ShapeError, call, format_shape
from engine.functions.base import (
    PREC_ADD,
    PREC_MUL,
    PREC_NEG,
    PREC_POSTFIX,
    PREC_POW,
    Function,
    broadcast,
    normalize_axis,
    obj,
    register,
)
from engine.printing.size_names import dim_latex


def unbroadcast(g: Expr, shape: Shape) -> Expr:
    """Sum a cotangent over the axes along which a value of `shape` was broadcast.

    A cotangent smaller than `shape` along some axis (the other operand was broadcast against
    this one: `y` in cross_entropy(2, y)) is first spread over the broadcast shape.
    """
    full = broadcast(g.shape, shape)
    if full != g.shape:
        g = g * call("ones", dims=full)
    while len(g.shape) > len(shape):
        g = call("sum", g, axis=0)
    for axis, (dg, ds) in enumerate(zip(g.shape, shape, strict=True)):
        if ds == 1 and dg != 1:
            g = call("sum", g, axis=axis, keepdims=True)
    return g


def _is_scalar(e: Expr) -> bool:
    return e.shape == ()


# Reductions printed with a big operator (Σ): as the base of a power they take parentheses,
# (Σ x)², since Σ(x)² reads as a sum of squares.
BIG_OPERATORS = frozenset({"sum"})


def broadcast_latex(n: Call, i: int, text: str) -> str:
    """Argument i of a broadcasting operation, with the ones vector that a reader needs to
    see the broadcast: a column c (n×1) against an n×m operand prints `c 1_mᵀ`, a row r (1×m)
    prints `1_n r`. (NumPy broadcasts silently; printed bare, `A - rowsum(B)` leaves the
    orientation of the rowsum invisible.)"""
    mine, other = n.args[i].shape, n.args[1 - i].shape
    if len(mine) != 2 or len(other) != 2:
        return text
    one = sympy.Integer(1)
    if mine[1] == one and other[1] != one and mine[0] != one:
        return rf"{text} \, \mathbf{{1}}_{{{dim_latex(other[1])}}}^{{\top}}"
    if mine[0] == one and other[0] != one and mine[1] != one:
        return rf"\mathbf{{1}}_{{{dim_latex(other[0])}}} \, {text}"
    return text


def _bcast_arg(n: Call, i: int, s, prec: int) -> str:
    text = s(n.args[i], prec)
    out = broadcast_latex(n, i, text)
    if out != text and prec >= PREC_MUL and not text.startswith(r"\left("):
        out = rf"\left({out}\right)"  # c 1ᵀ is a product: parenthesized where a product would be
    return out


def _binary(name, infix, prec, np_f, sym_f, vjp, latex, doc):
    return register(
        Function(
            name=name,
            nargs=2,
            shape=lambda s, p: broadcast(*s),
            numpy=np_f,
            sympy=lambda a, b: obj(sym_f(a, b)),
            latex=latex,
            vjp=vjp,
            precedence=prec,
            infix=infix,
            doc=doc,
            public=False,
        )
    )


_binary(
    "add",
    "+",
    PREC_ADD,
    np.add,
    lambda a, b: a + b,
    lambda n, g, i: unbroadcast(g, n.args[i].shape),
    lambda n, s: f"{_bcast_arg(n, 0, s, PREC_ADD)} + {_bcast_arg(n, 1, s, PREC_ADD + 1)}",
    "elementwise sum with broadcasting",
)
_binary(
    "sub",
    "-",
    PREC_ADD,
    np.subtract,
    lambda a, b: a - b,
    lambda n, g, i: unbroadcast(g if i == 0 else -g, n.args[i].shape),
    lambda n, s: f"{_bcast_arg(n, 0, s, PREC_ADD)} - {_bcast_arg(n, 1, s, PREC_ADD + 1)}",
    "elementwise difference with broadcasting",
)


def _mul_latex(n: Call, s) -> str:
    a, b = n.args
    if isinstance(b, Const) and not isinstance(a, Const):
        a, b = b, a  # a constant factor goes first: 2 z, not z 2
    if isinstance(a, Const) and a.value == 0 and isinstance(b, Call) and b.fn == "ones":
        dims = r" \times ".join(dim_latex(d) for d in b.param("dims"))
        return rf"\mathbf{{0}}_{{{dims}}}"  # 0 * ones(n): the zero vector, not "0 1_n"
    if a is n.args[0]:
        left, right = _bcast_arg(n, 0, s, PREC_MUL), _bcast_arg(n, 1, s, PREC_MUL + 1)
    else:
        left, right = s(a, PREC_MUL), s(b, PREC_MUL + 1)
    if _is_scalar(a) and isinstance(b, Call) and b.fn in ("matmul", "outer"):
        # A scalar times a product is written by juxtaposition: 2 X^T (X w - r).
        right = s(b, PREC_MUL)
    if _is_scalar(a) or _is_scalar(b):
        if right.lstrip().startswith("-"):
            right = rf"\left({right}\right)"  # 2 (-x), never "2 -x" (which reads 2 - x)
        elif isinstance(a, Const) and _starts_with_number(right):
            return f"{left} \\cdot {right}"  # 3 \cdot 0.04, 2 \cdot \frac{1}{3}: never "3 0.04"
        return f"{left} \\, {right}" if not isinstance(a, Const) else f"{left} {right}"
    return f"{left} \\odot {right}"


def _starts_with_number(latex: str) -> bool:
    """Whether juxtaposing a number with `latex` would read as one number (3 0.5, 2 \\frac12)."""
    text = latex.lstrip()
    return text[:1].isdigit() or text.startswith(r"\frac")


_binary(
    "mul",
    "*",
    PREC_MUL,
    np.multiply,
    lambda a, b: a * b,
    lambda n, g, i: unbroadcast(g * n.args[1 - i], n.args[i].shape),
    _mul_latex,
    "elementwise (Hadamard) product with broadcasting",
)
_binary(
    "div",
    "/",
    PREC_MUL,
    np.divide,
    lambda a, b: a / b,
    lambda n, g, i: unbroadcast(
        g / n.args[1] if i == 0 else -(g * n.args[0]) / n.args[1] ** 2, n.args[i].shape
    ),
    lambda n, s: rf"\frac{{{_bcast_arg(n, 0, s, 0)}}}{{{_bcast_arg(n, 1, s, 0)}}}",
    "elementwise quotient with broadcasting",
)


def _pow_vjp(n: Call, g: Expr, i: int) -> Expr:
    base, expo = n.args
    if i == 0:
        return unbroadcast(g * expo * base ** (expo - 1), base.shape)
    return unbroadcast(g * n * call("log", base), expo.shape)


def _pow_latex(n: Call, s) -> str:
    base, expo = n.args
    if isinstance(expo, Const) and expo.value == sympy.Rational(1, 2):
        return rf"\sqrt{{{s(base, 0)}}}"
    if isinstance(base, Call) and base.fn in BIG_OPERATORS:
        return rf"\left({s(base, 0)}\right)^{{{s(expo, 0)}}}"
    return f"{s(base, PREC_POW + 1)}^{{{s(expo, 0)}}}"


def _np_power(a, b):
    """np.power, but NaN for a negative base and a non-integer exponent, as for real numbers."""
    out = np.power(a, b)
    if np.iscomplexobj(out):
        bad = (np.real(a) < 0) & (np.real(b) != np.round(np.real(b)))
        out = np.where(bad, np.nan, out)
    return out


_binary(
    "pow",
    "**",
    PREC_POW,
    _np_power,
    lambda a, b: a**b,
    _pow_vjp,
    _pow_latex,
    "elementwise power with broadcasting",
)

register(
    Function(
        name="neg",
        nargs=1,
        shape=lambda s, p: s[0],
        numpy=np.negative,
        sympy=lambda a: obj(-a),
        latex=lambda n, s: f"-{s(n.args[0], PREC_NEG + 1)}",
        vjp=lambda n, g, i: -g,
        precedence=PREC_NEG,
        infix="-",
        doc="negation",
        public=False,
    )
)


# ---------------------------------------------------------------- matrix product


def _matmul_shape(shapes: tuple[Shape, ...], params) -> Shape:
    """numpy.matmul: vectors and matrices, and stacks of matrices batched over the leading axes
    (broadcast as NumPy broadcasts them); a vector operand is promoted and its axis removed."""
    a, b = shapes
    if not a or not b:
        raise ShapeError("@ needs vectors or matrices, got a scalar; use * for scalars")
    inner_a = a[-1]
    inner_b = b[0] if len(b) == 1 else b[-2]
    if inner_a != inner_b:
        raise ShapeError(
            f"@: inner dimensions differ: {format_shape(a)} @ {format_shape(b)} "
            f"({inner_a} vs {inner_b})"
        )
    if len(a) <= 2 and len(b) <= 2:
        return a[:-1] + b[1:] if len(b) == 2 else a[:-1]
    batch_a = a[:-2] if len(a) >= 2 else ()
    batch_b = b[:-2] if len(b) >= 2 else ()
    try:
        batch = broadcast(batch_a, batch_b)
    except ShapeError:
        raise ShapeError(
            f"@: batch axes do not broadcast: {format_shape(a)} @ {format_shape(b)}"
        ) from None
    rows = a[-2:-1] if len(a) >= 2 else ()
    cols = b[-1:] if len(b) >= 2 else ()
    return batch + rows + cols


def _swap_last(x: Expr) -> Expr:
    return call("swapaxes", x, axis1=-1, axis2=-2)


def _batched_matmul_vjp(n: Call, g: Expr, i: int) -> Expr:
    """The VJP of a batched product C = A @ B (rank 3 or more on one side): dA = G @ Bᵀ and
    dB = Aᵀ @ G with ᵀ the swap of the last two axes, summed over the batch axes along which
    an operand was broadcast; a vector operand contracts against G over every other axis."""
    a, b = n.args
    ra, rb = len(a.shape), len(b.shape)
    if ra == 1:  # a @ B: C[..., j] = sum_k a[k] B[..., k, j]
        if i == 0:
            prod = call("expand_dims", g, axis=-2) * b
            axes = tuple(k for k in range(len(prod.shape)) if k != len(prod.shape) - 2)
            return call("sum", prod, axis=axes)
        spread = call("expand_dims", a, axis=-1) * call("expand_dims", g, axis=-2)
        return unbroadcast(spread, b.shape)
    if rb == 1:  # A @ b: C[..., i] = sum_k A[..., i, k] b[k]
        if i == 1:
            prod = call("expand_dims", g, axis=-1) * a
            return call("sum", prod, axis=tuple(range(len(prod.shape) - 1)))
        return unbroadcast(call("expand_dims", g, axis=-1) * b, a.shape)
    if i == 0:
        return unbroadcast(g @ (b.T if rb == 2 else _swap_last(b)), a.shape)
    return unbroadcast((a.T if ra == 2 else _swap_last(a)) @ g, b.shape)


def _matmul_vjp(n: Call, g: Expr, i: int) -> Expr:
    a, b = n.args
    ra, rb = len(a.shape), len(b.shape)
    if ra > 2 or rb > 2:
        return _batched_matmul_vjp(n, g, i)
    if ra == 2 and rb == 2:
        return g @ b.T if i == 0 else a.T @ g
    if ra == 2 and rb == 1:
        return call("outer", g, b) if i == 0 else a.T @ g
    if ra == 1 and rb == 2:
        return b @ g if i == 0 else call("outer", a, g)
    return g * b if i == 0 else g * a


def _matmul_latex(n: Call, s) -> str:
    a, b = n.args
    left = s(a, PREC_MUL)
    right = s(b, PREC_MUL + 1)
    if len(a.shape) == 1:
        left = f"{s(a, PREC_POSTFIX + 1)}^\\top"
    return f"{left} {right}"


register(
    Function(
        name="matmul",
        nargs=2,
        shape=_matmul_shape,
        numpy=np.matmul,
        sympy=lambda a, b: obj(np.matmul(a, b)) if a.ndim + b.ndim > 2 else obj(_dot(a, b)),
        latex=_matmul_latex,
        vjp=_matmul_vjp,
        precedence=PREC_MUL,
        infix="@",
        doc="matrix product as numpy.matmul: batched over leading axes (vector @ vector is the "
        "dot product)",
        public=False,
    )
)


def _dot(a: np.ndarray, b: np.ndarray) -> sympy.Expr:
    return sympy.Add(*[x * y for x, y in zip(a.tolist(), b.tolist(), strict=True)])


def _transpose_shape(shapes: tuple[Shape, ...], p) -> Shape:
    (s,) = shapes
    axes = p["axes"]
    if axes is None:
        if len(s) > 2:
            raise ShapeError(
                f".T (transpose without axes) is defined for rank <= 2, got rank {len(s)}; "
                "use swapaxes(x, -1, -2) or transpose(x, axes)"
            )
        return tuple(reversed(s))
    return tuple(s[a] for a in permutation(axes, len(s), "transpose"))


def permutation(axes, rank: int, fname: str) -> tuple[int, ...]:
    """`axes` as a permutation of range(rank) (negative axes counted from the end)."""
    if not isinstance(axes, tuple) or len(axes) != rank:
        raise ShapeError(f"{fname}(): axes must be a tuple of {rank} axes, one per axis")
    norm = tuple(normalize_axis(a, rank, fname) for a in axes)
    if sorted(norm) != list(range(rank)):
        raise ShapeError(f"{fname}(): axes {axes} are not a permutation of the {rank} axes")
    return norm


def _transpose_np(a, axes=None):
    return np.transpose(a, axes)


def _transpose_vjp(n: Call, g: Expr, i: int) -> Expr:
    axes = n.param("axes")
    if axes is None:
        return g.T
    perm = permutation(axes, len(n.shape), "transpose")
    inverse = tuple(int(k) for k in np.argsort(perm))
    return call("transpose", g, axes=inverse)


def _transpose_latex(n: Call, s) -> str:
    axes = n.param("axes")
    if axes is None:
        return f"{s(n.args[0], PREC_POSTFIX + 1)}^\\top"
    perm = permutation(axes, len(n.shape), "transpose")
    return rf"{s(n.args[0], PREC_POSTFIX + 1)}^{{\top_{{({','.join(map(str, perm))})}}}}"


register(
    Function(
        name="transpose",
        nargs=1,
        shape=_transpose_shape,
        numpy=_transpose_np,
        sympy=lambda a, axes=None: obj(np.transpose(a, axes)),
        latex=_transpose_latex,
        vjp=_transpose_vjp,
        params={"axes": None},
        precedence=PREC_POSTFIX,
        infix=".T",
        doc="transpose: x.T (rank <= 2), or transpose(x, axes) permuting the axes as np.transpose",
        positional=("axes",),
    )
)
