"""Exports of programs from `engine.derive`, against complex-step, torch.autograd and jax.grad."""

from __future__ import annotations

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from test_export import _complex_step_reference
from test_export_autodiff import JAX_FORWARD, TORCH_FORWARD, _close
from test_export_programs import PROGRAMS, jax_x64, load_module, sample_inputs  # noqa: F401

from engine.backends import numpy_backend
from engine.derive import derive
from engine.export import to_module
from engine.expr import call

pytestmark = pytest.mark.usefixtures("jax_x64")


@functools.cache
def derived(name: str):
    """The derive engine's own program for the output of a hand program, same variables."""
    hand = PROGRAMS[name]()
    return derive(hand.output, [v for v, _ in hand.gradients], env=hand.env)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_derived_numpy_export_matches_complex_step(name, tmp_path):
    program = derived(name)
    assert program.verified
    summary = program.verification_line().removeprefix("verified: ")
    src = to_module(program, verified_summary=summary)
    assert "Verified by llm-math-notes: exact at" in " ".join(src.split())
    module = load_module(src, tmp_path, f"derived_np_{name}")
    inputs = sample_inputs(program, seed=5, profile="wide")
    value, grads = module.value_and_grad(*inputs.values())
    ref_value, ref_grads = _complex_step_reference(program, inputs)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12, atol=1e-12)
    for v, g in grads.items():
        scale = max(1.0, float(np.max(np.abs(ref_grads[v]))))
        np.testing.assert_allclose(g, ref_grads[v], rtol=1e-9, atol=1e-11 * scale, err_msg=v)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_derived_torch_export_matches_autograd(name, tmp_path):
    program = derived(name)
    module = load_module(to_module(program, "torch"), tmp_path, f"derived_torch_{name}")
    inputs = sample_inputs(program, seed=6)
    value, grads = module.value_and_grad(*inputs.values())
    args = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in inputs.items()}
    ref = TORCH_FORWARD[name](*args.values())
    wrt = [v for v, _ in program.gradients]
    _close(value, ref.detach(), "value")
    for v, g in zip(wrt, torch.autograd.grad(ref, [args[v] for v in wrt]), strict=True):
        _close(grads[v], g, v)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_derived_jax_export_matches_jax_grad(name, tmp_path):
    program = derived(name)
    module = load_module(to_module(program, "jax"), tmp_path, f"derived_jax_{name}")
    inputs = sample_inputs(program, seed=7)
    value, grads = module.value_and_grad(*inputs.values())
    names = list(inputs)
    wrt = [v for v, _ in program.gradients]
    ref, ref_grads = jax.value_and_grad(
        JAX_FORWARD[name], argnums=tuple(names.index(v) for v in wrt)
    )(*(jnp.asarray(x) for x in inputs.values()))
    _close(value, ref, "value")
    for v, g in zip(wrt, ref_grads, strict=True):
        _close(grads[v], g, v)


@functools.cache
def softmax_jacobian():
    return derive("softmax(z)", "z", {"z": "real[n]"})


@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
def test_derived_jacobian_export(target, tmp_path):
    """A Jacobian program: the value is softmax(z), J = diag(p) - p p^T (rows sum to 0)."""
    program = softmax_jacobian()
    assert program.kind == "jacobian"
    module = load_module(to_module(program, target), tmp_path, f"jac_{target}")
    z = np.array([0.5, -1.0, 2.0, 0.0])
    value, grads = module.value_and_grad(z)
    p = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(np.asarray(value), p, rtol=1e-14)
    J = np.asarray(grads["z"])
    np.testing.assert_allclose(J, np.diag(p) - np.outer(p, p), rtol=1e-13, atol=1e-16)
    ref = numpy_backend.evaluate(
        call("jacobian", program.output, program.env.vars["z"]), {"z": z}, {"n": 4}
    )
    np.testing.assert_allclose(J, ref, rtol=1e-10, atol=1e-14)


def test_derive_cli_python_output_runs(tmp_path):
    """`llm-math derive --format python --target torch` prints a module that loads and is right."""
    done = subprocess.run(
        [
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
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Verified by llm-math-notes: exact at" in " ".join(done.stdout.split())
    module = load_module(done.stdout, tmp_path, "cli_torch")
    value, grads = module.value_and_grad([0.0, np.log(3.0)], [0.0, 1.0])
    assert value.item() == pytest.approx(np.log(4.0 / 3.0), rel=1e-15)
    np.testing.assert_allclose(grads["z"].numpy(), [0.25, -0.25], rtol=1e-15)
