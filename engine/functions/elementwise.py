"""Elementwise functions: NumPy form (complex-step safe), SymPy form, derivative, LaTeX."""

from __future__ import annotations

from collections.abc import Callable

import mpmath
import numpy as np
import sympy
from sympy.core.evalf import prec_to_dps

from engine.expr import Call, Const, Expr, call
from engine.functions.base import Function, latex_fn, register, smooth_branch, sym_map

# NumPy forms take real or complex arrays. For complex input they are the analytic continuation
# of the real function (piecewise for relu/abs/step/sign, split on the real part), which is what
# complex-step differentiation needs.

_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
GELU_TANH_C = sympy.Rational(44715, 1000000)


def real_domain(x):
    """NaN where the real function is undefined (negative real part), also for complex-step input.

    NumPy's complex log and sqrt continue past the negative axis (log(-2 + 0j) = log 2 + i pi),
    which would turn a domain error into a huge, wrong complex-step derivative.
    """
    x = np.asarray(x)
    return np.where(x.real < 0, np.nan, x) if np.iscomplexobj(x) else x


def _np_sigmoid(x):
    x = np.asarray(x)
    with smooth_branch():
        pos = x.real >= 0
    ex = np.exp(np.where(pos, -x, x))
    return np.where(pos, 1.0 / (1.0 + ex), ex / (1.0 + ex))


def _np_softplus(x):
    x = np.asarray(x)
    with smooth_branch():
        pos = x.real > 0
    return np.where(pos, x, 0) + np.log1p(np.exp(np.where(pos, -x, x)))


def _np_abs(x):
    """|x|, continued for complex-step input with the slope 0 at x = 0 (PyTorch's abs'(0))."""
    x = np.asarray(x)
    if not np.iscomplexobj(x):
        return np.abs(x)
    return np.where(x.real > 0, x, np.where(x.real < 0, -x, x.real))


def _np_gelu_tanh(x):
    c = _constant(x, float(GELU_TANH_C), GELU_TANH_C)
    k = _constant(x, _SQRT_2_OVER_PI, sympy.sqrt(2 / sympy.pi))
    return 0.5 * x * (1.0 + np.tanh(k * (x + c * x**3)))


def _constant(x, value: float, exact: sympy.Expr):
    """A constant of a NumPy form: the float64 `value`, or on object arrays (the verifier's
    high-precision numbers) `exact` at mpmath's working precision. As a float64 the constant
    is off by 1e-17 relative, which a saturated tanh multiplies by its argument: gelu_tanh's
    derivative at -15.6 (2.3e-127) then differs by 3e-15 relative at any precision."""
    if np.asarray(x).dtype != object:
        return value
    return mpmath.mpf(sympy.N(exact, mpmath.mp.dps + 5)._mpf_)


def _np_erf(x):
    """scipy's erf; on object arrays (the verifier's high-precision numbers) each entry's own."""
    x = np.asarray(x)
    if x.dtype == object:
        return np.frompyfunc(lambda v: v.erf(), 1, 1)(x)
    import scipy.special  # on first use: importing scipy costs 0.2 s at start-up

    return scipy.special.erf(x)


def _keep_nan(x, y):
    """y, but NaN wherever x is NaN: a comparison would turn relu(log(-1)) into a silent 0.
    (Object arrays, the verifier's high-precision numbers, carry no NaN: a domain error raises.)"""
    if np.asarray(x).dtype == object:
        return y
    return np.where(np.isnan(x), x, y)


def evalf_continuous(f: sympy.Function, prec: int) -> sympy.Expr | None:
    """f at its arguments' numeric values: evalf of a call the exact route built unevaluated
    (`maximum(1, 2)` stays a call under `sympy.evaluate(False)`, and SymPy's evalf knows no
    mpmath function of that name). Only for functions continuous in their arguments (max,
    min, clip), whose value a rounded argument moves by no more than the rounding."""
    dps = prec_to_dps(prec)
    args = []
    for a in f.args:
        v = a if a.is_Rational else a.evalf(dps)
        if not (v.is_Number and v.is_comparable):
            return None
        args.append(v)
    return _evaluated_at(f, args, dps)


def evalf_jump(f: sympy.Function, prec: int) -> sympy.Expr | None:
    """evalf of step(x) or sign(x) built unevaluated: decided from an exact rational argument,
    or from a numeric one clearly away from the jump at 0 (more than half the working digits);
    otherwise left undecided (None), never guessed from a rounded zero."""
    dps = prec_to_dps(prec)
    (x,) = f.args
    if not x.is_Rational:
        v = x.evalf(dps)
        if not (v.is_Number and v.is_comparable) or abs(v) <= sympy.Float(10) ** (-(dps // 2)):
            return None
        x = v
    return _evaluated_at(f, [x], dps)


def _evaluated_at(f: sympy.Function, args: list, dps: int) -> sympy.Expr | None:
    """f's own eval at number arguments (the build around it may have evaluation off), as a
    float of `dps` digits; None when eval does not decide."""
    with sympy.evaluate(True):
        out = f.func(*args)
    return None if isinstance(out, f.func) or not out.is_Number else out.evalf(dps)


def compared_with_zero(n: int) -> tuple[tuple[int, ...], bool]:
    """A kinked function's `mp_compared`: its first argument's sign decides its branch."""
    return (0,), True


def compared_all(n: int) -> tuple[tuple[int, ...], bool]:
    """A kinked function's `mp_compared`: the order of all its arguments decides its branch."""
    return tuple(range(n)), False


# Every kinked function (a branch decided by comparing values) says which of its n arguments
# are compared, and whether with 0: `mp_compared(n) -> (indices, with_zero)`. `mp_jump` when its
# value jumps there (step, sign, where), not only its derivative (relu, abs, max, clip). The
# exact route decides such a branch exactly when rounding cannot (|x - hi| within the two
# values' rounding bounds): engine/verify/kinks.py.


class Relu(sympy.Function):
    """max(x, 0) with relu'(0) = 0 (PyTorch's subgradient); SymPy's Max would give 1/2."""

    is_real = True
    mp_compared = staticmethod(compared_with_zero)
    mp_jump = False

    @classmethod
    def eval(cls, x):
        # only numbers: relu(x) = x for a symbol known >= 0 would lose the kink at 0
        if x.is_number and x.is_comparable:
            return x if x > 0 else sympy.Integer(0)
        return None

    def fdiff(self, argindex=1):
        return Step(self.args[0])

    def _eval_evalf(self, prec):
        v = self.args[0]._eval_evalf(prec)
        if v is None or not v.is_comparable:
            return None
        return v if v > 0 else sympy.Float(0)


class Step(sympy.Function):
    """The Heaviside step, 1 for x > 0 and 0 for x <= 0, with derivative 0 everywhere."""

    is_real = True
    mp_compared = staticmethod(compared_with_zero)
    mp_jump = True

    @classmethod
    def eval(cls, x):
        if x.is_extended_positive:
            return sympy.Integer(1)
        if x.is_extended_nonpositive:
            return sympy.Integer(0)
        return None

    def fdiff(self, argindex=1):
        return sympy.Integer(0)

    def _eval_evalf(self, prec):
        return evalf_jump(self, prec)


class Sign(sympy.Function):
    """sign(x) in {-1, 0, 1} with derivative 0 everywhere (PyTorch's convention)."""

    is_real = True
    mp_compared = staticmethod(compared_with_zero)
    mp_jump = True

    @classmethod
    def eval(cls, x):
        if x.is_extended_positive:
            return sympy.Integer(1)
        if x.is_extended_negative:
            return sympy.Integer(-1)
        if x.is_zero:
            return sympy.Integer(0)
        return None

    def fdiff(self, argindex=1):
        return sympy.Integer(0)

    def _eval_evalf(self, prec):
        return evalf_jump(self, prec)


class Absolute(sympy.Function):
    """|x| with abs'(x) = sign(x), so abs'(0) = 0 (PyTorch's convention)."""

    is_real = True
    mp_compared = staticmethod(compared_with_zero)
    mp_jump = False

    @classmethod
    def eval(cls, x):
        if x.is_number and x.is_comparable:  # only numbers, as for Relu
            return x if x >= 0 else -x
        return None

    def _eval_evalf(self, prec):
        v = self.args[0]._eval_evalf(prec)
        if v is None or not v.is_comparable:
            return None
        return abs(v)

    def fdiff(self, argindex=1):
        return Sign(self.args[0])


def _sym_sigmoid(x):
    return 1 / (1 + sympy.exp(-x))


def _sym_gelu_tanh(x):
    return x / 2 * (1 + sympy.tanh(sympy.sqrt(2 / sympy.pi) * (x + GELU_TANH_C * x**3)))


def elementwise(
    name: str,
    np_f: Callable,
    sym_f: Callable[[sympy.Expr], sympy.Expr],
    derivative: Callable[[Call, Expr], Expr] | None,
    latex: Callable[[str], str],
    doc: str,
    public: bool = True,
    kink: bool = False,
) -> Function:
    """Register f(x) applied entrywise, with vjp g * f'(x); `derivative(node, x)` gives f'(x)."""
    vjp = None if derivative is None else (lambda n, g, i: g * derivative(n, n.args[0]))
    return register(
        Function(
            name=name,
            nargs=1,
            shape=lambda s, p: s[0],
            numpy=lambda x: np.asarray(np_f(np.asarray(x))),
            sympy=sym_map(sym_f),
            latex=lambda n, s: latex(s(n.args[0], 0)),
            vjp=vjp,
            doc=doc,
            public=public,
            kink=kink,
        )
    )


def _paren(name: str) -> Callable[[str], str]:
    return lambda a: rf"{name}\left({a}\right)"


half = Const(sympy.Rational(1, 2))

elementwise("exp", np.exp, sympy.exp, lambda n, x: n, _paren(r"\exp"), "exponential e^x")
elementwise(
    "log",
    lambda x: np.log(real_domain(x)),
    sympy.log,
    lambda n, x: 1 / x,
    _paren(r"\log"),
    "natural logarithm",
)
elementwise(
    "sqrt",
    lambda x: np.sqrt(real_domain(x)),
    sympy.sqrt,
    lambda n, x: half / n,
    lambda a: rf"\sqrt{{{a}}}",
    "square root",
)
elementwise(
    "abs",
    _np_abs,
    Absolute,
    lambda n, x: call("sign", x),
    lambda a: rf"\left|{a}\right|",
    "absolute value",
    kink=True,
)
elementwise("tanh", np.tanh, sympy.tanh, lambda n, x: 1 - n**2, _paren(r"\tanh"), "tanh")
elementwise(
    "sigmoid",
    _np_sigmoid,
    _sym_sigmoid,
    lambda n, x: n * (1 - n),
    _paren(r"\sigma"),
    "logistic sigmoid 1 / (1 + e^-x)",
)
elementwise("sin", np.sin, sympy.sin, lambda n, x: call("cos", x), _paren(r"\sin"), "sine")
elementwise("cos", np.cos, sympy.cos, lambda n, x: -call("sin", x), _paren(r"\cos"), "cosine")
elementwise(
    "relu",
    lambda x: _keep_nan(x, np.where(x.real > 0, x, 0)),
    Relu,
    lambda n, x: call("step", x),
    _paren(latex_fn("ReLU")),
    "rectified linear unit max(x, 0)",
    kink=True,
)
elementwise(
    "softplus",
    _np_softplus,
    lambda x: sympy.log(1 + sympy.exp(x)),
    lambda n, x: call("sigmoid", x),
    _paren(latex_fn("softplus")),
    "softplus log(1 + e^x)",
)
elementwise(
    "silu",
    lambda x: x * _np_sigmoid(x),
    lambda x: x * _sym_sigmoid(x),
    lambda n, x: call("sigmoid", x) * (1 + x * (1 - call("sigmoid", x))),
    _paren(latex_fn("SiLU")),
    "sigmoid linear unit x * sigmoid(x)",
)
elementwise(
    "erf",
    _np_erf,
    sympy.erf,
    lambda n, x: 2 / call("sqrt", Const(sympy.pi)) * call("exp", -(x**2)),
    _paren(latex_fn("erf")),
    "error function",
)
elementwise(
    "gelu",
    lambda x: 0.5 * x * (1.0 + _np_erf(x / _constant(x, np.sqrt(2.0), sympy.sqrt(2)))),
    lambda x: x / 2 * (1 + sympy.erf(x / sympy.sqrt(2))),
    lambda n, x: (
        half * (1 + call("erf", x / call("sqrt", Const(2))))
        + x * call("exp", -(x**2) / 2) / call("sqrt", 2 * Const(sympy.pi))
    ),
    _paren(latex_fn("GELU")),
    "Gaussian error linear unit x * Phi(x) (exact erf form)",
)


def _gelu_tanh_derivative(n: Call, x: Expr) -> Expr:
    c = Const(GELU_TANH_C)
    k = call("sqrt", 2 / Const(sympy.pi))
    t = call("tanh", k * (x + c * x**3))
    return half * (1 + t) + half * x * (1 - t**2) * k * (1 + 3 * c * x**2)


elementwise(
    "gelu_tanh",
    _np_gelu_tanh,
    _sym_gelu_tanh,
    _gelu_tanh_derivative,
    _paren(latex_fn("GELU") + r"_{\tanh}"),
    "GELU, tanh approximation",
)
elementwise(
    "sign",
    lambda x: np.sign(x.real),
    Sign,
    lambda n, x: 0 * x,
    _paren(latex_fn("sign")),
    "sign of x (-1, 0 or 1); derivative 0 (also at 0, as in PyTorch)",
    kink=True,
)
elementwise(
    "step",
    lambda x: _keep_nan(x, (x.real > 0).astype(float)),
    Step,
    lambda n, x: 0 * x,
    _paren(latex_fn("step")),
    "Heaviside step: 1 where x > 0, else 0 (the derivative of relu); derivative 0",
    kink=True,
)
