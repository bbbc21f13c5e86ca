"""Integer labels (issue 8): the index type, take_along_axis, one_hot, integer-label cross-entropy
derived, exported and checked against torch.nn.functional.cross_entropy and jax."""

from __future__ import annotations

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api import derive, verify
from engine.backends import numpy_backend
from engine.cli import cli
from engine.export import load, to_module
from engine.expr import EngineError, Var
from engine.index_type import IndexVar, declared_shape
from engine.parser import build_environment, parse_formula
from engine.printing import to_latex

CE = "-mean(take_along_axis(log_softmax(Z), y))"
CE_VARS = {"Z": "real[B, V]", "y": "index[B, V]"}
VARS = {
    "Z": "real[B, V]",
    "y": "index[B, V]",
    "x": "real[V]",
    "c": "index[V]",
    "T": "real[B, n, V]",
    "yt": "index[B, n, V]",
    "w": "real[B]",
}


# ---------------------------------------------------------------- the type


def test_index_declaration_drops_the_bound_from_the_shape():
    env = build_environment(VARS)
    y = env.vars["y"]
    assert isinstance(y, IndexVar) and isinstance(y, Var)
    assert [str(d) for d in y.shape] == ["B"] and str(y.bound) == "V"
    assert [str(d) for d in declared_shape(y)] == ["B", "V"]
    assert env.vars["c"].shape == () and str(env.vars["c"].bound) == "V"
    assert list(env.sizes) == ["B", "V", "n"]


def test_index_variables_with_other_bounds_differ_and_pickle():
    a = build_environment({"y": "index[B, V]"}).vars["y"]
    b = build_environment({"y": "index[B, W]"}).vars["y"]
    assert a != b and a == build_environment({"y": "index[B, V]"}).vars["y"]
    back = pickle.loads(pickle.dumps(a))  # a Program crosses a worker process (engine.budget)
    assert back == a and hash(back) == hash(a) and back.bound == a.bound


def test_an_index_is_not_differentiable():
    env = build_environment(VARS)
    with pytest.raises(EngineError, match="y is an index variable"):
        parse_formula("grad(sum(take_along_axis(Z, y)), y)", env)
    with pytest.raises(EngineError, match="c is an index variable"):
        parse_formula("hessian(take_along_axis(x, c), c)", env)
    with pytest.raises(EngineError, match="--wrt y: an index variable"):
        derive(CE, "y", CE_VARS)
    r = CliRunner().invoke(
        cli, ["derive", CE, "--wrt", "y", "--var", "Z=real[B, V]", "--var", "y=index[B, V]"]
    )
    assert r.exit_code == 2
    assert r.output.strip() == (
        "llm-math: --wrt y: an index variable (integer labels) is not differentiable"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("take_along_axis(Z, w)", "the labels must be an index variable"),
        ("take_along_axis(Z, y + 0)", "the labels must be an index variable"),
        ("one_hot(w)", "the labels must be an index variable"),
        ("take_along_axis(Z.T, y)", "0..V-1, but axis -1 of the array has length B"),
        ("take_along_axis(Z, y, axis=2)", "axis 2 is out of range for an array of rank 2"),
        ("one_hot(y, axis=3)", "axis 3 is out of range for an array of rank 2"),
        ("take_along_axis(T, yt, axis=1)", "but axis 1 of the array has length n"),
        ("take_along_axis(Z, y, axis=(0,))", "axis must be one integer, got (0,)"),
        ("one_hot(y, axis=(0, 1))", "axis must be one integer, got (0, 1)"),
    ],
)
def test_bad_labels_are_one_line_errors(text, message):
    with pytest.raises(EngineError) as info:
        parse_formula(text, build_environment(VARS))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_labels_out_of_range_or_fractional_are_refused_at_evaluation():
    env = build_environment(VARS)
    e = parse_formula("take_along_axis(Z, y)", env)
    Z = np.zeros((2, 3))
    with pytest.raises(EngineError, match="index 3 is out of range 0..2"):
        numpy_backend.evaluate(e, {"Z": Z, "y": np.array([0.0, 3.0])}, {"B": 2, "V": 3})
    with pytest.raises(EngineError, match="not an integer"):
        numpy_backend.evaluate(e, {"Z": Z, "y": np.array([0.5, 1.0])}, {"B": 2, "V": 3})


# ---------------------------------------------------------------- values


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 6),
    st.integers(0, 2**32 - 1),
)
def test_numpy_forms_are_plain_indexing(b, v, seed):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((b, v))
    y = rng.integers(v, size=b)
    env = build_environment(VARS)
    sizes = {"B": b, "V": v}
    got = numpy_backend.evaluate(
        parse_formula("take_along_axis(Z, y)", env), {"Z": Z, "y": y}, sizes
    )
    np.testing.assert_array_equal(got, Z[np.arange(b), y])
    hot = numpy_backend.evaluate(parse_formula("one_hot(y)", env), {"y": y}, sizes)
    np.testing.assert_array_equal(hot, np.eye(v)[y])
    col = numpy_backend.evaluate(
        parse_formula("take_along_axis(Z.T, y, axis=0)", env), {"Z": Z, "y": y}, sizes
    )
    np.testing.assert_array_equal(col, Z[np.arange(b), y])


def test_rank_three_gather_along_the_middle_axis():
    env = build_environment({"T": "real[a, n, b]", "j": "index[a, b, n]"})
    rng = np.random.default_rng(1)
    T, j = rng.standard_normal((2, 4, 3)), rng.integers(4, size=(2, 3))
    sizes = {"a": 2, "n": 4, "b": 3}
    got = numpy_backend.evaluate(
        parse_formula("take_along_axis(T, j, axis=1)", env), {"T": T, "j": j}, sizes
    )
    want = np.take_along_axis(T, j[:, None, :], axis=1)[:, 0, :]
    np.testing.assert_array_equal(got, want)
    hot = numpy_backend.evaluate(parse_formula("one_hot(j, axis=1)", env), {"j": j}, sizes)
    assert hot.shape == (2, 4, 3)
    np.testing.assert_array_equal(np.sum(hot * T, axis=1), want)


def test_latex_is_textbook_indexing():
    env = build_environment(VARS)
    assert to_latex(parse_formula(CE, env)) == (
        r"-\operatorname{mean}\left(\left(\log\operatorname{softmax}\left(Z\right)\right)"
        r"_{i, y_{i}}\right)"
    )
    assert to_latex(parse_formula("take_along_axis(T, yt)", env)) == r"T_{i, j, \mathrm{yt}_{ij}}"


def test_verify_reports_integer_labels_in_the_counterexample():
    r = verify("take_along_axis(Z, y) == max(Z, axis=-1)", CE_VARS)
    assert r.verdict == "fail"
    label_line = [ln for ln in r.report().splitlines() if ln.strip().startswith("y = ")]
    assert label_line and "/" not in label_line[0]  # integers, not rationals


# ---------------------------------------------------------------- derive


@pytest.mark.parametrize(
    "expr, wrt, vars_, program",
    [
        (CE, "Z", CE_VARS, "dZ = (softmax(Z) - one_hot(y)) / B"),
        (
            "mean(logsumexp(Z, axis=-1) - take_along_axis(Z, y))",
            "Z",
            CE_VARS,
            "dZ = (softmax(Z) - one_hot(y)) / B",
        ),
        (
            "-take_along_axis(log_softmax(z), c)",
            "z",
            {"z": "real[V]", "c": "index[V]"},
            "dz = softmax(z) - one_hot(c)",
        ),
        (
            "-mean(take_along_axis(log_softmax(L), t))",
            "L",
            {"L": "real[B, n, V]", "t": "index[B, n, V]"},
            "dL = (softmax(L) - one_hot(t)) / (B * n)",
        ),
        (
            "-sum(take_along_axis(log_softmax(Z, axis=0), y, axis=0))",
            "Z",
            {"Z": "real[V, B]", "y": "index[B, V]"},
            "dZ = softmax(Z, axis=0) - one_hot(y, axis=0)",
        ),
        (
            "-mean(take_along_axis(log_softmax(X @ W), y))",
            "W",
            {"X": "real[B, d]", "W": "real[d, V]", "y": "index[B, V]"},
            "dW = X.T @ (softmax(X @ W) - one_hot(y)) / B",
        ),
    ],
)
def test_derive_gives_the_textbook_program(expr, wrt, vars_, program):
    p = derive(expr, wrt, vars_)
    assert p.to_text().strip().splitlines()[0] == program
    assert p.results and all(r.passed for _, r in p.results)


def test_a_wrong_gather_vjp_is_caught(monkeypatch):
    """No fused rule: the program comes from take_along_axis's VJP, and a wrong one fails."""
    import dataclasses

    from engine.derive.core import DerivationFailed
    from engine.functions import REGISTRY

    rule = REGISTRY["take_along_axis"].vjp
    wrong = dataclasses.replace(REGISTRY["take_along_axis"], vjp=lambda n, g, i: 2 * rule(n, g, i))
    monkeypatch.setitem(REGISTRY, "take_along_axis", wrong)
    with pytest.raises(DerivationFailed) as info:
        derive(CE, "Z", CE_VARS)
    assert info.value.results["Z"].verdict == "fail"


def test_derive_cli_prints_the_verified_program():
    r = CliRunner().invoke(
        cli, ["derive", CE, "--wrt", "Z", "--var", "Z=real[B, V]", "--var", "y=index[B, V]"]
    )
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines == [
        "dZ = (softmax(Z) - one_hot(y)) / B",
        lines[1],
    ] and lines[1].startswith("# verified: exact at B=2, V=3")


def test_derive_in_a_worker_process():
    p = derive(CE, "Z", CE_VARS, timeout=120)
    assert p.to_text().splitlines()[0] == "dZ = (softmax(Z) - one_hot(y)) / B"


# ---------------------------------------------------------------- exports


@pytest.fixture(scope="module")
def ce_program():
    return derive(CE, "Z", CE_VARS)


def _batch(seed: int, b: int = 7, v: int = 11, peaked: bool = False):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((b, v)) * (4.0 if peaked else 1.0)
    y = rng.integers(v, size=b)
    if peaked:  # a confident model, right on some rows and wrong on others
        Z[np.arange(b), rng.integers(v, size=b)] += 12.0
    return Z, y


@pytest.mark.parametrize("peaked", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_torch_export_matches_cross_entropy_with_integer_targets(ce_program, seed, peaked):
    Z, y = _batch(seed, peaked=peaked)
    f = load(ce_program, "torch")
    value, grads = f(torch.tensor(Z), torch.tensor(y))
    zt = torch.tensor(Z, requires_grad=True)
    ref = F.cross_entropy(zt, torch.tensor(y))  # integer class targets, mean reduction
    (ref_grad,) = torch.autograd.grad(ref, zt)
    assert value.dtype == torch.float64 and grads["Z"].dtype == torch.float64
    torch.testing.assert_close(value, ref.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grads["Z"], ref_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("kind", [torch.float32, torch.bfloat16])
def test_torch_export_keeps_labels_exact_in_low_precision(ce_program, kind):
    """Labels are converted to integers, not to the floating dtype: 1001 has no bfloat16 value
    (it rounds to 1000), yet the gather and the one-hot take class 1001 exactly."""
    rng = np.random.default_rng(5)
    Z = rng.standard_normal((4, 1031))
    y = np.array([1001, 1030, 0, 513])
    f = load(ce_program, "torch")
    value, grads = f(torch.tensor(Z, dtype=kind), torch.tensor(y))
    assert value.dtype == kind and grads["Z"].dtype == kind
    nz = torch.nonzero(grads["Z"].float() < 0).tolist()
    assert sorted(nz) == sorted([[i, int(k)] for i, k in enumerate(y)])
    ref = F.cross_entropy(torch.tensor(Z, dtype=kind).float(), torch.tensor(y))
    torch.testing.assert_close(value.float(), ref, rtol=2e-2, atol=2e-2)


def test_jax_export_matches_jax_grad(ce_program):
    Z, y = _batch(3)
    with jax.enable_x64(True):
        f = load(ce_program, "jax")
        value, grads = f(jnp.asarray(Z), jnp.asarray(y))

        def loss(z):
            logp = jax.nn.log_softmax(z, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, jnp.asarray(y)[:, None], axis=-1))

        ref, ref_grad = jax.value_and_grad(loss)(jnp.asarray(Z))
        np.testing.assert_allclose(value, ref, rtol=1e-12)
        np.testing.assert_allclose(grads["Z"], ref_grad, rtol=1e-10, atol=1e-14)
        jit_value, _ = jax.jit(f)(jnp.asarray(Z), jnp.asarray(y))
        np.testing.assert_allclose(jit_value, value, rtol=1e-12)


def test_numpy_export_takes_labels_as_ints_or_floats(ce_program):
    Z, y = _batch(4)
    f = load(ce_program, "numpy")
    v1, g1 = f(Z, y)
    v2, g2 = f(Z, y.astype(float))
    assert v1 == v2 and np.array_equal(g1["Z"], g2["Z"])
    src = to_module(ce_program, "numpy")
    assert "y = np.asarray(y).astype(np.intp)" in src
    assert "np.take_along_axis(" in src and "np.arange(V)" in src


def test_exported_linear_classifier_matches_torch():
    p = derive(
        "-mean(take_along_axis(log_softmax(X @ W), y))",
        "W",
        {"X": "real[B, d]", "W": "real[d, V]", "y": "index[B, V]"},
    )
    rng = np.random.default_rng(6)
    X, W, y = rng.standard_normal((8, 5)), rng.standard_normal((5, 4)), rng.integers(4, size=8)
    value, grads = load(p, "torch")(torch.tensor(X), torch.tensor(W), torch.tensor(y))
    wt = torch.tensor(W, requires_grad=True)
    ref = F.cross_entropy(torch.tensor(X) @ wt, torch.tensor(y))
    (ref_grad,) = torch.autograd.grad(ref, wt)
    torch.testing.assert_close(value, ref.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grads["W"], ref_grad, rtol=1e-10, atol=1e-14)


def test_wrappers_take_integer_labels(ce_program):
    """The autograd-function and custom-vjp forms: gradients flow to Z only."""
    Z, y = _batch(7)
    fused = load(ce_program, "torch", as_="autograd-function")
    zt = torch.tensor(Z, requires_grad=True)
    fused(zt, torch.tensor(y)).backward()
    zr = torch.tensor(Z, requires_grad=True)
    F.cross_entropy(zr, torch.tensor(y)).backward()
    torch.testing.assert_close(zt.grad, zr.grad, rtol=1e-10, atol=1e-14)
    with jax.enable_x64(True):
        g = load(ce_program, "jax", as_="custom-vjp")
        got = jax.grad(g)(jnp.asarray(Z), jnp.asarray(y))
        np.testing.assert_allclose(got, zr.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_hessian_of_integer_label_cross_entropy_does_not_see_the_label():
    vars_ = {"z": "real[V]", "c": "index[V]"}
    p = derive("-take_along_axis(log_softmax(z), c)", "z", vars_, order=2)
    assert p.to_text().strip().splitlines()[:2] == ["p = softmax(z)", "H = diag(p) - outer(p, p)"]
    assert p.results and all(r.passed for _, r in p.results)
