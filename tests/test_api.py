"""Tests of the Python API: verify, assert_claim, to_sympy and to_numpy."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import engine
from engine import (
    EngineError,
    Result,
    assert_claim,
    build_environment,
    parse_formula,
    to_numpy,
    to_sympy,
    verify,
)

VARS = {"z": "real[n]", "y": "simplex[n]", "A": "real[n, m]", "s": "real"}


def formula(text: str):
    return parse_formula(text, build_environment(VARS))


def test_public_names():
    for name in ("verify", "assert_claim", "to_sympy", "to_numpy", "parse_formula", "Result"):
        assert name in engine.__all__ and hasattr(engine, name)


def test_verify_returns_a_result():
    result = verify("sum(softmax(z)) == 1", VARS, name="norm")
    assert isinstance(result, Result)
    assert result.passed and result.name == "norm" and result.verdict == "pass"


def test_assert_claim_returns_the_result_when_it_passes():
    result = assert_claim("grad(cross_entropy(p, y), z) == p - y", VARS, {"p": "softmax(z)"})
    assert result.passed


def test_assert_claim_raises_with_the_report_when_it_fails():
    with pytest.raises(AssertionError) as info:
        assert_claim("grad(cross_entropy(p, y), z) == y - p", VARS, {"p": "softmax(z)"}, name="s")
    text = str(info.value)
    assert text.startswith("FAIL s\n  the two sides differ")
    assert "exact check at n=2: entry [" in text


def test_assert_claim_raises_on_errors_too():
    with pytest.raises(AssertionError, match=r"^ERROR claim: unknown name 'q'$"):
        assert_claim("z == q", VARS)


def test_to_sympy_gives_exact_sympy_objects_at_chosen_sizes():
    z0, z1 = sympy.symbols("z[0] z[1]", real=True)
    value = to_sympy(formula("softmax(z)"), {"n": 2})
    assert isinstance(value, sympy.ImmutableMatrix) and value.shape == (2, 1)
    assert sympy.simplify(value[0] - 1 / (1 + sympy.exp(z1 - z0))) == 0
    assert to_sympy(formula("sum(z ** 2)"), {"n": 2}) == z0**2 + z1**2
    grad = to_sympy(formula("grad(sum(z ** 3), z)"), {"n": 2})
    assert grad == sympy.Matrix([3 * z0**2, 3 * z1**2])
    matrix = to_sympy(formula("A.T"), {"n": 2, "m": 3})
    assert matrix.shape == (3, 2) and str(matrix[2, 1]) == "A[1,2]"
    assert to_sympy(formula("n * sqrt(m)"), {"n": 2, "m": 9}) == 6


def test_to_sympy_symbols_carry_the_type_assumptions():
    value = to_sympy(formula("log(y)"), {"n": 2})
    assert all(sym.is_positive for sym in value.free_symbols)


def test_to_numpy_gives_a_callable_with_sizes_inferred():
    f = to_numpy(formula("softmax(z)"))
    np.testing.assert_allclose(f(z=[0.0, np.log(3.0)]), [0.25, 0.75], rtol=1e-15)
    g = to_numpy(formula("grad(sum(z ** 3), z)"))
    np.testing.assert_allclose(g(z=[1.0, -2.0, 0.5]), [3.0, 12.0, 0.75], rtol=1e-14)
    h = to_numpy(formula("sum(A, axis=0) + m"))
    np.testing.assert_allclose(h(A=np.arange(6.0).reshape(2, 3)), [6.0, 8.0, 10.0])


def test_jacobian_orientation_is_rows_of_outputs():
    """J[i, j] = d f_i / d x_j: for f = M @ v (M is 3 x 2) the Jacobian is M itself."""
    env = build_environment({"M": "real[3, 2]", "v": "real[2]"})
    m = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    jac = to_numpy(parse_formula("jacobian(M @ v, v)", env))(M=m, v=[0.3, -0.7])
    np.testing.assert_allclose(jac, m, rtol=1e-15)
    v0, v1 = sympy.symbols("v[0] v[1]", real=True)
    exact = to_sympy(parse_formula("jacobian(3 * v ** 2, v)", env), {})
    assert exact == sympy.Matrix([[6 * v0, 0], [0, 6 * v1]])
    assert verify("jacobian(M @ v, v) == M", {"M": "real[m, n]", "v": "real[n]"}).passed
    wrong = verify("jacobian(M @ v, v) == M.T", {"M": "real[m, n]", "v": "real[n]"})
    assert wrong.message == "the two sides have different shapes: (m, n) and (n, m)"


def test_to_numpy_agrees_with_to_sympy():
    expr = formula("logsumexp(A, axis=1) * s")
    rng = np.random.default_rng(0)
    a, s = rng.standard_normal((2, 3)), 0.7
    exact = to_sympy(expr, {"n": 2, "m": 3})
    subs = {sympy.Symbol(f"A[{i},{j}]", real=True): a[i, j] for i in range(2) for j in range(3)}
    subs[sympy.Symbol("s", real=True)] = s
    expected = [float(v.xreplace(subs)) for v in exact]
    np.testing.assert_allclose(to_numpy(expr)(A=a, s=s), expected, rtol=1e-13)


def test_to_numpy_refuses_inconsistent_inputs():
    f = to_numpy(formula("z @ A"))
    with pytest.raises(EngineError, match="size n is 3 in one place and 2 in another"):
        f(z=np.ones(3), A=np.ones((2, 4)))
    with pytest.raises(EngineError, match="no value given for variable 'A'"):
        f(z=np.ones(3))
    with pytest.raises(EngineError, match="should have shape"):
        f(z=np.ones((3, 1)), A=np.ones((3, 4)))
