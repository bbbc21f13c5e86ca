"""--as autograd-function and --as custom-vjp: the derived program as the framework's backward.

Checked against the frameworks' own tools (torch.autograd.gradcheck, jax.test_util.check_grads),
against plain autodiff of handwritten forwards, and in a training loop.
"""

from __future__ import annotations

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.test_util import check_grads
from test_export_autodiff import JAX_FORWARD, TORCH_FORWARD
from test_export_programs import PROGRAMS, sample_inputs

from engine.export import ExportError, load, to_module
from engine.export.wrappers import cotangent_of


def _split(name: str):
    """(program, cotangent variable or None, the wrapper's input names, the gradient names)."""
    program = PROGRAMS[name]()
    cot, _ = cotangent_of(program)
    inputs = [v for v in program.env.vars if v != cot]
    return program, cot, inputs, [v for v, _ in program.gradients]


def test_cotangent_is_found_for_the_linear_functionals():
    assert {n: cotangent_of(PROGRAMS[n]())[0] for n in PROGRAMS} == {
        "attention": "O",
        "layernorm": "O",
        "cross_entropy": None,
        "least_squares": None,
        "mlp": None,
        "batched_logsumexp": None,
        "temperature": None,
        "multi_head_attention": "G",  # tensors of any rank (issue 8)
    }


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_autograd_function_matches_autograd_and_passes_gradcheck(name):
    program, cot, inputs, wrt = _split(name)
    fn = load(program, "torch", as_="autograd-function")
    data = sample_inputs(program, seed=11)
    args = {k: torch.tensor(v, requires_grad=k in wrt) for k, v in data.items()}
    out = fn(*(args[v] for v in inputs))
    # the same scalar as the program's: sum(O * f) for a linear functional, the loss otherwise
    loss = torch.sum(args[cot] * out) if cot else out
    got = torch.autograd.grad(loss, [args[v] for v in wrt])
    ref_args = {k: torch.tensor(v, requires_grad=True) for k, v in data.items()}
    ref = TORCH_FORWARD[name](*ref_args.values())
    want = torch.autograd.grad(ref, [ref_args[v] for v in wrt])
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    for v, g, w in zip(wrt, got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=v)
    fresh = tuple(
        torch.tensor(data[v], requires_grad=v in wrt)
        if data[v].ndim or v in wrt
        else float(data[v])
        for v in inputs
    )
    assert torch.autograd.gradcheck(lambda *a: fn(*a), fresh, eps=1e-6, atol=1e-7)


def test_autograd_function_refuses_a_gradient_it_does_not_have():
    fn = load(PROGRAMS["cross_entropy"](), "torch", as_="autograd-function")
    z = torch.randn(5, dtype=torch.float64, requires_grad=True)
    y = torch.softmax(torch.randn(5, dtype=torch.float64), 0).requires_grad_()
    with pytest.raises(ValueError, match="gradient with respect to y was not derived"):
        fn(z, y)


def _attention_model(seed: int, fused: bool):
    """One attention head over projections of the input, as a torch.nn.Module."""
    fn = load(PROGRAMS["attention"](), "torch", as_="autograd-function") if fused else None

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            self.q, self.k, self.v = (torch.nn.Linear(8, 4, bias=False) for _ in range(3))
            self.out = torch.nn.Linear(4, 1)

        def forward(self, X):
            Q, K, V = self.q(X), self.k(X), self.v(X)
            if fn is not None:
                H = fn(Q, K, V)
            else:
                H = torch.softmax(Q @ K.T / math.sqrt(Q.shape[1]), dim=-1) @ V
            return self.out(H).squeeze(-1)

    return Head()


def test_autograd_function_trains_like_plain_autograd():
    """SGD for 30 steps in float32: the fused head's losses equal plain autograd's."""
    torch.manual_seed(0)
    X, target = torch.randn(6, 8), torch.randn(6)
    losses = {}
    for fused in (False, True):
        model = _attention_model(1, fused)
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        history = []
        for _ in range(30):
            opt.zero_grad()
            loss = torch.mean((model(X) - target) ** 2)
            loss.backward()
            opt.step()
            history.append(loss.item())
        losses[fused] = history
    assert losses[True][-1] < 0.7 * losses[True][0]  # it trains
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5, atol=1e-6)


# A linear functional, a loss, a scalar undifferentiated input (eps), a scalar variable (T).
@pytest.mark.parametrize("name", ["attention", "cross_entropy", "layernorm", "temperature"])
def test_custom_vjp_passes_check_grads_and_matches_jax_grad(name):
    program, cot, inputs, wrt = _split(name)
    data = sample_inputs(program, seed=12)
    with jax.enable_x64(True):
        fn = load(program, "jax", as_="custom-vjp")
        args = {k: jnp.asarray(v) for k, v in data.items()}

        def loss(*xs):
            full = {**args, **dict(zip(wrt, xs, strict=True))}
            out = fn(*(full[v] for v in inputs))
            return jnp.sum(full[cot] * out) if cot else out

        got = jax.grad(loss, argnums=tuple(range(len(wrt))))(*(args[v] for v in wrt))
        names = list(data)
        want = jax.grad(JAX_FORWARD[name], argnums=tuple(names.index(v) for v in wrt))(
            *args.values()
        )
        for v, g, w in zip(wrt, got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=v)
        check_grads(loss, tuple(args[v] for v in wrt), order=1, modes=["rev"])


def test_custom_vjp_under_jit_vmap_and_grad():
    program = PROGRAMS["attention"]()
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        Q, K, V, O = (jnp.asarray(rng.standard_normal((3, 7, 5))) for _ in range(4))  # noqa: E741
        fn = load(program, "jax", as_="custom-vjp")
        plain = load(program, "jax")

        def loss(q, k, v, o):
            return jnp.sum(o * fn(q, k, v))

        batched = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1, 2))))(Q, K, V, O)
        for b in range(3):
            _, grads = plain(Q[b], K[b], V[b], O[b])
            for i, v in enumerate("QKV"):
                np.testing.assert_allclose(batched[i][b], grads[v], rtol=1e-12, atol=1e-14)
        out = jax.jit(jax.vmap(fn))(Q, K, V)
        np.testing.assert_allclose(out[1], fn(Q[1], K[1], V[1]), rtol=1e-13)


def test_custom_vjp_cotangent_of_an_underived_input_is_nan():
    """Never silently zero: differentiating the cross-entropy with respect to y gives NaN."""
    with jax.enable_x64(True):
        fn = load(PROGRAMS["cross_entropy"](), "jax", as_="custom-vjp")
        z, y = jnp.asarray([0.5, -1.0, 2.0]), jnp.asarray([0.2, 0.3, 0.5])
        assert bool(jnp.all(jnp.isnan(jax.grad(fn, argnums=1)(z, y))))
        assert bool(jnp.all(jnp.isfinite(jax.grad(fn)(z, y))))


def test_wrong_pairings_and_jacobians_are_refused():
    program = PROGRAMS["cross_entropy"]()
    with pytest.raises(ExportError, match="--as custom-vjp is for --target jax"):
        to_module(program, "torch", as_="custom-vjp")
    with pytest.raises(ExportError, match="--as autograd-function is for --target torch"):
        to_module(program, "numpy", as_="autograd-function")
    from engine.derive import derive

    jac = derive("softmax(z)", ["z"], {"z": "real[n]"}, verify=False)
    with pytest.raises(ExportError, match="only a gradient program"):
        to_module(jac, "torch", as_="autograd-function")


def test_cli_writes_an_autograd_function(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "engine",
        "derive",
        "cross_entropy(softmax(z), y)",
        "--wrt",
        "z",
        "--var",
        "z=real[n]",
        "--var",
        "y=simplex[n]",
        "--format",
        "python",
        "--target",
        "torch",
        "--as",
        "autograd-function",
        "--name",
        "softmax_xent",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "class SoftmaxXent(torch.autograd.Function):" in done.stdout
    assert "Verified by llm-math-notes" in done.stdout
    bad = subprocess.run(
        [*cmd[:-4], "--as", "custom-vjp"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "--as custom-vjp is for --target jax" in bad.stderr


def test_autograd_function_under_torch_func_vmap():
    """generate_vmap_rule: a batch of sequences through torch.func.vmap, equal row by row."""
    fn = load(PROGRAMS["attention"](), "torch", as_="autograd-function")
    torch.manual_seed(2)
    Q, K, V = (torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True) for _ in range(3))
    upstream = torch.randn(3, 7, 5, dtype=torch.float64)
    batched = torch.autograd.grad(torch.sum(upstream * torch.func.vmap(fn)(Q, K, V)), (Q, K, V))
    for b in range(3):
        one = torch.autograd.grad(torch.sum(upstream[b] * fn(Q[b], K[b], V[b])), (Q, K, V))
        for g, h in zip(batched, one, strict=True):
            torch.testing.assert_close(g[b], h[b], rtol=1e-13, atol=1e-15)


def test_autograd_function_whose_backward_reads_the_value():
    """d exp(sum(x)) / dx = exp(sum(x)): the backward reads the forward's output itself."""
    from engine.derive.program import Program
    from engine.parser import build_environment, parse_formula

    env = build_environment({"x": "real[n]"})
    program = Program(
        parse_formula("exp(sum(x))", env),
        env,
        (),
        (("x", parse_formula("exp(sum(x)) * ones(n)", env)),),
    )
    assert program.verify()["x"].passed
    assert "output[0])" in to_module(program, "torch", as_="autograd-function")
    fn = load(program, "torch", as_="autograd-function")
    x = torch.tensor([0.1, -0.4, 0.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (x,))
    (g,) = torch.autograd.grad(fn(x), x)
    torch.testing.assert_close(g, torch.exp(x.sum()).expand(3).detach(), rtol=1e-15, atol=0)


def test_wrapper_sources_are_ruff_clean(tmp_path):
    for name, make in PROGRAMS.items():
        for target, style in (("torch", "autograd-function"), ("jax", "custom-vjp")):
            (tmp_path / f"{target}_{name}.py").write_text(to_module(make(), target, as_=style))
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated"]
        + ["--line-length", "100", "--select", "E,F,W,I,B,UP", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_autograd_function_builds_its_constants_on_the_inputs_device():
    """A bias's broadcast makes ones(n, d) in the backward (dX = ones(n, d): nothing else gives
    the shape): on 'meta' it must be made on 'meta' too. (A residual block's `ones(n) + ...`
    is `1 + ...` since the simplifier drops ones that another term's shape covers.)"""
    from engine.derive import derive

    program = derive("sum(X + b)", ["X", "b"], {"X": "real[n, d]", "b": "real[d]"})
    assert "torch.ones(" in to_module(program, "torch", as_="autograd-function")
    fn = load(program, "torch", as_="autograd-function")
    X = torch.empty(4, 3, device="meta", requires_grad=True)
    b = torch.empty(3, device="meta", requires_grad=True)
    gX, gb = torch.autograd.grad(fn(X, b), (X, b))
    assert gX.device.type == gb.device.type == "meta" and gX.shape == (4, 3)


@pytest.mark.parametrize("taken", ["inputs", "output", "saved", "grad_output", "ctx", "dtype"])
def test_wrapper_variables_named_like_its_parameters(taken):
    """A variable may be called like a wrapper's own parameter: it is renamed, never shadowed."""
    from engine.derive import derive

    vars = {taken: "real[n]", "y": "onehot[n]"}
    program = derive(f"cross_entropy(softmax({taken}), y)", [taken], vars, verify=False)
    fn = load(program, "torch", as_="autograd-function")
    z = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: fn(z, y), (z,))
    (g,) = torch.autograd.grad(fn(z, y), z)
    torch.testing.assert_close(g, torch.softmax(z, 0).detach() - y, rtol=1e-14, atol=1e-15)
    with jax.enable_x64(True):
        jfn = load(program, "jax", as_="custom-vjp")
        jg = jax.grad(jfn)(jnp.asarray(z.detach().numpy()), jnp.asarray(y.numpy()))
        np.testing.assert_allclose(jg, g.numpy(), rtol=1e-13, atol=1e-15)
