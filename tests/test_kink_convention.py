"""One convention at kinks (PyTorch's: relu'(0) = abs'(0) = step'(0) = sign'(0) = 0) in the exact
route, the numeric route, derive and the exported code."""

from __future__ import annotations

import numpy as np
import pytest

from engine import derive
from engine.backends import numpy_backend, sympy_backend
from engine.export import to_module
from engine.parser import build_environment, parse_formula

CASES = [("sum(relu(x))", 0.0), ("sum(abs(x))", 0.0), ("sum(step(x) * x)", 0.0)]
# selection (issue 8): torch.maximum/minimum split a tie, torch.clamp is inclusive at its bounds,
# torch.amax shares the gradient among tied maxima (three zeros: 1/3 each)
CASES += [
    ("sum(maximum(x, 0))", 0.5),
    ("sum(minimum(0, x))", 0.5),
    ("sum(clip(x, 0, 1))", 1.0),
    ("sum(clip(x, -1, 0))", 1.0),
    ("max(x)", 1 / 3),
    ("min(x)", 1 / 3),
]


def _grad_at_zero_numeric(f):
    env = build_environment({"x": "real[n]"})
    expr = parse_formula(f"grad({f}, x)", env)
    return numpy_backend.evaluate(expr, {"x": np.zeros(3)}, {"n": 3})


def _grad_at_zero_exact(f):
    env = build_environment({"x": "real[n]"})
    expr = parse_formula(f"grad({f}, x)", env)
    sym = sympy_backend.to_sympy(expr, {"n": 3})
    return [float(e.subs({s: 0 for s in e.free_symbols})) for e in sym]


@pytest.mark.parametrize("f,want", CASES)
def test_every_backend_takes_zero_at_the_kink(f, want, tmp_path):
    assert np.all(_grad_at_zero_numeric(f) == want)
    assert _grad_at_zero_exact(f) == [want] * 3
    prog = derive(f, wrt=["x"], vars={"x": "real[n]"})
    assert prog.verified
    source = to_module(prog, target="numpy")
    namespace: dict = {}
    exec(compile(source, "exported", "exec"), namespace)  # our own generated code, not user text
    fn = next(v for k, v in namespace.items() if k == "value_and_grad")
    _, grads = fn(np.zeros(3))
    assert np.all(np.asarray(grads["x"]) == want)
