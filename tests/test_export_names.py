"""Generated code never shadows: variables named like the module's imports and locals all work.

A variable may be called `value`, `np`, `torch`, `jnp`, `math` or `jax`, or like a temporary
the module makes for itself (`t1`, `sqrt_d`, `z_shifted`, a gradient `dK`): each exported
module (NumPy, PyTorch, JAX) must still return the value and the gradients of every variable,
compared here with the NumPy backend's complex-step gradients.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_derive_names import SIZES, sample
from test_export_programs import jax_x64, load_module  # noqa: F401

from engine import derive
from engine.backends.numpy_backend import to_numpy
from engine.export import to_module
from engine.parser import build_environment, parse_formula

pytestmark = pytest.mark.usefixtures("jax_x64")

TARGETS = ["numpy", "torch", "jax"]
# The names the emitter uses itself: imports, the value, temporaries, gradients.
NAMES = [
    "value",
    "np",
    "torch",
    "jnp",
    "math",
    "jax",
    "_sigmoid",
    "t",
    "t1",
    "sqrt_d",
    "dK",
    "dV",
    "J",
    "value_and_grad",
    # the dtype, device and shape-check locals of every exported function (issue 9)
    "dtype",
    "device",
    "ctx",
    "_sizes",
]


def cases(name: str) -> list[tuple[str, dict[str, str], list[str]]]:
    """(expression, variables, wrt) in which `name` is a variable the expression uses."""
    attention = {name: "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"}
    cross_entropy = {name: "real[n]", "y": "simplex[n]", "sqrt_n": "real"}
    return [
        (f"sum(O * (softmax({name} @ K.T / sqrt(d)) @ V))", attention, [name, "K", "V"]),
        (
            f"cross_entropy(softmax({name}), y) + sqrt_n * sum(sigmoid({name})) / sqrt(n)",
            cross_entropy,
            [name, "sqrt_n"],
        ),
    ]


def _array(x) -> np.ndarray:
    return np.asarray(x.detach() if hasattr(x, "detach") else x, dtype=np.float64)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", NAMES)
def test_variable_named_like_the_module(name, target, tmp_path):
    for k, (text, vars, wrt) in enumerate(cases(name)):
        program = derive(text, wrt, vars, verify=False)
        module = load_module(to_module(program, target), tmp_path, f"m_{name}_{target}_{k}")
        inputs = sample(vars, seed=k)
        value, grads = module.value_and_grad(*inputs.values())
        if name in ("np", "torch", "jnp", "math", "jax"):  # the docstring says where it went
            assert f"{name} is the argument {name}_" in module.value_and_grad.__doc__
        env = build_environment(vars)
        expected = to_numpy(parse_formula(text, env), SIZES)(**inputs)
        assert np.allclose(_array(value), expected, rtol=1e-10), (name, target, text)
        assert sorted(grads) == sorted(wrt), (name, target, sorted(grads))
        for w in wrt:
            ref = to_numpy(parse_formula(f"grad({text}, {w})", env), SIZES)(**inputs)
            got = _array(grads[w])
            assert got.shape == ref.shape
            assert np.allclose(got, ref, rtol=1e-8, atol=1e-10), (name, target, w)


@pytest.mark.parametrize("target", TARGETS)
def test_jacobian_of_a_variable_named_J(target, tmp_path):
    vars = {"z": "real[n]", "J": "real[n]"}
    program = derive("softmax(z) * J", ["z"], vars, verify=False)
    module = load_module(to_module(program, target), tmp_path, f"jac_{target}")
    inputs = sample(vars, seed=0)
    value, grads = module.value_and_grad(*inputs.values())
    env = build_environment(vars)
    ref = to_numpy(parse_formula("jacobian(softmax(z) * J, z)", env), SIZES)(**inputs)
    assert np.allclose(_array(grads["z"]), ref, rtol=1e-8, atol=1e-10)
    assert np.allclose(_array(value), inputs["J"] * np.exp(inputs["z"]) / np.exp(inputs["z"]).sum())
