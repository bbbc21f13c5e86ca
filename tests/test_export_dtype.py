"""Exported code keeps its inputs' dtype and device, never batches silently, and loads in memory.

Issue 9: float32/float64 (bfloat16 for PyTorch and JAX) in give the same dtype out, matching the
libraries' own autodiff at that precision; constants are made on the inputs' device (a torch
'meta' run); JAX modules leave jax_enable_x64 alone; wrongly shaped arguments raise ValueError.
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_export import FUNCTION_CASES, function_program
from test_export_autodiff import JAX_FORWARD, TORCH_FORWARD
from test_export_programs import PROGRAMS, SIZES, load_module, sample_inputs

from engine.backends import numpy_backend
from engine.derive import derive
from engine.export import ExportError, load, to_module

# Relative to the largest reference entry: a few hundred ulp for float32, a few for bfloat16.
TOL = {"float32": 1e-4, "bfloat16": 6e-2, "float64": 1e-10}
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float64": torch.float64}
JAX_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}


def _close(got, want, dtype: str, what: str) -> None:
    got = got.double().cpu() if isinstance(got, torch.Tensor) else got
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, what
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale, err_msg=what)


def _torch_reference(name: str, inputs: dict[str, np.ndarray]):
    """Value and gradients by torch.autograd of the handwritten forward, in float64."""
    args = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in inputs.items()}
    out = TORCH_FORWARD[name](*args.values())
    wrt = [v for v, _ in PROGRAMS[name]().gradients]
    grads = torch.autograd.grad(out, [args[v] for v in wrt])
    return out.detach().numpy(), {v: g.numpy() for v, g in zip(wrt, grads, strict=True)}


# ---------------------------------------------------------------- dtype


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_numpy_float32_in_float32_out(name):
    program = PROGRAMS[name]()
    inputs = sample_inputs(program, seed=7)
    f = load(program)
    value, grads = f(*(x.astype(np.float32) for x in inputs.values()))
    ref_value, ref_grads = _torch_reference(name, inputs)
    assert np.asarray(value).dtype == np.float32
    _close(value, ref_value, "float32", "value")
    for v, g in grads.items():
        assert g.dtype == np.float32, v
        _close(g, ref_grads[v], "float32", v)
    # dtype= forces one: float32 arguments, float64 computation, identical to float64 arguments
    forced, forced_grads = f(*(x.astype(np.float32) for x in inputs.values()), dtype=np.float64)
    exact, exact_grads = f(*(x.astype(np.float32).astype(np.float64) for x in inputs.values()))
    assert np.asarray(forced).dtype == np.float64 and forced == exact
    for v in grads:
        np.testing.assert_array_equal(forced_grads[v], exact_grads[v])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_torch_dtype_in_dtype_out(name, dtype):
    program = PROGRAMS[name]()
    inputs = sample_inputs(program, seed=8)
    f = load(program, "torch")
    kind = TORCH_DTYPES[dtype]
    value, grads = f(*(torch.tensor(x, dtype=kind) for x in inputs.values()))
    ref_value, ref_grads = _torch_reference(name, inputs)
    assert value.dtype == kind
    _close(value, ref_value, dtype, "value")
    for v, g in grads.items():
        assert g.dtype == kind, v
        _close(g, ref_grads[v], dtype, v)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("name", ["attention", "layernorm", "temperature"])
def test_jax_dtype_in_dtype_out(name, dtype):
    """float32 and bfloat16 under JAX's default x32 mode, float64 under x64."""
    program = PROGRAMS[name]()
    inputs = sample_inputs(program, seed=9)
    with jax.enable_x64(True):
        names = list(inputs)
        wrt = [v for v, _ in program.gradients]
        argnums = tuple(names.index(v) for v in wrt)
        ref_value, ref = jax.value_and_grad(JAX_FORWARD[name], argnums=argnums)(
            *(jnp.asarray(x) for x in inputs.values())
        )
        ref_grads = dict(zip(wrt, ref, strict=True))
    with jax.enable_x64(dtype == "float64"):
        f = load(program, "jax")
        kind = JAX_DTYPES[dtype]
        value, grads = f(*(jnp.asarray(x, dtype=kind) for x in inputs.values()))
        assert value.dtype == kind
        _close(value, ref_value, dtype, "value")
        for v, g in grads.items():
            assert g.dtype == kind, v
            _close(g, ref_grads[v], dtype, v)
        if name == "layernorm":  # under jit too (a scalar eps follows the arrays' dtype)
            jit_value, _ = jax.jit(f)(*(jnp.asarray(x, dtype=kind) for x in inputs.values()))
            assert jit_value.dtype == kind


def test_jax_float64_arguments_under_x32_compute_in_float32():
    """Without x64 mode JAX has no float64: the module follows JAX (float32), and says nothing."""
    program = PROGRAMS["cross_entropy"]()
    inputs = sample_inputs(program, seed=1)
    with jax.enable_x64(False):
        value, grads = load(program, "jax")(*inputs.values())
        assert value.dtype == jnp.float32 and grads["z"].dtype == jnp.float32


@pytest.mark.parametrize("x64", [False, True])
def test_importing_a_jax_export_leaves_x64_alone(x64, tmp_path):
    with jax.enable_x64(x64):
        for name, make in PROGRAMS.items():
            src = to_module(make(), "jax")
            assert "config.update" not in src and "enable_x64(" not in src
            load_module(src, tmp_path, f"x64_{name}_{x64}")
            assert jax.config.jax_enable_x64 is x64, name


# Every registry function's form, in float32: the scheme documented at the top of forms.py.
@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("expr,vars", FUNCTION_CASES, ids=[c[0] for c in FUNCTION_CASES])
def test_every_form_keeps_float32(target, expr, vars):
    program = function_program(expr, vars)
    inputs = sample_inputs(program, seed=3)
    sizes = {k: v for k, v in SIZES.items() if k in program.env.sizes}
    expected = numpy_backend.evaluate(program.gradients[0][1], inputs, sizes)
    lib = {"numpy": np, "torch": torch, "jax": jnp}[target]
    args = [lib.asarray(x.astype(np.float32)) for x in inputs.values()]
    with jax.enable_x64(False):
        _, grads = load(program, target)(*args)
    got = grads["w_"]
    assert str(got.dtype).endswith("float32"), got.dtype
    _close(got, expected, "float32", expr)


# ---------------------------------------------------------------- device


def _with_constants():
    """Programs whose exports build constants: ones (a residual path), eye (a Jacobian), masks."""
    yield derive(
        "sum(O * (x + W2 @ relu(W1 @ x)))",
        ["x", "W1", "W2"],
        {"x": "real[n]", "W1": "real[h, n]", "W2": "real[n, h]", "O": "real[n]"},
        verify=False,
    )
    yield derive(
        "sum(relu(W @ x) + x)", ["x", "W"], {"x": "real[n]", "W": "real[n, n]"}, verify=False
    )
    yield derive("z + tanh(z)", ["z"], {"z": "real[n]"}, verify=False)
    for expr, vars in FUNCTION_CASES:
        if any(f in expr for f in ("eye", "ones", "step", "softplus", "sign", "relu")):
            yield function_program(expr, vars)


DEVICES = ["meta"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_torch_export_runs_on_the_inputs_device(device):
    programs = list(_with_constants())
    made = 0
    for program in programs:
        src = to_module(program, "torch")
        made += ("torch.ones(" in src) + ("torch.eye(" in src)
        inputs = sample_inputs(program, seed=0)
        value, grads = load(program, "torch")(
            *(torch.tensor(x, dtype=torch.float32, device=device) for x in inputs.values())
        )
        assert value.device.type == device and value.dtype == torch.float32
        for v, g in grads.items():
            assert g.device.type == device and g.dtype == torch.float32, v
            want = inputs[v].shape if program.kind == "grad" else g.shape
            assert tuple(g.shape) == want, v
    assert made >= 3  # the check above did see constants being built


# ---------------------------------------------------------------- shapes


@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
def test_a_batch_raises_instead_of_broadcasting(target):
    """cross_entropy derived for z: real[n] and called with [B, V] logits: never silently wrong."""
    f = load(PROGRAMS["cross_entropy"](), target)
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((4, 6))
    Y = np.eye(6)[[0, 2, 1, 5]]
    with pytest.raises(ValueError, match=r"argument z has shape \(4, 6\) \(rank 2, declared"):
        f(Z, Y)
    with pytest.raises(ValueError, match="not batched"):
        f(Z[0], Y)
    with pytest.raises(ValueError, match="argument y has shape .*length 5 where n = 6"):
        f(Z[0], Y[0, :5])
    lnorm = load(PROGRAMS["layernorm"](), target)
    X, dY = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match="argument eps has shape"):
        lnorm(X, np.ones(4), np.zeros(4), dY, np.full(3, 1e-5))
    with pytest.raises(ValueError, match="argument g has shape"):
        lnorm(X, np.ones(3), np.zeros(4), dY, 1e-5)


def test_jax_vmap_batches_correctly():
    """The documented way to batch: jax.vmap of the per-example function, row by row equal."""
    rng = np.random.default_rng(1)
    Z = rng.standard_normal((5, 6))
    Y = np.eye(6)[[0, 2, 1, 5, 3]]
    with jax.enable_x64(True):
        f = load(PROGRAMS["cross_entropy"](), "jax")
        values, grads = jax.vmap(f)(jnp.asarray(Z), jnp.asarray(Y))
        for i in range(5):
            value, g = f(Z[i], Y[i])
            np.testing.assert_allclose(values[i], value, rtol=1e-14)
            np.testing.assert_allclose(grads["z"][i], g["z"], rtol=1e-14, atol=1e-16)


# ---------------------------------------------------------------- load


@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
def test_load_returns_the_function_with_its_source(target, tmp_path):
    program = PROGRAMS["least_squares"]()
    f = load(program, target, name="least_squares_grad")
    source = inspect.getsource(f)
    assert source.startswith("def least_squares_grad(A, x, b, *, dtype=None):")
    module_source = inspect.getsource(inspect.getmodule(f))
    assert module_source == to_module(program, target, "least_squares_grad")
    value, grads = f(np.eye(2), [3.0, 1.0], [1.0, 1.0])
    assert float(value) == 2.0 and np.asarray(grads["x"]).tolist() == [2.0, 0.0]
    assert list(tmp_path.iterdir()) == []  # nothing written
    with pytest.raises(ExportError, match="unknown export form"):
        load(program, target, as_="lambda")


def test_no_form_names_a_dtype():
    """Scheme rule 1 of engine/export/forms.py, on the text of every template form."""
    from engine.export.forms import FORMS, Template

    for fn, row in FORMS.items():
        for column, form in row.items():
            if isinstance(form, Template):
                for bad in ("float64", "float32", "default_dtype", "config.update"):
                    assert bad not in form.text, (fn, column, form.text)


_shapes = st.lists(st.integers(1, 3), min_size=0, max_size=3).map(tuple)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3), d=st.integers(1, 3), data=st.data())
def test_shapes_raise_exactly_when_they_break_the_declaration(n, d, data):
    """LayerNorm is declared X: [n, d], g, b: [d], O: [n, d], eps scalar; anything else raises."""
    f = _LAYERNORM_NUMPY()
    declared = [(n, d), (d,), (d,), (n, d), ()]
    shapes = [data.draw(st.one_of(st.just(s), _shapes)) for s in declared]
    X, g, b, O, eps = shapes  # noqa: E741
    fits = len(X) == 2 and g == b == X[1:] and O == X and eps == ()
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s) for s in shapes[:4]] + [np.full(eps, 1e-3)]
    if fits:
        value, grads = f(*args)
        assert grads["X"].shape == X and grads["g"].shape == g
    else:
        with pytest.raises(ValueError, match="not batched"):
            f(*args)


@functools.cache
def _LAYERNORM_NUMPY():  # noqa: N802
    return load(PROGRAMS["layernorm"]())
