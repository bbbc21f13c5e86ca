"""The pre-LN transformer block (heads by reshape, d = h * dh) exported, against torch and JAX.

The exported programs take the head count h as a keyword (no argument has an axis of length h
alone) and solve dh = d // h; their value and every gradient must match torch.autograd and
jax.grad on implementations of the same block written here independently.
"""

from __future__ import annotations

import functools
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_export_programs import jax_x64  # noqa: F401

from engine.api import derive
from engine.export import load, to_module

# the block of examples/transformer_block.toml (also the transformer note's)
_SPEC = tomllib.loads(
    (Path(__file__).resolve().parents[1] / "examples" / "transformer_block.toml").read_text()
)
BLOCK_VARS, BLOCK_DEFS = _SPEC["vars"], _SPEC["defs"]
WRT = ["Wq", "Wk", "Wv", "Wo", "W1", "W2", "g1", "b1", "g2", "b2", "X"]
N, H, DH, M, EPS = 5, 3, 4, 7, 1e-5
D = H * DH


@functools.cache
def block_program():
    return derive("sum(G * Y)", WRT, BLOCK_VARS, BLOCK_DEFS, sizes=_SPEC["sizes"], verify=False)


def block_inputs(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = {
        "X": (N, D),
        "G": (N, D),
        "Wq": (D, D),
        "Wk": (D, D),
        "Wv": (D, D),
        "Wo": (D, D),
        "W1": (D, M),
        "W2": (M, D),
        "g1": (D,),
        "b1": (D,),
        "g2": (D,),
        "b2": (D,),
    }
    out = {
        k: rng.standard_normal(s) / (math.sqrt(s[0]) if len(s) == 2 else 1)
        for k, s in shapes.items()
    }
    out["g1"] = 1 + 0.2 * out["g1"]
    out["g2"] = 1 + 0.2 * out["g2"]
    return out


def torch_block(p: dict[str, torch.Tensor], heads: int) -> torch.Tensor:
    """The block as PyTorch users write it: F.layer_norm, causal SDPA, exact GELU."""
    x = p["X"]
    n, d = x.shape
    dh = d // heads
    h1 = F.layer_norm(x, (d,), p["g1"], p["b1"], eps=EPS)

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(n, heads, dh).transpose(0, 1)

    q, k, v = split(h1 @ p["Wq"]), split(h1 @ p["Wk"]), split(h1 @ p["Wv"])
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    x2 = x + o.transpose(0, 1).reshape(n, d) @ p["Wo"]
    h2 = F.layer_norm(x2, (d,), p["g2"], p["b2"], eps=EPS)
    y = x2 + F.gelu(h2 @ p["W1"], approximate="none") @ p["W2"]
    return (p["G"] * y).sum()


def jax_block(p: dict, heads: int):
    """The block in JAX with an explicit masked softmax and hand-written LayerNorm."""
    import jax
    import jax.numpy as jnp

    def layer_norm(x, g, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / jnp.sqrt(var + EPS) * g + b

    x = p["X"]
    n, d = x.shape
    dh = d // heads
    h1 = layer_norm(x, p["g1"], p["b1"])
    q, k, v = ((h1 @ p[w]).reshape(n, heads, dh).transpose(1, 0, 2) for w in ("Wq", "Wk", "Wv"))
    scores = jnp.einsum("hid,hjd->hij", q, k) / jnp.sqrt(dh)
    causal = jnp.tril(jnp.ones((n, n), dtype=bool))
    attn = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
    o = jnp.einsum("hij,hjd->ihd", attn, v).reshape(n, d)
    x2 = x + o @ p["Wo"]
    h2 = layer_norm(x2, p["g2"], p["b2"])
    y = x2 + jax.nn.gelu(h2 @ p["W1"], approximate=False) @ p["W2"]
    return jnp.sum(p["G"] * y)


def test_block_export_takes_heads_as_keyword():
    src = to_module(block_program(), "numpy")
    assert "*, h: int, dtype=None)" in src
    assert "dh = X.shape[1] // h" in src
    assert "h is a keyword-only argument" in src


def test_block_torch_export_matches_autograd():
    fn = load(block_program(), "torch")
    arrays = block_inputs(1)
    params = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in arrays.items()
    }
    loss = torch_block(params, H)
    loss.backward()
    value, grads = fn(**params, eps=EPS, h=H)
    assert value.dtype == torch.float64
    torch.testing.assert_close(value, loss.detach(), rtol=1e-12, atol=1e-12)
    assert set(grads) == set(WRT)
    for name in WRT:
        torch.testing.assert_close(
            grads[name], params[name].grad, rtol=1e-10, atol=1e-12, msg=f"d{name}"
        )


@pytest.mark.usefixtures("jax_x64")
def test_block_jax_export_matches_jax_grad():
    import jax
    import jax.numpy as jnp

    fn = load(block_program(), "jax")
    arrays = {k: jnp.asarray(v) for k, v in block_inputs(2).items()}
    loss, want = jax.value_and_grad(lambda p: jax_block(p, H))(arrays)
    value, grads = fn(**arrays, eps=EPS, h=H)
    assert value.dtype == jnp.float64
    np.testing.assert_allclose(value, loss, rtol=1e-12, atol=1e-12)
    for name in WRT:
        np.testing.assert_allclose(grads[name], want[name], rtol=1e-10, atol=1e-12, err_msg=name)
    # under jit the head count is static, as the module's docstring says
    jitted = jax.jit(functools.partial(fn, h=H))
    value_jit, grads_jit = jitted(**arrays, eps=EPS)
    np.testing.assert_allclose(value_jit, loss, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads_jit["Wq"], want["Wq"], rtol=1e-10, atol=1e-12)


def test_block_numpy_export_matches_torch_at_other_heads():
    """Another head count for the same arrays (d = 12 = 2 * 6) is another function."""
    fn = load(block_program(), "numpy")
    arrays = block_inputs(3)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    loss = torch_block(params, 2)
    loss.backward()
    value, grads = fn(**arrays, eps=EPS, h=2)
    np.testing.assert_allclose(value, loss.item(), rtol=1e-12)
    for name in WRT:
        np.testing.assert_allclose(grads[name], params[name].grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    ("heads", "message"),
    [
        (5, "argument X has an axis 1 of length 12, declared d = dh*h: no sizes give it"),
        (13, "no sizes give it with h = 13, dh = 0"),
        (0, "the size h must be a positive integer"),
        (2.0, "the size h must be a positive integer"),
        (True, "the size h must be a positive integer"),
        (np.ones(2), "the size h must be a positive integer"),
    ],
)
def test_block_export_refuses_heads_that_do_not_divide_d(heads, message):
    fn = load(block_program(), "numpy")
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        fn(**block_inputs(4), eps=EPS, h=heads)


def test_block_export_requires_heads():
    fn = load(block_program(), "numpy")
    with pytest.raises(TypeError, match="h"):
        fn(**block_inputs(4), eps=EPS)


def test_block_autograd_function_takes_heads_and_matches_autograd():
    """--as autograd-function: fused(X, ..., h=3) is the block's Y, its backward the program."""
    fused = load(block_program(), "torch", as_="autograd-function")
    arrays = block_inputs(7)
    G = torch.tensor(arrays.pop("G"))
    mine = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    ref = {k: torch.tensor(v, requires_grad=True) for k, v in arrays.items()}
    Y = fused(**mine, eps=EPS, h=H)
    (Y * G).sum().backward()
    torch_block({**ref, "G": G}, H).backward()
    for name in WRT:
        torch.testing.assert_close(mine[name].grad, ref[name].grad, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="no sizes give it with h = 5"):
        fused(**mine, eps=EPS, h=5)


@pytest.mark.usefixtures("jax_x64")
def test_block_custom_vjp_takes_heads_and_matches_jax_grad():
    import jax
    import jax.numpy as jnp

    fused = load(block_program(), "jax", as_="custom-vjp")
    arrays = {k: jnp.asarray(v) for k, v in block_inputs(8).items()}
    G = arrays.pop("G")

    def mine(p):
        return jnp.sum(G * fused(**p, eps=EPS, h=H))

    want = jax.grad(lambda p: jax_block({**p, "G": G}, H))(arrays)
    for got in (jax.grad(mine)(arrays), jax.jit(jax.grad(mine))(arrays)):
        for name in WRT:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- the same rule, smaller programs


def test_size_read_off_another_axis_solves_the_relation():
    """h is w's length, so dh = X.shape[1] // h is solved and no keyword is needed."""
    p = derive(
        "sum(G * reshape(reshape(X, (n, h, dh)) * expand_dims(w, axis=-1), (n, d)))",
        ["X", "w"],
        {"X": "real[n, d]", "w": "real[h]", "G": "real[n, d]"},
        sizes={"d": "h * dh"},
        verify=False,
    )
    src = to_module(p, "numpy")
    assert "*, dtype=None)" in src and "dh = X.shape[1] // h" in src
    fn = load(p, "numpy")
    rng = np.random.default_rng(5)
    X, w, G = rng.standard_normal((2, 6)), rng.standard_normal(3), rng.standard_normal((2, 6))
    G3 = G.reshape(2, 3, 2)
    value, grads = fn(X, w, G)
    np.testing.assert_allclose(value, np.sum(G3 * X.reshape(2, 3, 2) * w[:, None]), rtol=1e-13)
    np.testing.assert_allclose(grads["X"], (G3 * w[:, None]).reshape(2, 6), rtol=1e-13)
    np.testing.assert_allclose(grads["w"], np.sum(G3 * X.reshape(2, 3, 2), axis=(0, 2)), rtol=1e-13)
    with pytest.raises(ValueError, match="argument X has an axis 1 of length 7"):
        fn(rng.standard_normal((2, 7)), w, rng.standard_normal((2, 7)))


def test_axis_of_a_sum_relation_is_checked():
    """x: real[n], y: real[n1] with n1 = n - 1: n is read, y's length is checked against it."""
    p = derive(
        "sum(y * x[1:])",
        ["x", "y"],
        {"x": "real[n]", "y": "real[n1]"},
        sizes={"n1": "n - 1"},
        verify=False,
    )
    fn = load(p, "numpy")
    x, y = np.arange(1.0, 5.0), np.arange(2.0, 5.0)
    value, grads = fn(x, y)
    assert value == pytest.approx(float(y @ x[1:]))
    np.testing.assert_allclose(grads["x"], np.concatenate([[0.0], y]))
    with pytest.raises(ValueError, match="argument y has an axis 0 of length 4, declared n1"):
        fn(x, np.ones(4))


@pytest.mark.usefixtures("jax_x64")
@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
def test_label_bound_without_an_axis_is_a_keyword(target):
    """y: index[B, V] with no array of length V: V is a keyword-only size (V=...)."""
    p = derive(
        "sum(x * max(one_hot(y), axis=-1) + x * sum(one_hot(y) * one_hot(y), axis=-1))",
        ["x"],
        {"x": "real[B]", "y": "index[B, V]"},
        verify=False,
    )
    assert "*, V: int, dtype=None)" in to_module(p, target)
    fn = load(p, target)
    x, y = np.array([0.5, -1.0, 2.0]), np.array([0, 3, 1])
    value, grads = fn(x, y, V=4)
    assert float(value) == pytest.approx(2 * x.sum())
    np.testing.assert_allclose(np.asarray(grads["x"]), 2 * np.ones(3))
    with pytest.raises(ValueError, match="the size V must be a positive integer"):
        fn(x, y, V=-1)


# ---------------------------------------------------------------- counts over combined axes


def _var(x: torch.Tensor, *dims: int, keepdim: bool = False) -> torch.Tensor:
    return torch.var(x, dim=dims or None, unbiased=False, keepdim=keepdim)


# (formula, the same in torch) with h = 2 heads of dh = 3 columns
COUNT_FAMILY = [
    # LayerNorm over d = h * dh: its backward divides by the count h * dh
    (
        "sum(G * A)",
        lambda X, G, eps: (
            G * (X - X.mean(-1, keepdim=True)) / torch.sqrt(_var(X, -1, keepdim=True) + eps)
        ).sum(),
    ),
    (
        "sum(G * (X - mean(X, axis=-1, keepdims=True))"
        " / sqrt(var(X, axis=-1, keepdims=True) + eps))",
        lambda X, G, eps: (
            G * (X - X.mean(-1, keepdim=True)) / torch.sqrt(_var(X, -1, keepdim=True) + eps)
        ).sum(),
    ),
    ("sum(G * mean(X, axis=-1, keepdims=True))", lambda X, G, eps: (G * X.mean(-1, True)).sum()),
    ("mean(X) * sum(G * X)", lambda X, G, eps: X.mean() * (G * X).sum()),
    (
        "sum(var(X, axis=0) * mean(G, axis=0))",
        lambda X, G, eps: (_var(X, 0) * G.mean(0)).sum(),
    ),
    (
        "sum(mean(reshape(X, (n, h, dh)), axis=(0, 2)) ** 2)",
        lambda X, G, eps: (X.reshape(3, 2, 3).mean((0, 2)) ** 2).sum(),
    ),
    (
        "sum(mean(X * G, axis=1) ** 2) + var(X)",
        lambda X, G, eps: ((X * G).mean(1) ** 2).sum() + _var(X),
    ),
]


@pytest.mark.parametrize(("expr", "reference"), COUNT_FAMILY)
def test_counts_over_related_axes_are_size_products(expr, reference):
    """A reduction's count over an axis of length h * dh is h * dh (two sizes), so the derived
    program verifies and exports (it was one size named 'dh*h', unknown to every route)."""
    import inspect

    from engine.expr import Size

    p = derive(
        expr,
        ["X"],
        {"X": "real[n, d]", "G": "real[n, d]", "eps": "positive"},
        {
            "s": "sqrt(var(X, axis=-1, keepdims=True) + eps)",
            "A": "(X - mean(X, axis=-1, keepdims=True)) / s",
        },
        sizes={"d": "h * dh"},
    )
    assert [r.verdict for _, r in p.results] == ["pass"]
    used = {
        node.name
        for root in (p.output, *(g for _, g in p.gradients), *(s.expr for s in p.steps))
        for node in root.walk()
        if isinstance(node, Size)
    }
    assert used <= set(p.env.sizes)
    fn = load(p, "numpy")
    rng = np.random.default_rng(6)
    X, G = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    heads = {"h": 2} if "h" in inspect.signature(fn).parameters else {}
    value, grads = fn(X, G, 0.1, **heads)
    Xt = torch.tensor(X, requires_grad=True)
    loss = reference(Xt, torch.tensor(G), 0.1)
    loss.backward()
    np.testing.assert_allclose(value, loss.item(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grads["X"], Xt.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_traced_size_keyword_is_a_clear_error_under_jit():
    """Under jax.jit a size keyword must be static; a traced one is refused by name."""
    import jax

    p = derive(
        "sum(x * max(one_hot(y), axis=-1))",
        ["x"],
        {"x": "real[B]", "y": "index[B, V]"},
        verify=False,
    )
    fn = load(p, "jax")
    x, y = np.ones(3), np.array([0, 1, 2])
    with pytest.raises(ValueError, match="the size V must be a positive integer"):
        jax.jit(fn)(x, y, V=4)
    value, _ = jax.jit(fn, static_argnames="V")(x, y, V=4)
    assert float(value) == 3.0
