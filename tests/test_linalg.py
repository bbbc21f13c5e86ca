"""Linear algebra: det, logdet, inv, solve, norm, the matrix types, Matrix Cookbook identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.backends import numpy_backend, sympy_backend
from engine.expr import EngineError, ShapeError
from engine.functions.matrices import sym_det, sym_inv
from engine.matrix_types import _cayley, _rationalize_orthogonal
from engine.parser import ParseError, build_environment, parse_formula
from engine.types import TYPES
from engine.verify import verify

SMALL = {"n": 8, "m": 6}  # numeric sizes for the identities below (the corpus runs n = 64)


def numpy_value(text: str, vars: dict[str, str], **values) -> np.ndarray:
    expr = parse_formula(text, build_environment(vars))
    return numpy_backend.evaluate(expr, {k: np.asarray(v, float) for k, v in values.items()}, {})


def sympy_value(text: str, vars: dict[str, str], **values) -> np.ndarray:
    expr = parse_formula(text, build_environment(vars))
    arrays = {
        k: np.array(sympy.Matrix(v).tolist() if np.ndim(v) == 2 else v, dtype=object)
        for k, v in values.items()
    }
    arrays = {k: np.vectorize(sympy.nsimplify, otypes=[object])(v) for k, v in arrays.items()}
    return sympy_backend.evaluate(expr, arrays, {})


M22 = {"A": "real[2, 2]", "b": "real[2]", "x": "real[3]", "C": "real[2, 3]"}
A = [[2, 1], [1, 3]]  # det 5, inverse [[3, -1], [-1, 2]] / 5


@pytest.mark.parametrize(
    "text, values, expected",
    [
        ("det(A)", {"A": A}, 5.0),
        ("logdet(A)", {"A": A}, math.log(5)),
        ("inv(A)", {"A": A}, [[0.6, -0.2], [-0.2, 0.4]]),
        ("solve(A, b)", {"A": A, "b": [5, 5]}, [2.0, 1.0]),
        ("solve(A, C)", {"A": A, "C": [[5, 0, 1], [5, 5, 3]]}, [[2, -1, 0], [1, 2, 1]]),
        ("norm(x)", {"x": [2, 3, 6]}, 7.0),
        ("norm(C)", {"C": [[1, 2, 2], [0, 0, 4]]}, 5.0),  # Frobenius
        ("norm(C, axis=1)", {"C": [[1, 2, 2], [0, 0, 4]]}, [3.0, 4.0]),
        ("norm(C, axis=0, keepdims=True)", {"C": [[3, 0, 2], [4, 0, 0]]}, [[5.0, 0.0, 2.0]]),
    ],
)
def test_hand_checked_values(text, values, expected):
    np.testing.assert_allclose(numpy_value(text, M22, **values), expected, rtol=1e-14, atol=1e-15)
    exact = sympy_value(text, M22, **values)
    got = np.array([float(sympy.N(v, 20)) for v in exact.flat]).reshape(exact.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)


def test_logdet_is_nan_off_its_domain_and_singular_inverses_do_not_raise():
    assert np.isnan(numpy_value("logdet(A)", M22, A=[[0, 1], [1, 0]]))  # det -1
    assert np.all(np.isnan(numpy_value("inv(A)", M22, A=[[1, 2], [2, 4]])))
    assert np.all(np.isnan(numpy_value("solve(A, b)", M22, A=[[1, 2], [2, 4]], b=[1, 1])))


def test_a_singular_claim_is_a_clean_error():
    result = verify("inv(A - A) == A", {"A": "real[n, n]"})
    assert result.verdict == "error" and "\n" not in result.message


@pytest.mark.parametrize(
    "fn, derivative",
    [
        ("det", lambda a, e: np.linalg.det(a) * np.trace(np.linalg.solve(a, e))),
        ("logdet", lambda a, e: np.trace(np.linalg.solve(a, e))),
        ("inv", lambda a, e: -np.linalg.inv(a) @ e @ np.linalg.inv(a)),
        ("norm", lambda a, e: np.sum(a * e) / np.linalg.norm(a)),
    ],
)
def test_numpy_forms_take_complex_steps(fn, derivative):
    """Im f(A + ih E) / h is the directional derivative: what complex-step needs."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 4))
    a = a @ a.T + np.eye(4)
    e = rng.standard_normal((4, 4))
    h = 1e-20
    got = numpy_value(f"{fn}(A)", {"A": "real[4, 4]"}, A=a)  # real value first
    assert np.all(np.isfinite(got))
    env = build_environment({"A": "real[4, 4]"})
    step = numpy_backend.evaluate(parse_formula(f"{fn}(A)", env), {"A": a + 1j * h * e}, {})
    np.testing.assert_allclose(step.imag / h, derivative(a, e), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "text, message",
    [
        ("det(C)", "det() needs a square matrix, got shape (2, 3)"),
        ("logdet(b)", "logdet() needs a square matrix, got shape (2,)"),
        ("inv(C)", "inv() needs a square matrix, got shape (2, 3)"),
        ("solve(C, b)", "solve() needs a square matrix, got shape (2, 3)"),
        ("solve(A, x)", "solve(A, B) needs B of shape (2,) or (2, k), got (3,)"),
        ("norm(det(A))", "norm() needs a vector or matrix, got shape scalar"),
        ("norm(C, axis=2)", "norm(): axis 2 is out of range for an array of rank 2"),
    ],
)
def test_shape_rules_give_one_line_errors(text, message):
    with pytest.raises(ShapeError) as info:
        parse_formula(text, build_environment(M22))
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, shape",
    [("det(A)", ()), ("inv(A)", (2, 2)), ("solve(A, C)", (2, 3)), ("norm(C, axis=1)", (2,))],
)
def test_shape_rules(text, shape):
    assert parse_formula(text, build_environment(M22)).shape == tuple(map(sympy.Integer, shape))


@pytest.mark.parametrize("tname", ["symmetric", "spd", "orthogonal"])
@pytest.mark.parametrize("text", ["{t}[n]", "{t}[n, m]", "{t}[n, n, n]", "{t}"])
def test_square_types_need_a_square_matrix(tname, text):
    with pytest.raises(ParseError, match=f"type '{tname}' needs a square matrix"):
        build_environment({"X": text.format(t=tname)})


# ---------------------------------------------------------------- the exact forms


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 4), st.integers(0, 10**6))
def test_cofactor_inverse_and_determinant_are_sympys(n, seed):
    """The memoized cofactor expansion against SymPy's own det and inverse, exactly."""
    rng = np.random.default_rng(seed)
    x = TYPES["real"].exact(rng, (n, n))
    m = sympy.Matrix(x.tolist())
    assert sympy.simplify(sym_det(x) - m.det()) == 0
    if m.det() != 0:
        assert sympy.Matrix(sym_inv(x).tolist()) == m.inv()


def test_cofactor_forms_are_polynomials_over_the_determinant():
    x = sympy_backend.symbol_arrays(build_environment({"X": "real[3, 3]"}).vars, {})["X"]
    d = sym_det(x)
    assert sympy.Poly(d, *x.flat).total_degree() == 3 and len(sympy.expand(d).args) == 6
    with pytest.raises(ZeroDivisionError):
        sym_inv(np.array([[sympy.Integer(1), 2], [2, 4]], dtype=object))


# ---------------------------------------------------------------- the matrix types


@pytest.mark.parametrize("seed", range(6))
def test_exact_orthogonal_draws_have_both_determinants(seed):
    dets = set()
    for k in range(8):
        q = TYPES["orthogonal"].exact(np.random.default_rng([seed, k]), (3, 3))
        m = sympy.Matrix(q.tolist())
        assert m.T * m == sympy.eye(3)
        dets.add(m.det())
    assert dets <= {1, -1}
    if seed == 0:
        assert dets == {1, -1}


def test_cayley_transform_is_orthogonal_for_every_skew_matrix():
    k = np.array([[0, sympy.Rational(1, 3), 2], [sympy.Rational(-1, 3), 0, -5], [-2, 5, 0]])
    q = sympy.Matrix(_cayley(k.astype(object)).tolist())
    assert q.T * q == sympy.eye(3) and q.det() == 1


@pytest.mark.parametrize("seed", range(4))
def test_a_float_orthogonal_matrix_rationalizes_to_an_exact_one_nearby(seed):
    q = TYPES["orthogonal"].numeric(np.random.default_rng(seed), (4, 4), "unit")
    r = _rationalize_orthogonal(q)
    m = sympy.Matrix(r.tolist())
    assert m.T * m == sympy.eye(4)
    assert np.max(np.abs(np.asarray(r, dtype=float) - q)) < 1e-9


def test_exact_spd_draws_are_well_conditioned():
    for seed in range(5):
        x = TYPES["spd"].exact(np.random.default_rng(seed), (4, 4))
        eig = np.linalg.eigvalsh(np.asarray(x, dtype=float))
        assert 1 - 1e-12 <= eig.min() and eig.max() <= 1 + 4 + 1e-12  # B B^T + I, |B_ij| < 1


def test_scaled_draws_keep_their_kind():
    rng = np.random.default_rng(0)
    for tname in ("symmetric", "spd", "orthogonal"):
        t = TYPES[tname]
        for scale in (sympy.Rational(1, 1000), sympy.Integer(30)):
            assert t.admits(np.asarray(t.exact_at(rng, (3, 3), scale), dtype=float))
            assert t.admits(t.numeric_at(rng, (3, 3), float(scale)))


# ---------------------------------------------------------------- Matrix Cookbook identities

COOKBOOK = {
    "X": "spd[n, n]",
    "A": "real[n, n]",
    "B": "real[n, n]",
    "x": "real[n]",
    "y": "real[n]",
}


@pytest.mark.parametrize(
    "claim",
    [
        "grad(logdet(X), X) == inv(X).T",  # (57)
        "grad(log(det(A) ** 2) / 2, A) == inv(A).T",  # (57) for log |det A|
        "grad(det(A), A) == det(A) * inv(A).T",  # (49)
        "grad(trace(A @ inv(X) @ B), X) == -(inv(X).T @ A.T @ B.T @ inv(X).T)",  # (63)
        "grad(x @ A @ x, x) == (A + A.T) @ x",  # (81)
        "grad(x @ A @ y, A) == outer(x, y)",  # (70)
        "grad(norm(x), x) == x / norm(x)",  # (129)
        "grad(y @ solve(A, x), A) == -outer(solve(A.T, y), solve(A, x))",
    ],
)
def test_matrix_cookbook_identities(claim):
    result = verify(claim, COOKBOOK, numeric_sizes=SMALL)
    assert result.passed, result.report()


@pytest.mark.parametrize(
    "claim",
    [
        "grad(log(det(A) ** 2) / 2, A) == inv(A)",  # the transpose dropped
        "grad(det(A), A) == det(A) * inv(A)",
        "grad(trace(A @ inv(X) @ B), X) == inv(X).T @ A.T @ B.T @ inv(X).T",  # the sign
        "grad(x @ A @ x, x) == 2 * A @ x",  # only for symmetric A
        "grad(x @ A @ y, A) == outer(y, x)",
        "grad(norm(x), x) == x / norm(x) ** 2",
    ],
)
def test_matrix_cookbook_planted_bugs_fail_in_both_routes(claim):
    result = verify(claim, COOKBOOK, numeric_sizes=SMALL)
    assert result.verdict == "fail", result.report()
    assert [c.passed for c in result.checks] == [False, False], result.report()


def test_the_exact_route_differentiates_log_det_through_concrete_matrices():
    """SymPy's MatrixSymbol diff of log(det(X)) is silently wrong (a measured pitfall): the exact
    route never uses it. Its sides are arrays of entry symbols, at concrete sizes."""
    env = build_environment({"A": "real[n, n]"})
    expr = parse_formula("grad(log(det(A) ** 2) / 2, A)", env)
    value = sympy_backend.to_sympy(expr, {"n": 3})
    assert isinstance(value, sympy.ImmutableMatrix) and not value.atoms(sympy.MatrixSymbol)
    a = sympy.Matrix(3, 3, lambda i, j: sympy.Symbol(f"A[{i},{j}]", real=True))
    point = {s: sympy.Rational(k * k - 3 * k + 1, 7) for k, s in enumerate(a)}
    assert (value - a.inv().T).xreplace(point).applyfunc(sympy.simplify) == sympy.zeros(3, 3)


def test_export_forms_exist_for_every_linear_algebra_function():
    from engine.export.forms import FORMS, TARGETS

    for fn in ("det", "logdet", "inv", "solve", "norm"):
        assert all(t in FORMS[fn] for t in TARGETS), fn


def test_errors_name_the_problem_in_one_line():
    with pytest.raises(EngineError, match="takes 2 arguments"):
        parse_formula("solve(A)", build_environment(M22))


def test_derive_and_torch_autograd_agree_on_a_gaussian_negative_log_likelihood(tmp_path):
    """derive's program for log det X + b^T X^{-1} b (verified by both routes), exported to
    PyTorch, against torch.autograd at an spd point."""
    import importlib.util

    torch = pytest.importorskip("torch")
    from engine.derive import derive
    from engine.export import to_module
    from engine.expr import call
    from engine.verify import verify_sides

    vars = {"X": "spd[n, n]", "b": "real[n]", "A": "real[n, n]"}
    text = "logdet(X) + b @ solve(X, b) + norm(A @ b) * det(A)"
    program = derive(text, ["X", "b", "A"], vars, verify=False)
    for name, gradient in program.gradients:  # both routes, numeric at n = 8 to stay quick
        lhs = call("grad", program.output, program.env.vars[name])
        result = verify_sides(lhs, gradient, program.env, numeric_sizes=SMALL)
        assert result.passed, result.report()
    path = tmp_path / "nll_torch.py"
    path.write_text(to_module(program, "torch"))
    spec = importlib.util.spec_from_file_location("nll_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(5)
    x = TYPES["spd"].numeric(rng, (6, 6), "wide")
    b, a = rng.standard_normal(6), rng.standard_normal((6, 6))
    value, grads = module.value_and_grad(x, b, a)
    xt, bt, at = (torch.tensor(v, requires_grad=True) for v in (x, b, a))
    ref = (
        torch.logdet(xt)
        + bt @ torch.linalg.solve(xt, bt)
        + torch.linalg.norm(at @ bt) * (torch.linalg.det(at))
    )
    ref.backward()
    assert float(value) == pytest.approx(float(ref.detach()), rel=1e-12)
    for name, t in (("X", xt), ("b", bt), ("A", at)):
        np.testing.assert_allclose(grads[name].numpy(), t.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_the_cli_help_lists_every_type():
    from click.testing import CliRunner

    from engine.cli import cli

    out = CliRunner().invoke(cli, ["verify", "--help"]).output
    assert all(name in out for name in TYPES), out
    assert "kl(p, q) >= 0" in out  # an inequality example


@pytest.mark.parametrize(
    "q",
    [
        np.diag([1.0, -1.0, -1.0]),  # a diagonal of signs: I + Q is singular
        np.diag([-1.0, 1.0]),  # a reflection
        -np.eye(4),
        np.array([[0.0, 1.0], [1.0, 0.0]]),  # a permutation, det -1
    ],
)
def test_orthogonal_matrices_with_eigenvalue_minus_one_rationalize_exactly(q):
    """Found by a kink claim: the exact route rationalizes the float points of its kink search,
    and an orthogonal matrix with eigenvalue -1 has no Cayley transform without a sign flip."""
    r = sympy.Matrix(_rationalize_orthogonal(q).tolist())
    assert r.T * r == sympy.eye(q.shape[0])
    np.testing.assert_allclose(np.asarray(r.tolist(), dtype=float), q, atol=1e-9)


def test_kink_claims_over_orthogonal_matrices_are_checked_on_both_sides():
    vars = {"Q": "orthogonal[n, n]", "x": "real[n]", "s": "real"}
    good = verify("relu(Q @ x - s) - relu(s - Q @ x) == Q @ x - s", vars, numeric_sizes=SMALL)
    assert good.passed and "kinks 2/2 both sides" in good.summary(), good.report()
    bad = verify("abs(Q.T @ Q @ x - 1) == abs(x + 1)", vars, numeric_sizes=SMALL)
    assert bad.verdict == "fail", bad.report()
