"""PyTorch and JAX exports against torch.autograd and jax.grad of independently written forwards."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_export import FUNCTION_CASES, run_function_case
from test_export_programs import PROGRAMS, jax_x64, load_module, sample_inputs  # noqa: F401

from engine.export import to_module

pytestmark = pytest.mark.usefixtures("jax_x64")

# Each forward is written by hand in the library's own idiom (its softmax, layer_norm, gelu),
# sharing nothing with the engine; the library's autodiff then gives the reference gradients.


def _torch_attention(Q, K, V, dO):
    P = torch.softmax(Q @ K.T / math.sqrt(Q.shape[1]), dim=-1)
    return torch.sum(dO * (P @ V))


def _jax_attention(Q, K, V, dO):
    P = jax.nn.softmax(Q @ K.T / jnp.sqrt(Q.shape[1]), axis=-1)
    return jnp.sum(dO * (P @ V))


def _torch_layernorm(X, g, b, dO, eps):
    y = F.layer_norm(X, (X.shape[1],), weight=g, bias=b, eps=float(eps.detach()))
    return torch.sum(dO * y)


def _jax_layernorm(X, g, b, dO, eps):
    mu = jnp.mean(X, axis=-1, keepdims=True)
    xhat = (X - mu) * jax.lax.rsqrt(jnp.mean((X - mu) ** 2, axis=-1, keepdims=True) + eps)
    return jnp.sum(dO * (xhat * g + b))


def _torch_mlp(W1, b1, w2, x):
    u = W1 @ x + b1
    act = F.gelu(u) + torch.tanh(u) * F.silu(u) + torch.relu(u)
    return F.softplus(w2 @ act)


def _jax_mlp(W1, b1, w2, x):
    u = W1 @ x + b1
    act = jax.nn.gelu(u, approximate=False) + jnp.tanh(u) * jax.nn.silu(u) + jax.nn.relu(u)
    return jax.nn.softplus(w2 @ act)


def _torch_mha(Q, K, V, G):
    """PyTorch's own fused attention, batched over (batch, head)."""
    return torch.sum(G * F.scaled_dot_product_attention(Q, K, V))


def _jax_mha(Q, K, V, G):
    S = jnp.einsum("bhid,bhjd->bhij", Q, K) / jnp.sqrt(Q.shape[-1])
    return jnp.sum(G * jnp.einsum("bhij,bhjd->bhid", jax.nn.softmax(S, axis=-1), V))


TORCH_FORWARD = {
    "cross_entropy": lambda z, y: -torch.sum(y * torch.log_softmax(z, dim=-1)),
    "attention": _torch_attention,
    "layernorm": _torch_layernorm,
    "least_squares": lambda A, x, b: 0.5 * torch.sum((A @ x - b) ** 2),
    "mlp": _torch_mlp,
    "batched_logsumexp": lambda Z, Y: torch.mean(torch.logsumexp(Z, -1) - torch.sum(Y * Z, -1)),
    "temperature": lambda z, y, T: -torch.sum(y * torch.log_softmax(z / T, dim=-1)),
    "multi_head_attention": _torch_mha,
}
JAX_FORWARD = {
    "cross_entropy": lambda z, y: -jnp.sum(y * jax.nn.log_softmax(z)),
    "attention": _jax_attention,
    "layernorm": _jax_layernorm,
    "least_squares": lambda A, x, b: 0.5 * jnp.sum((A @ x - b) ** 2),
    "mlp": _jax_mlp,
    "batched_logsumexp": lambda Z, Y: jnp.mean(
        jax.scipy.special.logsumexp(Z, axis=-1) - jnp.sum(Y * Z, axis=-1)
    ),
    "temperature": lambda z, y, T: -jnp.sum(y * jax.nn.log_softmax(z / T)),
    "multi_head_attention": _jax_mha,
}


def _close(got, want, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, what
    scale = max(1.0, float(np.max(np.abs(want)))) if want.size else 1.0
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * scale, err_msg=what)


def test_forward_tables_cover_every_program():
    assert set(TORCH_FORWARD) == set(JAX_FORWARD) == set(PROGRAMS)


@pytest.mark.parametrize("profile", ["unit", "peaked"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_torch_export_matches_autograd(name, profile, tmp_path):
    program = PROGRAMS[name]()
    module = load_module(to_module(program, "torch"), tmp_path, f"torch_{name}_{profile}")
    inputs = sample_inputs(program, seed=2, profile=profile)
    value, grads = module.value_and_grad(*inputs.values())
    assert isinstance(value, torch.Tensor) and value.dtype == torch.float64
    args = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in inputs.items()}
    ref = TORCH_FORWARD[name](*args.values())
    wrt = [v for v, _ in program.gradients]
    ref_grads = torch.autograd.grad(ref, [args[v] for v in wrt])
    _close(value, ref.detach(), "value")
    for v, g in zip(wrt, ref_grads, strict=True):
        assert grads[v].dtype == torch.float64
        _close(grads[v], g, v)


@pytest.mark.parametrize("profile", ["unit", "peaked"])
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_jax_export_matches_jax_grad(name, profile, tmp_path):
    program = PROGRAMS[name]()
    module = load_module(to_module(program, "jax"), tmp_path, f"jax_{name}_{profile}")
    inputs = sample_inputs(program, seed=2, profile=profile)
    value, grads = module.value_and_grad(*inputs.values())
    assert value.dtype == jnp.float64
    names = list(inputs)
    wrt = [v for v, _ in program.gradients]
    f = JAX_FORWARD[name]
    ref, ref_grads = jax.value_and_grad(f, argnums=tuple(names.index(v) for v in wrt))(
        *(jnp.asarray(x) for x in inputs.values())
    )
    _close(value, ref, "value")
    for v, g in zip(wrt, ref_grads, strict=True):
        assert grads[v].dtype == jnp.float64
        _close(grads[v], g, v)


def test_torch_gradient_of_a_hand_checkable_case(tmp_path):
    """Least squares with A = I: r = x - b, value |r|^2 / 2, gradients r x^T, r and -r."""
    module = load_module(to_module(PROGRAMS["least_squares"](), "torch"), tmp_path, "ls_hand")
    value, grads = module.value_and_grad(torch.eye(2), [3.0, 1.0], [1.0, 1.0])
    assert value.item() == 2.0
    assert grads["A"].tolist() == [[6.0, 2.0], [0.0, 0.0]]
    assert grads["x"].tolist() == [2.0, 0.0] and grads["b"].tolist() == [-2.0, -0.0]


# The form of every registry function in the two libraries, against the registry's NumPy form.
@pytest.mark.parametrize("target", ["torch", "jax"])
@pytest.mark.parametrize("expr,vars", FUNCTION_CASES, ids=[c[0] for c in FUNCTION_CASES])
def test_library_form_of_every_function(target, expr, vars, tmp_path):
    (value, f), (ev, ef) = run_function_case(target, expr, vars, tmp_path, f"fn_{target}")
    assert f.shape == ef.shape and f.dtype == np.float64
    np.testing.assert_allclose(f, ef, rtol=1e-13, atol=1e-14 * float(np.max(np.abs(ef))))
    np.testing.assert_allclose(value, ev, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_jax_export_is_jittable(name, tmp_path):
    """Sizes come from static shapes and size scalars are Python floats, so jax.jit traces it."""
    program = PROGRAMS[name]()
    module = load_module(to_module(program, "jax"), tmp_path, f"jit_{name}")
    inputs = [jnp.asarray(x) for x in sample_inputs(program, seed=4).values()]
    value, grads = module.value_and_grad(*inputs)
    jit_value, jit_grads = jax.jit(module.value_and_grad)(*inputs)
    _close(jit_value, value, "value")
    for v in grads:
        _close(jit_grads[v], grads[v], v)
