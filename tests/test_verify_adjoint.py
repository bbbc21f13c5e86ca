"""The exact route's reverse sweep (verify/adjoint.py) against sympy.diff, rule by rule."""

from __future__ import annotations

import mpmath
import pytest
import sympy

from engine.functions.elementwise import Absolute, Relu, Sign, Step
from engine.functions.probability import XLogY
from engine.verify.adjoint import NoAdjoint, gradient_at

x, y, z = sympy.symbols("x y z", real=True)
POINT = {x: sympy.Rational(7, 5), y: sympy.Rational(-3, 4), z: sympy.Rational(5, 3)}

# one expression per rule of the sweep, and compositions of them
EXPRESSIONS = [
    x + 2 * y + z,
    x * y * z,
    x**3 * y**-2,
    z ** sympy.Rational(1, 2) * x,
    z**x,
    sympy.exp(x * y) / (1 + sympy.exp(z)),
    sympy.log(z + x**2),
    sympy.tanh(x - y),
    sympy.sin(x) * sympy.cos(y * z),
    sympy.erf(x * z),
    Absolute(y) * x,
    Relu(x + y) + Relu(y),
    Step(x) * y + Sign(y) * z,
    XLogY(z, x) + XLogY(x, z),
    sympy.pi * x + sympy.Rational(1, 3) * y,
    (x + y) ** 2 * sympy.exp(-(z**2)) / (1 + x**2),
]


@pytest.mark.parametrize("f", EXPRESSIONS, ids=[str(e) for e in EXPRESSIONS])
def test_reverse_sweep_matches_sympy_diff(f):
    with mpmath.workdps(60):
        point = {s: mpmath.mpf(v.p) / v.q for s, v in POINT.items()}
        got = gradient_at(f, [x, y, z], point)
        for s, (g, bound) in zip([x, y, z], got, strict=True):
            want = sympy.diff(f, s).xreplace(POINT).evalf(60)
            assert abs(g - mpmath.mpf(sympy.Float(want, 60)._mpf_)) <= 1e-50 * max(1, abs(g))
            assert bound < 1e-50 * max(1, abs(g)) + 1e-50


def test_kinks_take_pytorchs_subgradient_zero():
    at0 = {x: mpmath.mpf(0)}
    for f in (Relu(x), Absolute(x), Step(x), Sign(x)):
        ((g, _),) = gradient_at(f, [x], at0)
        assert g == 0, f


def test_unknown_functions_and_complex_values_fall_back():
    with pytest.raises(NoAdjoint):
        gradient_at(sympy.gamma(x), [x], {x: mpmath.mpf(2)})
    with pytest.raises(NoAdjoint):
        gradient_at(sympy.log(x), [x], {x: mpmath.mpf(-2)})


def test_a_cancellation_shows_in_the_bound():
    # d/dx of exp(x) / (exp(x) + exp(y)) + exp(y) / (exp(x) + exp(y)) is 0 by cancellation
    s = sympy.exp(x) + sympy.exp(y)
    f = sympy.exp(x) / s + sympy.exp(y) / s
    with mpmath.workdps(40):
        ((g, bound),) = gradient_at(f, [x], {x: mpmath.mpf(1), y: mpmath.mpf(2)})
        assert abs(g) <= bound
