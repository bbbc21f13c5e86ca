"""Two export lowering rules (engine.export.lower): shared definitions and dropped ones(...).

Both make the exported code faster without changing a value: each case is checked against the
verifier's NumPy route (complex-step gradients of the original expression).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_export import _complex_step_reference
from test_export_programs import sample_inputs

from engine.backends import numpy_backend
from engine.derive import derive
from engine.derive.program import Program
from engine.export import load, to_module
from engine.parser import build_environment, parse_formula


def _check(program: Program, seed: int = 0) -> None:
    inputs = sample_inputs(program, seed=seed)
    value, grads = load(program)(*inputs.values())
    ref_value, ref_grads = _complex_step_reference(program, inputs)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    for v, g in grads.items():
        np.testing.assert_allclose(g, ref_grads[v], rtol=1e-10, atol=1e-12, err_msg=v)


def test_gelu_terms_are_computed_once():
    """The value reads X @ W1, the gradients read its name t1: one tree, so one erf, one exp."""
    program = derive(
        "sum(O * (gelu(X @ W1) @ W2))",
        ["X", "W1", "W2"],
        {"X": "real[n, d]", "W1": "real[d, h]", "W2": "real[h, d]", "O": "real[n, d]"},
        verify=False,
    )
    body = to_module(program).split("def value_and_grad", 1)[1]
    assert body.count("erf(") == 1 and body.count("np.exp(") == 1 and body.count(" = X @ W1") == 1
    _check(program)


def test_ones_factors_are_dropped_next_to_a_full_shape():
    program = derive(
        "sum(O * (xhat * g + b))",
        ["X", "g", "b"],
        {"X": "real[n, d]", "g": "real[d]", "b": "real[d]", "O": "real[n, d]", "eps": "positive"},
        {
            "sigma": "sqrt(var(X, axis=-1, keepdims=True) + eps)",
            "xhat": "(X - mean(X, axis=-1, keepdims=True)) / sigma",
        },
        verify=False,
    )
    assert "ones(" not in to_module(program, "torch")
    _check(program)


# a +- (ones * m) forms, each exported as d/dw of sum(F * w) = F and compared with the registry's
# NumPy evaluation of F (which builds the ones).
ONES_CASES = [
    "A - ones(n, k) * m",
    "A + m * ones(n, k) / s",
    "ones(n, k) * m - A",
    "A - -(ones(n, k) * m * s)",
    "ones(n, k) * m + ones(n, k) * s",  # neither side is full-shape alone: kept
]


@pytest.mark.parametrize("expr", ONES_CASES)
def test_dropped_ones_keep_the_values(expr):
    env = build_environment(
        {"A": "real[n, k]", "m": "real[n, 1]", "s": "positive", "w": "real[n, k]"}
    )
    f = parse_formula(expr, env)
    program = Program(parse_formula(f"sum(({expr}) * w)", env), env, (), (("w", f),))
    inputs = sample_inputs(program, seed=4)
    _, grads = load(program)(*inputs.values())
    sizes = {"n": inputs["A"].shape[0], "k": inputs["A"].shape[1]}
    expected = numpy_backend.evaluate(f, inputs, sizes)
    assert grads["w"].shape == expected.shape
    np.testing.assert_allclose(grads["w"], expected, rtol=1e-14, atol=1e-15)
