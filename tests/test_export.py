"""Code export: NumPy modules against the verifier's numeric route, the form table, the source."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from test_export_programs import PROGRAMS, SIZES, load_module, sample_inputs

from engine.backends import numpy_backend
from engine.derive.program import Program
from engine.export import TARGETS, ExportError, to_module
from engine.export.emitter import check_table
from engine.export.forms import COLUMNS, FORMS, LOWERED, NOT_EXPORTABLE
from engine.expr import call
from engine.functions import REGISTRY
from engine.parser import build_environment, parse_formula


def _complex_step_reference(program: Program, inputs: dict[str, np.ndarray]):
    """Value and gradients by the verifier's NumPy route: grad(...) nodes are complex-step."""
    sizes = {k: v for k, v in SIZES.items() if k in program.env.sizes}
    value = numpy_backend.evaluate(program.output, inputs, sizes)
    grads = {
        v: numpy_backend.evaluate(call("grad", program.output, program.env.vars[v]), inputs, sizes)
        for v, _ in program.gradients
    }
    return value, grads


@pytest.mark.parametrize("profile", ["unit", "wide", "peaked"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_numpy_export_matches_complex_step(name, profile, tmp_path):
    program = PROGRAMS[name]()
    module = load_module(to_module(program), tmp_path, f"np_{name}_{profile}")
    inputs = sample_inputs(program, seed=1, profile=profile)
    value, grads = module.value_and_grad(*inputs.values())
    ref_value, ref_grads = _complex_step_reference(program, inputs)
    assert np.asarray(value).dtype == np.float64
    np.testing.assert_allclose(value, ref_value, rtol=1e-12, atol=1e-12)
    assert set(grads) == set(ref_grads)
    for v, g in grads.items():
        assert g.shape == inputs[v].shape and g.dtype == np.float64
        scale = max(1.0, float(np.max(np.abs(ref_grads[v]))))
        np.testing.assert_allclose(g, ref_grads[v], rtol=1e-9, atol=1e-11 * scale, err_msg=v)


def test_cross_entropy_by_hand(tmp_path):
    """A hand-checkable case: z = (0, log 3), y = (1, 0): p = (1/4, 3/4), value log 4."""
    module = load_module(to_module(PROGRAMS["cross_entropy"]()), tmp_path, "ce_hand")
    value, grads = module.value_and_grad([0.0, np.log(3.0)], [1.0, 0.0])
    assert value == pytest.approx(np.log(4.0), rel=1e-15)
    np.testing.assert_allclose(grads["z"], [-0.75, 0.75], rtol=1e-15)


def test_stable_forms_survive_extreme_logits(tmp_path):
    """Max-shifting: logits of +-1000 would overflow exp (inf/inf = nan) without it."""
    module = load_module(to_module(PROGRAMS["cross_entropy"]()), tmp_path, "ce_extreme")
    value, grads = module.value_and_grad([1000.0, 0.0, -1000.0], [0.0, 1.0, 0.0])
    assert value == pytest.approx(1000.0, rel=1e-15)  # -log p_1 = lse(z) - z_1 = 1000
    np.testing.assert_allclose(grads["z"], [1.0, -1.0, 0.0], atol=1e-300)
    lse = load_module(to_module(PROGRAMS["batched_logsumexp"]()), tmp_path, "lse_extreme")
    Z = np.array([[800.0, 800.0, -5.0], [-800.0, -801.0, -900.0]])
    Y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    value, grads = lse.value_and_grad(Z, Y)
    # Row 1: log 2 (two equal logits); row 2: 100 + log(1 + e^-1 + e^-100).
    expected = (np.log(2.0) + 100.0 + np.log1p(np.exp(-1.0) + np.exp(-100.0))) / 2
    assert value == pytest.approx(expected, rel=1e-14)
    assert np.all(np.isfinite(grads["Z"]))


def test_sigmoid_and_softplus_do_not_overflow(tmp_path):
    env = build_environment({"x": "real[n]", "w": "real[n]"})
    f = parse_formula("sigmoid(x) + softplus(x)", env)
    program = Program(
        parse_formula("sum(w * (sigmoid(x) + softplus(x)))", env), env, (), (("w", f),)
    )
    module = load_module(to_module(program), tmp_path, "sig_extreme")
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        _, grads = module.value_and_grad([-800.0, 0.0, 800.0], [1.0, 1.0, 1.0])
    np.testing.assert_allclose(grads["w"], [0.0, 0.5 + np.log(2.0), 801.0], rtol=1e-15)


# ---------------------------------------------------------------- the form table


def test_every_registry_function_has_a_form_for_every_target():
    assert check_table() == []
    for fn, spec in REGISTRY.items():
        if not spec.public:
            assert all(t in FORMS[fn] for t in TARGETS), fn  # operators
            continue
        if fn in NOT_EXPORTABLE:
            continue
        assert fn in LOWERED or all(t in FORMS[fn] for t in TARGETS), fn
    for fn in FORMS:  # internal functions of the lowering too
        assert all(t in FORMS[fn] for t in TARGETS), fn
        assert set(FORMS[fn]) <= set(COLUMNS), fn
    assert set(NOT_EXPORTABLE) == {"grad", "jacobian", "hessian"}


def test_derivative_nodes_are_refused():
    env = build_environment({"z": "real[n]"})
    g = parse_formula("grad(logsumexp(z), z)", env)
    program = Program(parse_formula("logsumexp(z)", env), env, (), (("z", g),))
    with pytest.raises(ExportError, match="derivative nodes"):
        to_module(program)


# One expression per registry function (and operator form); each is exported as the gradient
# of sum(F * w) with respect to w, which is F itself, and compared with the registry's own
# NumPy form through numpy_backend.evaluate.
FUNCTION_CASES = [
    # elementwise
    *((f"{f}(X)", {"X": "real[n, k]"}) for f in ("exp", "abs", "tanh", "sigmoid", "sin")),
    *((f"{f}(X)", {"X": "real[n, k]"}) for f in ("cos", "relu", "softplus", "silu", "erf")),
    *((f"{f}(X)", {"X": "real[n, k]"}) for f in ("gelu", "gelu_tanh", "sign", "step")),
    ("log(X)", {"X": "positive[n, k]"}),
    ("sqrt(X)", {"X": "positive[n, k]"}),
    # operators
    ("X + Y", {"X": "real[n, k]", "Y": "real[k]"}),
    ("X - Y", {"X": "real[n, k]", "Y": "real[n, 1]"}),
    ("X * Y", {"X": "real[n, k]", "Y": "real[n, k]"}),
    ("X / Y", {"X": "real[n, k]", "Y": "positive[n, k]"}),
    ("X ** 3 - X ** -2 + X ** (1/3)", {"X": "positive[n, k]"}),
    ("X ** Y", {"X": "positive[n, k]", "Y": "real[n, k]"}),
    ("-(-X) - -X", {"X": "real[n, k]"}),
    ("A @ B", {"A": "real[n, k]", "B": "real[k, m]"}),
    ("A @ x", {"A": "real[n, k]", "x": "real[k]"}),
    ("x @ A", {"A": "real[k, n]", "x": "real[k]"}),
    ("x @ v", {"x": "real[k]", "v": "real[k]"}),
    ("A.T.T + A.T.T.T.T", {"A": "real[n, k]"}),
    ("x.T", {"x": "real[k]"}),
    ("A.T @ B", {"A": "real[k, n]", "B": "real[k, m]"}),
    # reductions and the softmax family
    *((f"{f}(X)", {"X": "real[n, k]"}) for f in ("sum", "mean", "var", "logsumexp")),
    *((f"{f}(X, axis=0)", {"X": "real[n, k]"}) for f in ("sum", "mean", "var", "logsumexp")),
    *(
        (f"{f}(X, axis=-1, keepdims=True)", {"X": "real[n, k]"})
        for f in ("sum", "mean", "var", "logsumexp")
    ),
    *((f"{f}(X, keepdims=True)", {"X": "real[n, k]"}) for f in ("sum", "mean", "var", "logsumexp")),
    ("logsumexp(x)", {"x": "real[k]"}),
    ("softmax(X)", {"X": "real[n, k]"}),
    ("softmax(X, axis=0)", {"X": "real[n, k]"}),
    ("log_softmax(X)", {"X": "real[n, k]"}),
    ("log_softmax(X, axis=0) + softmax(X, axis=0)", {"X": "real[n, k]"}),
    ("log(softmax(x)) + log(sigmoid(x))", {"x": "real[k]"}),
    # probability
    ("cross_entropy(p, y)", {"p": "simplex[n, k]", "y": "simplex[n, k]"}),
    ("cross_entropy(p, y)", {"p": "simplex[k]", "y": "onehot[k]"}),
    ("cross_entropy(softmax(X), Y)", {"X": "real[n, k]", "Y": "simplex[n, k]"}),
    ("cross_entropy(softmax(X, axis=0), Y)", {"X": "real[n, k]", "Y": "onehot[n, k]"}),
    ("cross_entropy(softmax(X), Y)", {"X": "real[n, k]", "Y": "positive[n, k]"}),
    ("cross_entropy(softmax(x), y)", {"x": "real[k]", "y": "onehot[k]"}),
    ("entropy(p)", {"p": "simplex[k]"}),
    ("kl(p, q)", {"p": "simplex[n, k]", "q": "simplex[n, k]"}),
    # linear algebra
    ("diag(x)", {"x": "real[k]"}),
    ("diag(A)", {"A": "real[k, k]"}),
    ("outer(x, v)", {"x": "real[k]", "v": "real[n]"}),
    ("trace(A)", {"A": "real[k, k]"}),
    ("eye(k) + A", {"A": "real[k, k]"}),
    ("ones(n, k) * X", {"X": "real[n, k]"}),
    ("ones(k) + x", {"x": "real[k]"}),
    ("expand_dims(x, axis=0) + A", {"x": "real[k]", "A": "real[n, k]"}),
    ("expand_dims(x, axis=1) * A", {"x": "real[n]", "A": "real[n, k]"}),
    # size and constant scalars (plain Python numbers in every target)
    ("X * sqrt(n) / (k * pi) + exp(-1/3) * tanh(sqrt(2 / pi))", {"X": "real[n, k]"}),
    ("X * sigmoid(n / k) + relu(1 - n) + softplus(k) * abs(-2) + erf(1/2)", {"X": "real[n, k]"}),
    ("X * (sigmoid(-1000 * n) + sigmoid(1000 * n) + softplus(-1000 * n))", {"X": "real[n, k]"}),
    (
        "X * (sign(n - k) + step(k - n) + gelu(1/2) + silu(n) - log(k) + cos(sin(pi)))",
        {"X": "real[n, k]"},
    ),
    ("a * x + sqrt(a) + exp(a)", {"a": "positive", "x": "real[k]"}),
    # structure (engine/functions/structure.py): basic indexing, concat, stack, reshape
    ("X[:, 0] + X[-1, 1:3] @ Y[1:3]", {"X": "real[n, 4]", "Y": "real[4, n]"}),
    ("(X + 1)[1:3, :-1]", {"X": "real[4, 5]"}),
    ("concat([X, Y], axis=0)", {"X": "real[2, k]", "Y": "real[3, k]"}),
    ("concat([X, exp(Y)], axis=-1)", {"X": "real[n, 2]", "Y": "real[n, 3]"}),
    ("stack([x, v]) + stack([x, x], axis=1).T", {"x": "real[k]", "v": "real[k]"}),
    ("reshape(X, (3, 4))", {"X": "real[4, 3]"}),
    ("reshape(X, (k,))", {"X": "real[1, k]"}),
    ("pad(X, (1, 2), axis=0) + pad(Y, (0, 3))", {"X": "real[2, 4]", "Y": "real[5, 1]"}),
    ("pad(x, (2, 1))", {"x": "real[4]"}),
    # linear algebra of the Matrix Cookbook (engine/functions/matrices.py)
    ("det(A)", {"A": "real[k, k]"}),
    ("logdet(S)", {"S": "spd[k, k]"}),
    ("inv(S) + inv(Q)", {"S": "spd[k, k]", "Q": "orthogonal[k, k]"}),
    ("solve(S, B)", {"S": "spd[k, k]", "B": "real[k, n]"}),
    ("solve(S, x)", {"S": "spd[k, k]", "x": "real[k]"}),
    ("norm(x)", {"x": "real[k]"}),
    ("norm(X)", {"X": "real[n, k]"}),
    ("norm(X, axis=1)", {"X": "real[n, k]"}),
    ("norm(X, axis=0, keepdims=True)", {"X": "real[n, k]"}),
    # selection, masks and stable elementwise functions (issue 8)
    ("log1p(X) + expm1(-X)", {"X": "positive[n, k]"}),
    ("logsigmoid(X) + logsigmoid(1000 * X)", {"X": "real[n, k]"}),
    ("maximum(X, Y) + minimum(X, 1/2) + maximum(-1, Y)", {"X": "real[n, k]", "Y": "real[k]"}),
    (
        "clip(X, -1/2, 1/2) + clip(X, Y, Y + 1) + clip(X, 1, -1)",
        {"X": "real[n, k]", "Y": "real[k]"},
    ),
    ("where(M, X, -X) + where(M, 0, 1)", {"X": "real[n, k]", "M": "mask[n, k]"}),
    # an argument that is a constant array (no variable below it, not a Python number): torch's
    # number-or-tensor overloads (torch.clamp) need the bounds made alike
    (
        "clip(X, -1, 2 * ones(n, k)) + clip(X, ones(k), 2) + clip(X, -ones(k), ones(n, 1))",
        {"X": "real[n, k]"},
    ),
    (
        "clip(ones(k) / 2, X, X + 1) + clip(ones(n, k), -1/2, 1/2) * X",
        {"X": "real[n, k]"},
    ),
    (
        "maximum(X, ones(k)) + minimum(-ones(n, 1), X) + maximum(ones(k), 1/2) * X",
        {"X": "real[n, k]"},
    ),
    (
        "where(M, ones(n, k), 2) + where(M, X, ones(k)) + where(eye(k)[0], 1, X)",
        {"X": "real[n, k]", "M": "mask[n, k]"},
    ),
    ("X ** (2 * ones(k)) + (ones(n, k) + 1) ** X", {"X": "positive[n, k]"}),
    ("softmax(where(tril(n), S, -inf)) + triu(n, k=1) + tril(n, k=-1)", {"S": "real[n, n]"}),
    ("tril(n, k, k=2) * X + triu(n, k) * X", {"X": "real[n, k]"}),
    (
        "max(X, axis=0) + min(X, axis=0) + argmax(X, axis=0) + argmin(X, axis=0)",
        {"X": "real[n, k]"},
    ),
    ("X * (max(X) + min(X) + argmax(X) + argmin(X))", {"X": "real[n, k]"}),
    (
        "max(X, axis=-1, keepdims=True) + cumsum(X, axis=0) + cumsum(X, axis=-1)",
        {"X": "real[n, k]"},
    ),
    ("cumsum(x)", {"x": "real[k]"}),
    (
        "X * (maximum(n, k) + minimum(1/2, n) + clip(n, 1, 2) + log1p(n) + expm1(-1))",
        {"X": "real[n, k]"},
    ),
    ("X * (logsigmoid(-1000 * n) + logsigmoid(k) + where(n - k, 1, 2))", {"X": "real[n, k]"}),
    ("sort(X) + sort(X, axis=0, descending=True)", {"X": "real[n, k]"}),
    (
        "unsort(Y, X) + unsort(Y, X, axis=0, descending=True)",
        {"X": "real[n, k]", "Y": "real[n, k]"},
    ),
    # tensors of any rank (issue 8)
    ("T @ U", {"T": "real[h, n, d]", "U": "real[h, d, m]"}),
    (
        "T @ A + F @ U",
        {"T": "real[h, n, d]", "A": "real[d, m]", "F": "real[1, n, d]", "U": "real[h, d, m]"},
    ),
    ("T @ x", {"T": "real[k, h, n, d]", "x": "real[d]"}),
    ("swapaxes(T, 0, 2) + swapaxes(T, -1, -3)", {"T": "real[h, n, d]"}),
    ("transpose(T, (2, 0, 3, 1))", {"T": "real[h, n, d, m]"}),
    ("squeeze(F, 1) + squeeze(F)", {"F": "real[h, 1, n]"}),
    ("expand_dims(T, axis=(0, 2))", {"T": "real[h, n]"}),
    *(
        (f"{f}(T, axis=(0, 2))", {"T": "real[h, n, d]"})
        for f in ("sum", "mean", "var", "logsumexp")
    ),
    *(
        (f"{f}(T, axis=(1, -1), keepdims=True)", {"T": "real[h, n, d]"})
        for f in ("sum", "mean", "var", "logsumexp")
    ),
    ("softmax(T, axis=(1, 2)) + log_softmax(T, axis=(0, 2))", {"T": "real[h, n, d]"}),
    ('einsum("bhid,bhjd->bhij", Q, K)', {"Q": "real[k, h, n, d]", "K": "real[k, h, n, d]"}),
    ('einsum("ii->", A) + einsum("ij,ij->", A, A)', {"A": "real[n, n]"}),
    ('einsum("i,j,k->ijk", x, y, x)', {"x": "real[n]", "y": "real[d]"}),
    # integer labels (issue 8): gather and one-hot (labels passed as floats: converted to ints)
    (
        "take_along_axis(X, y) * sum(one_hot(y) * X, axis=-1)",
        {"X": "real[n, k]", "y": "index[n, k]"},
    ),
    (
        "take_along_axis(T, y, axis=1) + sum(one_hot(y, axis=1) * T, axis=1)",
        {"T": "real[h, n, d]", "y": "index[h, d, n]"},
    ),
    ("take_along_axis(x, c) * x + one_hot(c)", {"x": "real[k]", "c": "index[k]"}),
]


def function_program(expr: str, vars: dict[str, str]) -> Program:
    env = build_environment({**vars, "w_": _w_type(vars, expr)})
    f = parse_formula(expr, env)
    assert f.shape == env.vars["w_"].shape, expr
    return Program(parse_formula(f"sum(({expr}) * w_)", env), env, (), (("w_", f),))


def _w_type(vars: dict[str, str], expr: str) -> str:
    env = build_environment(vars)
    shape = parse_formula(expr, env).shape
    return "real" if not shape else "real[" + ", ".join(str(d) for d in shape) + "]"


def run_function_case(target: str, expr: str, vars: dict[str, str], tmp_path, stem: str):
    """The exported F (as d/dw) and the value, next to the registry's NumPy evaluation."""
    program = function_program(expr, vars)
    inputs = sample_inputs(program, seed=3, profile="wide")
    sizes = {k: v for k, v in SIZES.items() if k in program.env.sizes}
    expected_f = numpy_backend.evaluate(program.gradients[0][1], inputs, sizes)
    expected_value = numpy_backend.evaluate(program.output, inputs, sizes)
    module = load_module(to_module(program, target), tmp_path, stem)
    value, grads = module.value_and_grad(*inputs.values())
    return (np.asarray(value), np.asarray(grads["w_"])), (expected_value, expected_f)


@pytest.mark.parametrize("expr,vars", FUNCTION_CASES, ids=[c[0] for c in FUNCTION_CASES])
def test_numpy_form_of_every_function(expr, vars, tmp_path):
    (value, f), (ev, ef) = run_function_case("numpy", expr, vars, tmp_path, "fn_np")
    assert f.shape == ef.shape and f.dtype == np.float64
    # Entries that come out of a cancellation (log_softmax near 0) carry an absolute error of a
    # few ulp of the array's magnitude in both computations; see the mpmath test below.
    np.testing.assert_allclose(f, ef, rtol=1e-13, atol=1e-14 * float(np.max(np.abs(ef))))
    np.testing.assert_allclose(value, ev, rtol=1e-12)


def test_log_softmax_is_accurate_near_zero(tmp_path):
    """Against 50-digit mpmath: (x - max) - log(sum) keeps its relative error near 1e-11.

    The largest entry of log_softmax is near 0 when one logit dominates; its relative error is
    set by the rounding of the sum. Measured over 200 seeds of wide inputs: 5.6e-12 for the
    exported form, 8.8e-11 for x - logsumexp(x) (the registry's NumPy form).
    """
    mpmath = pytest.importorskip("mpmath")  # a SymPy dependency, always installed
    mpmath.mp.dps = 50
    env = build_environment({"X": "real[n, k]", "W": "real[n, k]"})
    f = parse_formula("log_softmax(X)", env)
    program = Program(parse_formula("sum(W * log_softmax(X))", env), env, (), (("W", f),))
    module = load_module(to_module(program), tmp_path, "lsm_exact")
    worst = 0.0
    for seed in range(20):
        X = np.random.default_rng(seed).standard_normal((7, 9)) * 4.0
        _, grads = module.value_and_grad(X, np.ones_like(X))
        for i, row in enumerate(X):
            lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
            exact = np.array([float(mpmath.mpf(float(v)) - lse) for v in row])
            worst = max(worst, float(np.max(np.abs(grads["W"][i] - exact) / np.abs(exact))))
    assert worst < 2e-11


def test_function_cases_cover_the_registry():
    covered = set()
    for expr, vars in FUNCTION_CASES:
        program = function_program(expr, vars)
        covered |= {n.fn for n in program.gradients[0][1].walk() if hasattr(n, "fn")}
    assert covered == set(REGISTRY) - set(NOT_EXPORTABLE)


# ---------------------------------------------------------------- the source itself


def test_attention_source_shape(tmp_path):
    """Sizes from shapes, each definition and step once, exp computed once, names kept."""
    src = to_module(PROGRAMS["attention"]())
    assert "def value_and_grad(Q, K, V, O, *, dtype=None):  # noqa: E741" in src
    assert "Not verified at export time" in src and "Verified by" not in src
    src = src.split("def value_and_grad", 1)[1].split('    """\n', 1)[1]  # the body
    assert "    d = Q.shape[1]\n" in src and "_check_shapes(" in src
    for line in ("dP = O @ V.T", "dV = P.T @ O", "dQ = dS @ K / sqrt_d", "dK = dS.T @ Q / sqrt_d"):
        assert f"    {line}\n" in src, line
    assert src.count("np.exp(") == 1 and src.count("np.max(") == 1
    assert src.count("Q @ K.T") == 1 and src.count("math.sqrt(d)") == 1
    assert 'return value, {"Q": dQ, "K": dK, "V": dV}' in src


def test_cross_entropy_shares_the_softmax_terms():
    """log(p) for p = softmax(z) is written as log_softmax, reusing the max and the sum."""
    src = to_module(PROGRAMS["cross_entropy"]())
    assert src.count("np.exp(") == 1 and src.count("np.log(") == 1
    assert "np.log(p)" not in src
    # y is a simplex, so sum(y * log(z_expsum)) = log(z_expsum): no pass over y for it.
    assert "value = np.log(z_expsum) - np.vdot(y, z_shifted)" in src
    env = build_environment({"z": "real[n]", "y": "real[n]"}, {"p": "softmax(z)"})
    general = Program(
        parse_formula("cross_entropy(p, y)", env), env, (), (("y", parse_formula("-log(p)", env)),)
    )
    src = to_module(general)
    assert "z_log_softmax = z_shifted - np.log(np.sum(np.exp(z_shifted)" in src
    assert "value = -np.vdot(y, z_log_softmax)" in src and "dy = -z_log_softmax" in src


def test_verified_summary_goes_into_the_docstring(tmp_path):
    program = PROGRAMS["cross_entropy"]()
    summary = program.verify()["z"].summary()
    src = to_module(program, verified_summary=summary)
    assert f"Verified by llm-math-notes: {summary}" in " ".join(src.split())
    assert "Not verified" not in src
    odd = to_module(program, verified_summary='ends with """ and a \\')
    module = load_module(odd, tmp_path, "odd_doc")
    assert 'ends with """ and a \\' in module.__doc__


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_generated_source_is_ruff_clean(target, tmp_path):
    for name, make in PROGRAMS.items():
        (tmp_path / f"{target}_{name}.py").write_text(to_module(make(), target))
    for i, (expr, vars) in enumerate(FUNCTION_CASES):
        (tmp_path / f"{target}_fn{i}.py").write_text(
            to_module(function_program(expr, vars), target)
        )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--no-cache",
            "--isolated",
            "--line-length",
            "100",
            "--select",
            "E,F,W,I,B,UP",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_names_that_clash_with_the_module_are_renamed(tmp_path):
    env = build_environment({"np": "real[n]", "value": "real[n]"}, {"math": "exp(np) * value"})
    program = Program(
        parse_formula("sum(math)", env), env, (), (("np", parse_formula("math", env)),)
    )
    src = to_module(program, name="f")
    module = load_module(src, tmp_path, "clash")
    x, y = np.array([0.5, -1.0]), np.array([2.0, 3.0])
    value, grads = module.f(x, y)
    assert value == pytest.approx(np.sum(np.exp(x) * y), rel=1e-15)
    np.testing.assert_allclose(grads["np"], np.exp(x) * y, rtol=1e-15)


def test_with_value_false_returns_gradients_only(tmp_path):
    src = to_module(PROGRAMS["attention"](), with_value=False)
    body = src.split("def value_and_grad", 1)[1].split('    """\n', 1)[1]
    assert "vdot" not in body and "P @ V" not in body
    module = load_module(src, tmp_path, "novalue")
    inputs = sample_inputs(PROGRAMS["attention"]())
    grads = module.value_and_grad(*inputs.values())
    assert set(grads) == {"Q", "K", "V"}
    _, full = load_module(to_module(PROGRAMS["attention"]()), tmp_path, "withvalue").value_and_grad(
        *inputs.values()
    )
    for v in grads:
        np.testing.assert_array_equal(grads[v], full[v])


def test_bad_arguments():
    program = PROGRAMS["cross_entropy"]()
    with pytest.raises(ExportError, match="unknown export target"):
        to_module(program, "tensorflow")
    for bad in ("not valid", "class", "np", "max", "_private"):
        with pytest.raises(ExportError, match="identifier"):
            to_module(program, name=bad)
    with pytest.raises(ExportError, match="kind"):
        to_module(dataclasses.replace(program, kind="laplacian"))  # hessian exports (issue 8)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_gradients_of_another_shape_are_broadcast(target, tmp_path):
    """d/dx sum(x) = 1 and d/dw of a sum without w = 0: returned with the variable's shape."""
    env = build_environment({"x": "real[n]", "w": "real[n, k]"})
    program = Program(
        parse_formula("sum(x)", env),
        env,
        (),
        (("x", parse_formula("1", env)), ("w", parse_formula("0", env))),
    )
    module = load_module(to_module(program, target), tmp_path, f"bcast_{target}")
    value, grads = module.value_and_grad(np.array([1.0, 2.0, 4.0]), np.ones((3, 2)))
    assert float(value) == 7.0
    assert np.asarray(grads["x"]).tolist() == [1.0, 1.0, 1.0]
    assert np.asarray(grads["w"]).tolist() == [[0.0, 0.0]] * 3
