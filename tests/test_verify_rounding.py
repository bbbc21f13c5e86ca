"""A kink's branch that rounding cannot decide is decided exactly, on both routes.

The exact route's adjoint (engine/verify/adjoint.py) decides an order its rounding bounds leave
open in SymPy at the rational point; the numeric route's high-precision confirmation
(engine/verify/precision.py) evaluates again at more digits where a comparison was a near tie.
The claims of this family are in tests/corpus/probes_rounding.toml; these are the mechanisms.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy
from test_derive_random import VARS

from engine import derive
from engine.functions.elementwise import Relu, Step
from engine.functions.select import Clip, Maximum, MaxOf
from engine.functions.sorting import _np_sort
from engine.parser import build_environment, parse_equation
from engine.verify.adjoint import NoAdjoint, gradient_at
from engine.verify.precision import HP, confirm

s = sympy.Symbol("s", real=True)
x = sympy.Symbol("x", real=True)
TINY = sympy.exp(-300) * s  # positive at s > 0, far below 70 digits of 1


def _gradient(f, at: sympy.Rational, exact: bool = True):
    with mpmath.workdps(70):
        point = {s: mpmath.mpf(at.p) / at.q}
        ((g, _),) = gradient_at(f, [s], point, {s: at} if exact else None)
    return g


def _unevaluated(build):
    """Built with evaluation off, as the exact route builds its sides (1 + TINY - 1 stays)."""
    with sympy.evaluate(False):
        return build()


HALF = sympy.Rational(1, 2)
E = sympy.exp(-300)  # d TINY / ds
# f and its true derivative in s at s = 1/2, where rounding ties 1 + TINY with 1 at 70 digits
CASES = [
    (lambda: Clip(1 + TINY, -1, 1), 0),
    (lambda: Clip(1 + TINY, -1, 1 + 2 * TINY), E),
    (lambda: Clip(1 + 2 * TINY, -1, 1 + TINY), E),  # above hi: hi's slope
    (lambda: Clip(-1 - TINY, -1, 1), 0),
    (lambda: Maximum(1 + TINY, 1), E),
    (lambda: Maximum(1, 1 + TINY), E),
    (lambda: MaxOf(1, 1 + TINY, 1), E),
    (lambda: Relu(1 + TINY - 1), E),
    (lambda: Relu(1 - (1 + TINY)), 0),
    (lambda: s * Step(1 + TINY - 1), 1),
]


@pytest.mark.parametrize("k", range(len(CASES)))
def test_the_adjoint_decides_an_order_rounding_ties(k):
    build, want = CASES[k]
    got = _gradient(_unevaluated(build), HALF)
    with mpmath.workdps(70):
        want = mpmath.mpf(str(sympy.N(want, 80)))
        assert abs(got - want) <= mpmath.mpf(10) ** -60 * abs(want), (k, got, want)


def test_without_the_rational_point_an_open_order_leaves_the_sweep():
    f = _unevaluated(lambda: Clip(1 + TINY, -1, 1))
    with pytest.raises(NoAdjoint):
        _gradient(f, HALF, exact=False)


def test_an_exact_tie_keeps_the_kinks_convention():
    # x = 1 is a float's exact value: clip(x, -1, 1) has slope 1 at its bound (torch.clamp),
    # relu slope 0 at 0, max shares a tie; no SymPy decision is needed
    one = sympy.Integer(1)
    for f, want in [
        (Clip(x, -1, 1), 1),
        (Relu(x - 1), 0),
        (Maximum(x, 1), 0.5),
        (MaxOf(x, 1, 1), sympy.Rational(1, 3)),
    ]:
        with mpmath.workdps(70):
            ((g, _),) = gradient_at(f, [x], {x: mpmath.mpf(1)}, {x: one})
            assert abs(g - mpmath.mpf(want)) < mpmath.mpf(10) ** -60, f


def test_the_derived_gradient_ci_refused_now_verifies():
    # test_derive_random drew this: the clip bound 1 + sigmoid(s) ** 2 is 1 + 1e-106 at
    # s = -121 and det(...) is 1 + 1e-87; at 70 digits both are 1, and the adjoint took x's slope
    text = (
        "clip(det(eye(n) + outer(tanh((y) + (x)), tanh(clip(x, -1, 1 + (x) ** 2))) / n), -1, "
        "1 + (sigmoid(s)) ** 2)"
    )
    program = derive(text, ["s"], VARS)
    assert all(r.verdict == "pass" for _, r in program.results)


def _sides(equation: str):
    env = build_environment({"s": "real"})
    return parse_equation(equation, env)


def test_high_precision_escalates_past_a_near_tie():
    # float64 and 80 digits both see relu's argument as 0; 320 digits see e^-300 sigmoid(s)
    lhs, rhs = _sides(
        "grad(relu((1 + exp(-300) * sigmoid(s)) - 1), s) == "
        "exp(-300) * sigmoid(s) * (1 - sigmoid(s))"
    )
    rel, text, tied = confirm(lhs, rhs, {"s": np.asarray(0.5)}, {}, ())
    assert rel == 0.0 and not tied and "(at 320 digits)" in text


def test_a_tie_at_every_precision_is_reported_as_one():
    lhs, rhs = _sides("grad(relu(s - s), s) == 1")
    rel, _, tied = confirm(lhs, rhs, {"s": np.asarray(0.5)}, {}, ())
    assert rel > 0.5 and tied


def test_high_precision_numbers_sort_at_their_own_precision():
    with mpmath.workdps(80):
        one = HP(mpmath.mpf(1))
        above = HP(1 + mpmath.mpf(10) ** -60)
        values = np.array([above, one], dtype=object)
        got = _np_sort(values)
    assert got[0] is one and got[1] is above


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh"])
def test_numpy_forms_keep_their_constants_exact_at_high_precision(name):
    # the numeric route's confirmation runs the NumPy forms on HP numbers; a float64 constant
    # there (sqrt(2 / pi) to 17 digits) is an error a saturated tanh or erf multiplies
    from engine.functions import REGISTRY

    exact = {
        "gelu": lambda v: v / 2 * (1 + mpmath.erf(v / mpmath.sqrt(2))),
        "gelu_tanh": lambda v: (
            v
            / 2
            * (1 + mpmath.tanh(mpmath.sqrt(2 / mpmath.pi) * (v + mpmath.mpf(44715) / 10**6 * v**3)))
        ),
    }[name]
    with mpmath.workdps(320):
        for v in (mpmath.mpf(-15.6), mpmath.mpf(-9.25), mpmath.mpf(0.5)):
            got = REGISTRY[name].numpy(np.array([HP(v)], dtype=object))[0].v.real
            want = exact(v)
            assert abs(got - want) <= mpmath.mpf(10) ** -250 * abs(want), (name, v)


def test_a_saturated_gelu_under_abs_derives():
    # test_derive_random's abs(tanh(gelu_tanh(s))): refused by the exact route at s = -4 pi
    # (abs's sign from rounding) and by the numeric route at s = -15.6 (float64 constants)
    for seed in range(4):
        derive("abs(tanh(gelu_tanh(s)))", ["s"], VARS, seed=seed)


def test_a_smooth_functions_stable_branch_is_no_near_tie():
    # sigmoid's x >= 0 and softmax's max shift pick between equal values: no escalation there;
    # relu's x > 0 picks a kink's branch: a near tie at 0 is recorded
    from engine.functions import REGISTRY
    from engine.verify import precision

    def recorded(name: str, values) -> bool:
        ties: list = []
        token = precision._NEAR_TIES.set(ties)
        try:
            with mpmath.workdps(80):
                REGISTRY[name].numpy(np.array([HP(mpmath.mpf(v)) for v in values], dtype=object))
        finally:
            precision._NEAR_TIES.reset(token)
        return bool(ties)

    assert not recorded("sigmoid", [0])
    assert not recorded("softplus", [0])
    assert not recorded("softmax", [1, 1])
    assert not recorded("logsumexp", [1, 1])
    assert recorded("relu", [0])
    assert recorded("abs", [0])
    assert recorded("max", [1, 1])
