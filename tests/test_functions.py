"""Tests of the function registry: each function's SymPy and NumPy forms agree; shape rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy

from engine.backends import numpy_backend, sympy_backend
from engine.backends.common import concrete_shape
from engine.expr import EngineError, ShapeError, free_vars
from engine.functions import REGISTRY
from engine.index_type import declared_shape
from engine.parser import build_environment, parse_formula
from engine.types import TYPES

VARS = {
    "x": "real[n]",
    "w": "real[m]",
    "A": "real[n, m]",
    "S": "real[n, n]",
    "s": "real",
    "u": "positive[n]",
    "U": "positive[n, m]",
    "p": "simplex[n]",
    "q": "simplex[n]",
    "P": "simplex[m, n]",
    "Y": "simplex[n, m]",
    "t": "onehot[n]",
    # linear algebra (matrices.py)
    "K": "spd[n, n]",
    "O": "orthogonal[n, n]",
    "H": "symmetric[n, n]",
    # selection and masks (issue 8)
    "Mk": "mask[n, m]",
    "L": "mask[n, n]",
    # tensors of any rank (issue 8)
    "T": "real[b, n, m]",
    "R": "real[b, m, n]",
    "F": "real[b, 1, n, m]",
    # integer labels (issue 8): positions along A's last axis, along its first, along x
    "ya": "index[n, m]",
    "yc": "index[m, n]",
    "c": "index[n]",
    "yt": "index[b, m, n]",
}
SIZES = {"n": 3, "m": 2, "b": 4}
ELEMENTWISE = "exp tanh sigmoid sin cos relu softplus silu erf gelu gelu_tanh sign step abs".split()
POSITIVE_ONLY = ["log", "sqrt"]

CASES = [
    *[f"{f}(x)" for f in ELEMENTWISE],
    *[f"{f}(A)" for f in ELEMENTWISE],
    *[f"{f}(u)" for f in POSITIVE_ONLY],
    *[f"{f}(U)" for f in POSITIVE_ONLY],
    *[f"grad(sum({f}(x)), x)" for f in ELEMENTWISE],
    *[f"grad(sum({f}(A) * A), A)" for f in ELEMENTWISE],
    *[f"grad(sum({f}(u)), u)" for f in POSITIVE_ONLY],
    # reductions: no axis, every axis, keepdims
    *[
        f"{f}(A{args})"
        for f in ("sum", "mean", "var", "logsumexp")
        for args in (
            "",
            ", keepdims=True",
            ", axis=0",
            ", axis=1",
            ", axis=-1",
            ", axis=-2",
            ", axis=0, keepdims=True",
            ", axis=-1, keepdims=True",
        )
    ],
    *[f"{f}(x)" for f in ("sum", "mean", "var", "logsumexp")],
    *[f"{f}(s)" for f in ("sum", "mean", "var", "logsumexp")],  # var(s) once crashed
    *[
        f"{f}({arg})"
        for f in ("softmax", "log_softmax")
        for arg in ("x", "A", "A, axis=0", "A, axis=1", "A, axis=-2", "x, axis=0")
    ],
    # losses, including broadcasting of a distribution against a batch of targets
    "cross_entropy(p, q)",
    "cross_entropy(p, t)",
    "cross_entropy(p, P)",
    "entropy(p)",
    "entropy(P)",
    "kl(p, q)",
    "kl(Y, U)",
    # linear algebra
    "diag(x)",
    "diag(S)",
    "outer(x, w)",
    "eye(n)",
    "eye(3)",
    "ones(n)",
    "ones(n, m)",
    "trace(S)",
    "expand_dims(x)",
    "expand_dims(x, axis=1)",
    "expand_dims(A, axis=-1)",
    "expand_dims(A, axis=1)",
    # operators
    "A + w",
    "x - s",
    "A * expand_dims(x, axis=1)",
    "A / (1 + A ** 2)",
    "U ** w",
    "2 ** A",
    "-A",
    "A @ w",
    "x @ A",
    "A.T @ S",
    "x @ x",
    "A.T",
    "n * sqrt(m) - pi",
    # derivatives
    "grad(sum(x ** 3 * softmax(x)), x)",
    "grad(s ** 3 * exp(s), s)",
    "grad(sum(A @ w) ** 2, A)",
    "grad(cross_entropy(softmax(A, axis=0), Y), A)",
    "jacobian(softmax(x), x)",
    "jacobian(A.T @ tanh(x), x)",
    "jacobian(x * s, x)",
    # structure: slicing, indexing, concat, stack, reshape, split (engine/functions/structure.py)
    "x[0]",
    "x[-1]",
    "x[1:]",
    "x[:-1]",
    "A[:, 0]",
    "A[-1]",
    "A[1:, :1]",
    "A[-2:, -1]",
    "S[:, 1:n]",
    "concat([x, x, x])",
    "concat([A, S], axis=1)",
    "concat([A, A], axis=-2)",
    "stack([x, x])",
    "stack([x, 2 * x], axis=1)",
    "stack([A, A], axis=-1)",
    "reshape(A, (m, n))",
    "reshape(A, (n * m,))",
    "reshape(x, (1, n))",
    "split(concat([x, x]), 2)[1]",
    "grad(sum(A[:, :1] ** 2) + A[0] @ w, A)",
    "grad(sum(concat([x, 2 * x]) ** 3), x)",
    "jacobian(reshape(stack([x, x], axis=1), (2 * n,)), x)",
    "pad(x, (1, 2))",
    "pad(A, (0, n), axis=0)",
    "pad(A, (2, 1), axis=-1)",
    "grad(sum(pad(x, (1, 0)) ** 3), x)",
    # calculus: Jacobians of any ranks, Hessians
    "jacobian(tanh(A), A)",
    "jacobian(sum(A * A), A)",
    "jacobian(A @ w, A)",
    "jacobian(S @ tanh(x), S)",
    "hessian(sum(x ** 3 * softmax(x)), x)",
    "hessian(sum(tanh(A) * A), A)",
    "hessian(s ** 3 * exp(s), s)",
    # linear algebra of the Matrix Cookbook (matrices.py)
    "det(S)",
    "det(O)",
    "logdet(K)",
    "inv(S)",
    "inv(H) @ x",
    "solve(K, x)",
    "solve(S, A)",
    "norm(x)",
    "norm(A)",
    "norm(A, axis=1)",
    "norm(A, axis=0, keepdims=True)",
    "grad(logdet(K), K)",
    "grad(det(S), S)",
    "grad(norm(x), x)",
    "grad(trace(inv(S) @ K), S)",
    # selection, masks and stable elementwise functions (issue 8)
    *[f"{f}({a})" for f in ("expm1", "logsigmoid") for a in ("x", "A")],
    *[f"{f}(u)" for f in ("log1p", "expm1", "logsigmoid")],
    "log1p(U)",
    "log1p(u / 2 - 1/2)",
    *[f"grad(sum({f}(u) * u), u)" for f in ("log1p", "expm1", "logsigmoid")],
    "maximum(x, s)",
    "maximum(A, w)",
    "minimum(A, 1/2)",
    "minimum(x, u)",
    "clip(A, -1/2, 1/2)",
    "clip(x, -s, u)",
    "where(Mk, A, -A)",
    "where(L, S, 0)",
    "softmax(where(tril(n), S, -inf))",
    "softmax(where(L, S, -inf), axis=0)",
    "exp(-inf) + x",
    "tril(n)",
    "triu(n, k=1)",
    "tril(n, m, k=-1) * A",
    "triu(3, 2)",
    *[
        f"{f}(A{args})"
        for f in ("max", "min", "argmax", "argmin")
        for args in ("", ", axis=0", ", axis=-1, keepdims=True")
    ],
    "max(x) + min(s) + argmax(x)",
    "cumsum(x)",
    "cumsum(A, axis=0)",
    "cumsum(A, axis=-1)",
    "grad(sum(clip(A, -1/2, 1/2) * A), A)",
    "grad(sum(maximum(A, w) * A), w)",
    "grad(sum(max(A, axis=0) ** 2), A)",
    "grad(sum(cumsum(x) * x), x)",
    "sort(x)",
    "sort(A, axis=0, descending=True)",
    "unsort(A, A, axis=0) + unsort(A, -A, descending=True)",
    "grad(sum(sort(A) * A), A)",
    # tensors of any rank (issue 8): batched @, axes, tuple axes, einsum
    "T @ R",
    "T @ A.T",
    "A.T @ T",
    "T @ w",
    "x @ T",
    "F @ R",
    "swapaxes(T, 0, 2)",
    "swapaxes(T, -1, -2)",
    "transpose(T, (2, 0, 1))",
    "transpose(F, (3, 1, 0, 2))",
    "transpose(A, (1, 0))",
    "transpose(A)",
    "squeeze(F, 1)",
    "squeeze(F)",
    "squeeze(sum(A, axis=0, keepdims=True), axis=(0,))",
    "expand_dims(T, axis=(0, 3))",
    "ones(b, n, m) + ones(b, 1, n, m)",
    *[f"{f}(T, axis=(0, 2))" for f in ("sum", "mean", "var", "logsumexp")],
    *[f"{f}(F, axis=(0, -1), keepdims=True)" for f in ("sum", "mean", "var", "logsumexp")],
    "softmax(T, axis=(1, 2))",
    "log_softmax(F, axis=(0, 3))",
    'einsum("ij,jk->ik", A, A.T)',
    'einsum("ii->", S)',
    'einsum("ii->i", S)',
    'einsum("i,j->ij", x, w)',
    'einsum("bij,bjk->bik", T, R)',
    'einsum("bij->", T)',
    'einsum("ijk->kji", T)',
    'einsum("ij,ij,ij->i", A, A, A)',
    'einsum("bij,bji,b->b", T, R, sum(T, axis=(1, 2)))',
    "grad(sum(sin(T @ R)), T)",
    'grad(sum(sin(einsum("bij,bjk->bik", T, R))), R)',
    "grad(sum(softmax(F, axis=(0, 2)) * F), F)",
    # integer labels (issue 8): take_along_axis and one_hot
    "take_along_axis(A, ya)",
    "take_along_axis(A, yc, axis=0)",
    "take_along_axis(x, c)",
    "take_along_axis(T, yt, axis=1)",
    "one_hot(ya)",
    "one_hot(yc, axis=0) * A",
    "one_hot(c)",
    "one_hot(yt, axis=-2)",
    "grad(-sum(take_along_axis(log_softmax(A), ya)), A)",
    "grad(take_along_axis(x, c) ** 2, x)",
]


def sympy_and_numpy(text: str, sizes=SIZES, seed: int = 0):
    """The formula's SymPy form at a random rational point (to 30 digits) and its NumPy form."""
    env = build_environment(VARS)
    expr = parse_formula(text, env)
    used = free_vars(expr)
    rng = np.random.default_rng(seed)
    point = {
        name: TYPES[v.vtype].exact(rng, concrete_shape(declared_shape(v), sizes))
        for name, v in used.items()
    }
    symbols = sympy_backend.symbol_arrays(used, sizes)
    symbolic = sympy_backend.evaluate(expr, symbols, sizes)
    subs = {symbols[k][i]: point[k][i] for k in used for i in np.ndindex(point[k].shape)}
    exact = np.empty(symbolic.shape, dtype=float)
    for i in np.ndindex(symbolic.shape):
        exact[i] = float(sympy.N(sympy.sympify(symbolic[i]).xreplace(subs), 30))
    floats = {k: np.asarray(v, dtype=float) for k, v in point.items()}
    numeric = np.real(numpy_backend.evaluate(expr, floats, sizes))
    return expr, exact, numeric


@pytest.mark.parametrize("text", CASES)
def test_sympy_and_numpy_forms_agree(text):
    expr, exact, numeric = sympy_and_numpy(text)
    assert numeric.shape == exact.shape == concrete_shape(expr.shape, SIZES)
    scale = max(1.0, float(np.max(np.abs(exact), initial=0)))
    np.testing.assert_allclose(numeric, exact, rtol=1e-12, atol=1e-12 * scale)


def test_every_public_function_is_covered():
    public = {name for name, f in REGISTRY.items() if f.public}
    covered = {name for name in public if any(f"{name}(" in text for text in CASES)}
    assert covered == public


def test_every_operator_is_covered():
    operators = {name for name, f in REGISTRY.items() if not f.public}
    used = set()
    for text in CASES:
        env = build_environment(VARS)
        used |= {n.fn for n in parse_formula(text, env).walk() if hasattr(n, "fn")}
    assert operators <= used


# ---------------------------------------------------------------- hand-checked values


def numpy_value(text: str, **values):
    env = build_environment({k: f"real[{len(v)}]" for k, v in values.items()})
    expr = parse_formula(text, env)
    return numpy_backend.evaluate(expr, {k: np.array(v, float) for k, v in values.items()}, {})


def sympy_value(text: str, **values):
    env = build_environment({k: f"real[{len(v)}]" for k, v in values.items()})
    expr = parse_formula(text, env)
    arrays = {k: np.array(v, dtype=object) for k, v in values.items()}
    return sympy_backend.evaluate(expr, arrays, {})


LN3 = math.log(3)


@pytest.mark.parametrize(
    "text, values, expected",
    [
        ("softmax(z)", {"z": [0, LN3]}, [0.25, 0.75]),
        ("log_softmax(z)", {"z": [0, LN3]}, [math.log(0.25), math.log(0.75)]),
        ("logsumexp(z)", {"z": [0, LN3]}, math.log(4)),
        ("mean(z)", {"z": [1, 2, 3, 4]}, 2.5),
        ("var(z)", {"z": [1, 2, 3, 4]}, 1.25),  # population variance, ddof = 0
        ("sum(z)", {"z": [1, 2, 3, 4]}, 10),
        ("sigmoid(z)", {"z": [0, math.log(3)]}, [0.5, 0.75]),
        ("softplus(z)", {"z": [0]}, [math.log(2)]),
        ("relu(z)", {"z": [-2, 3]}, [0, 3]),
        ("step(z)", {"z": [-2, 0, 3]}, [0, 0, 1]),
        ("sign(z)", {"z": [-2, 0, 3]}, [-1, 0, 1]),
        ("abs(z)", {"z": [-2, 3]}, [2, 3]),
        ("silu(z)", {"z": [0, math.log(3)]}, [0, 0.75 * math.log(3)]),
        ("gelu(z)", {"z": [0, 1]}, [0, 0.8413447460685429]),  # x * Phi(x), Phi(1) from tables
        ("tanh(z)", {"z": [math.log(2)]}, [0.6]),  # (4 - 1) / (4 + 1)
        ("cross_entropy(p, y)", {"p": [0.25, 0.75], "y": [0, 1]}, math.log(4 / 3)),
        ("entropy(p)", {"p": [0.5, 0.5]}, math.log(2)),
        ("kl(p, q)", {"p": [0.5, 0.5], "q": [0.25, 0.75]}, 0.5 * math.log(4 / 3)),
        ("outer(a, b)", {"a": [1, 2], "b": [3, 4, 5]}, [[3, 4, 5], [6, 8, 10]]),
        ("diag(a)", {"a": [1, 2]}, [[1, 0], [0, 2]]),
        ("a @ b", {"a": [1, 2, 3], "b": [4, 5, 6]}, 32),
    ],
)
def test_hand_checked_values(text, values, expected):
    np.testing.assert_allclose(numpy_value(text, **values), expected, rtol=1e-14, atol=1e-15)
    exact = sympy_value(text, **values)
    got = np.array([float(sympy.N(v, 20)) for v in exact.flat]).reshape(exact.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-15)


def test_gelu_tanh_is_close_to_but_not_gelu():
    z = np.linspace(-3, 3, 13)
    exact, approx = numpy_value("gelu(z)", z=z), numpy_value("gelu_tanh(z)", z=z)
    assert 1e-5 < np.max(np.abs(exact - approx)) < 1e-3


def test_matrix_hand_values():
    env = build_environment({"M": "real[2, 2]", "B": "real[2, 3]"})
    m = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.arange(6.0).reshape(2, 3)
    assert float(numpy_backend.evaluate(parse_formula("trace(M)", env), {"M": m}, {})) == 5
    np.testing.assert_array_equal(
        numpy_backend.evaluate(parse_formula("diag(M)", env), {"M": m}, {}), [1, 4]
    )
    np.testing.assert_array_equal(
        numpy_backend.evaluate(parse_formula("M @ B", env), {"M": m, "B": b}, {}),
        [[6, 9, 12], [12, 19, 26]],
    )
    np.testing.assert_array_equal(
        numpy_backend.evaluate(parse_formula("sum(B, axis=0, keepdims=True)", env), {"B": b}, {}),
        [[3, 5, 7]],
    )


def test_numpy_forms_are_stable_at_extreme_inputs():
    big = [1000.0, 0.0, -1000.0]
    np.testing.assert_allclose(numpy_value("softmax(z)", z=big), [1, 0, 0], atol=1e-300)
    np.testing.assert_allclose(numpy_value("logsumexp(z)", z=[1000, 1000]), 1000 + math.log(2))
    np.testing.assert_allclose(numpy_value("log_softmax(z)", z=[1000, 0])[1], -1000)
    np.testing.assert_allclose(numpy_value("sigmoid(z)", z=big), [1, 0.5, 0], atol=1e-300)
    np.testing.assert_allclose(
        numpy_value("softplus(z)", z=big), [1000, math.log(2), 0], atol=1e-300
    )


def test_numpy_forms_keep_nan():
    """relu and step used to turn NaN (say log of a negative) into a silent 0."""
    for f in ("relu", "step", "sign", "abs", "sigmoid", "softplus", "silu", "gelu"):
        assert np.isnan(numpy_value(f"{f}(z)", z=[np.nan])[0]), f


def test_numpy_forms_take_complex_steps():
    """For complex input x + ih, Im f / h is f'(x): what complex-step differentiation needs."""
    h = 1e-20
    z = np.array([-1.3, 0.4, 2.2])
    for f, derivative in [
        ("sigmoid", lambda v: np.exp(-v) / (1 + np.exp(-v)) ** 2),
        ("softplus", lambda v: 1 / (1 + np.exp(-v))),
        ("abs", np.sign),
        ("relu", lambda v: (v > 0).astype(float)),
        ("tanh", lambda v: 1 - np.tanh(v) ** 2),
    ]:
        env = build_environment({"z": "real[3]"})
        value = numpy_backend.evaluate(parse_formula(f"{f}(z)", env), {"z": z + 1j * h}, {})
        np.testing.assert_allclose(value.imag / h, derivative(z), rtol=1e-13)


# ---------------------------------------------------------------- shape rules


@pytest.mark.parametrize(
    "text, message",
    [
        ("diag(A)", "diag() needs a vector (or a square matrix), got shape (n, m)"),
        ("diag(s)", "diag() needs a vector (or a square matrix), got shape scalar"),
        ("trace(x)", "trace() needs a square matrix, got shape (n,)"),
        ("outer(x, A)", "outer() needs two vectors, got shape (n, m)"),
        ("eye(n, m)", "eye() takes 1 to 1 sizes, got 2"),
        ("ones(n, m, n, m, n, m, n, m, n)", "ones() takes 1 to 8 sizes, got 9"),
        ("expand_dims(x, axis=2)", "expand_dims(): axis 2 is out of range for an array of rank 2"),
        ("sum(s, axis=0)", "sum() needs an array (not a scalar) when axis is given"),
        ("mean(A, axis=2)", "mean(): axis 2 is out of range for an array of rank 2"),
        ("var(A, axis=-3)", "var(): axis -3 is out of range for an array of rank 2"),
        ("logsumexp(x, axis=1)", "logsumexp(): axis 1 is out of range for an array of rank 1"),
        ("log_softmax(s)", "log_softmax() needs a vector or matrix, got shape scalar"),
        ("softmax(A, axis=2)", "softmax(): axis 2 is out of range for an array of rank 2"),
        ("cross_entropy(p, w)", "shapes (n,) and (m,) do not broadcast"),
        ("kl(A, S)", "shapes (n, m) and (n, n) do not broadcast"),
        ("hessian(A, x)", "hessian() needs a scalar function, got shape (n, m)"),
        ("hessian(x, S)", "hessian() needs a scalar function, got shape (n,)"),
        ("grad(A, x)", "grad() needs a scalar function, got shape (n, m)"),
        ("A @ x", "@: inner dimensions differ: (n, m) @ (n,) (m vs n)"),
        ("x @ S @ A.T @ w", "@: inner dimensions differ"),
        ("A + x", "shapes (n, m) and (n,) do not broadcast"),
    ],
)
def test_shape_rules_give_clear_errors(text, message):
    env = build_environment(VARS)
    with pytest.raises(ShapeError) as info:
        parse_formula(text, env)
    assert message in str(info.value)


@pytest.mark.parametrize(
    "text, shape",
    [
        ("cross_entropy(p, P)", ()),
        ("entropy(P)", ()),
        ("expand_dims(A, axis=-1)", ("n", "m", 1)),
        ("sum(A, axis=0, keepdims=True)", (1, "m")),
        ("var(A, keepdims=True)", (1, 1)),
        ("A + ones(1, m)", ("n", "m")),
        ("diag(S)", ("n",)),
        ("x @ A", ("m",)),
        ("jacobian(A.T @ x, x)", ("m", "n")),
        ("jacobian(A, A)", ("n", "m", "n", "m")),
        ("jacobian(A @ w, S)", ("n", "n", "n")),
        ("jacobian(sum(A), A)", ("n", "m")),
        ("jacobian(s * x, s)", ("n",)),
        ("hessian(sum(A), A)", ("n", "m", "n", "m")),
        ("hessian(sum(x), x)", ("n", "n")),
        ("hessian(s ** 3, s)", ()),
    ],
)
def test_shape_rules(text, shape):
    env = build_environment(VARS)
    expected = tuple(sympy.Integer(d) if isinstance(d, int) else env.sizes[d] for d in shape)
    assert parse_formula(text, env).shape == expected


def test_backends_refuse_missing_inputs():
    env = build_environment(VARS)
    expr = parse_formula("x + n", env)
    with pytest.raises(EngineError, match="no value given for variable 'x'"):
        numpy_backend.evaluate(expr, {}, SIZES)
    with pytest.raises(EngineError, match="no value given for size 'n'"):
        numpy_backend.evaluate(expr, {"x": np.zeros(3)}, {})


@pytest.mark.parametrize("text", CASES)
def test_numpy_forms_run_on_the_verifiers_high_precision_numbers(text):
    # float64 never judges a FAIL: the numeric route re-runs these same NumPy forms on object
    # arrays of mpmath numbers (verify/precision.py), so every function must accept them
    import mpmath

    from engine.verify.precision import _evaluate, _hp, _scalar

    expr, exact, numeric = sympy_and_numpy(text)
    env_vars = free_vars(expr)
    rng = np.random.default_rng(0)
    point = {
        name: np.asarray(
            TYPES[v.vtype].exact(rng, concrete_shape(declared_shape(v), SIZES)), dtype=float
        )
        for name, v in env_vars.items()
    }
    with mpmath.workdps(30):
        hp = {k: _hp(v) for k, v in point.items()}
        out = np.asarray(_evaluate(expr, hp, SIZES, 30, 100), dtype=object)
        values = np.array([float(_scalar(v).real) for v in out.flat]).reshape(out.shape)
    scale = max(1.0, float(np.max(np.abs(exact), initial=0)))
    np.testing.assert_allclose(values, exact, rtol=1e-12, atol=1e-12 * scale)


@pytest.mark.parametrize("fn", ["log_softmax", "softmax"])
@pytest.mark.parametrize("offset", [0.0, 1e3, 1.06e7, -3e12])
def test_the_softmax_family_is_exact_at_any_offset(fn, offset):
    """A uniform row's log_softmax is -log(n) whatever its offset: computed as (x - m) - log(...)
    it carries no rounding at the scale of m (x - logsumexp(x) was off by |m| * 1e-16, 6.5e-10
    at m = 1e7, which an export test found as a disagreement with the exported program)."""
    row = np.full((2, 3), offset) + np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 2.0]])
    got = REGISTRY[fn].numpy(row, axis=-1)
    base = row - offset
    want = base - np.log(np.sum(np.exp(base), axis=-1, keepdims=True))
    want = want if fn == "log_softmax" else np.exp(want)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=1e-15)
