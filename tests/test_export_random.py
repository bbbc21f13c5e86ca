"""Random expression trees exported to every target agree with the NumPy backend's evaluation.

This is where precedence and parenthesization mistakes of the emitter would show: the trees
mix operators, functions, reductions with keepdims, transposes, sizes and constants freely.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_export_programs import jax_x64, load_module  # noqa: F401

from engine.backends import numpy_backend
from engine.derive.program import Program
from engine.export import to_module
from engine.expr import Const, Expr, Size, call
from engine.parser import build_environment, parse_formula

pytestmark = pytest.mark.usefixtures("jax_x64")

ENV = build_environment({"X": "real[n, k]", "Y": "positive[n, k]", "w": "real[n, k]"})
SIZES = {"n": 4, "k": 3}
X, Y = ENV.vars["X"], ENV.vars["Y"]

leaves = st.one_of(
    st.sampled_from([X, Y]),  # variables first: hypothesis favours the first branch
    st.sampled_from([Const(2), Const(-3), Const(sympy.Rational(1, 2)), Const(sympy.pi), Size("n")]),
)
BOUNDED = ("tanh", "sin", "cos", "sigmoid", "erf", "gelu_tanh")  # bounded, or nearly
ANY = ("abs", "relu", "softplus", "silu", "gelu", "neg")


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    def bounded(e: Expr) -> Expr:  # keeps exp, pow and division finite
        return call("tanh", e)

    def positive(e: Expr) -> Expr:
        return 1 + call("abs", e)

    unary = st.builds(lambda f, e: call(f, e), st.sampled_from(BOUNDED + ANY), children)
    guarded = st.one_of(
        st.builds(lambda e: call("exp", bounded(e)), children),
        st.builds(lambda e: call("log", positive(e)), children),
        st.builds(lambda e: call("sqrt", positive(e)), children),
        st.builds(lambda a, b: a / positive(b), children, children),
        st.builds(lambda a, b: a / (Y * call("exp", bounded(b))), children, children),
        st.builds(
            lambda e, p: positive(e) ** Const(p),
            children,
            st.sampled_from([2, -1, 3, sympy.Rational(1, 3)]),
        ),
        st.builds(lambda e: positive(e) ** bounded(e), children),
    )
    binary = st.builds(
        lambda op, a, b: call(op, a, b), st.sampled_from(["add", "sub", "mul"]), children, children
    )

    def matrix(e: Expr) -> Expr:  # a (n, k) array from anything, for the axis operations
        return e if len(e.shape) == 2 else e * call("ones", dims=X.shape)

    axis_ops = st.one_of(
        st.builds(
            lambda f, e, a: call(f, matrix(e), axis=a, keepdims=True),
            st.sampled_from(["sum", "mean", "var", "logsumexp"]),
            children,
            st.sampled_from([0, 1, -1]),
        ),
        st.builds(
            lambda f, e, a: call(f, matrix(e), axis=a),
            st.sampled_from(["softmax", "log_softmax"]),
            children,
            st.sampled_from([0, -1]),
        ),
        st.builds(lambda e: call("transpose", call("transpose", matrix(e))), children),
        st.builds(lambda e: matrix(e) @ call("transpose", matrix(e)) @ matrix(e), children),
    )
    return st.one_of(binary, unary, binary, guarded, axis_ops)


exprs = st.recursive(leaves, _extend, max_leaves=12)


def _program(f: Expr) -> Program:
    f = f if f.shape == X.shape else f * call("ones", dims=X.shape)  # broadcast to (n, k)
    w = ENV.vars["w"]
    return Program(call("sum", f * w), ENV, (), (("w", f),))


@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(f=exprs)
def test_random_trees_agree_with_numpy_backend(target, f, tmp_path):
    program = _program(f)
    rng = np.random.default_rng(0)
    inputs = {
        "X": rng.standard_normal((4, 3)),
        "Y": np.exp(0.5 * rng.standard_normal((4, 3))),
        "w": rng.standard_normal((4, 3)),
    }
    with np.errstate(all="ignore"):
        expected = numpy_backend.evaluate(program.gradients[0][1], inputs, SIZES)
    if not np.all(np.isfinite(expected)):
        return  # overflow in the reference itself: nothing to compare
    source = to_module(program, target)
    module = load_module(source, tmp_path, f"random_{target}")
    _, grads = module.value_and_grad(*inputs.values())
    got = np.asarray(grads["w"], dtype=np.float64)
    # two float64 implementations of the same formula: an exact 0 (the variance of a constant)
    # comes out as 0 in one and as rounding noise (5e-32) in the other, so the absolute floor is
    # relative to O(1) values, not to the (possibly all-noise) result
    scale = max(float(np.max(np.abs(expected))), 1.0)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12 * scale, err_msg=source)


def test_parenthesization_by_hand(tmp_path):
    """Cases where a wrong precedence would still run: each value is computed by hand."""
    env = build_environment({"a": "real", "b": "real", "w": "real"})
    cases = {
        "-a ** 2": -(2.0**2),
        "(-a) ** 2": 4.0,
        "a ** b ** 2": 2.0 ** (3.0**2),
        "(a ** b) ** 2": (2.0**3.0) ** 2,
        "a - (b - a)": 2.0 - (3.0 - 2.0),
        "a / (b * a)": 2.0 / 6.0,
        "a / b * a": 2.0 / 3.0 * 2.0,
        "-(a - b)": 1.0,
        "2 ** -a": 0.25,
        "(1/3) * a": 2.0 / 3.0,
        "a ** (1/3)": 2.0 ** (1 / 3),
        "-(-a)": 2.0,
    }
    for i, (text, want) in enumerate(cases.items()):
        f = parse_formula(text, env)
        program = Program(parse_formula(f"w * ({text})", env), env, (), (("w", f),))
        module = load_module(to_module(program), tmp_path, f"paren{i}")
        _, grads = module.value_and_grad(2.0, 3.0, 1.0)
        assert float(grads["w"]) == pytest.approx(want, rel=1e-15), text
