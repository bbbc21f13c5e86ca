"""The PyTorch export writes into dead temporaries (engine.export.reuse) without changing a value.

Over random derived programs (shared definitions, names read on several lines): the path that
writes in place gives bit-for-bit the values of the path that does not, and never touches an
argument. The guard keeps the in-place path away from autograd, forward-mode AD, torch.func
transforms and torch.compile.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from test_derive_random import VARS, formula

from engine import derive
from engine.export import load, to_module
from engine.expr import free_vars
from engine.parser import build_environment, parse_formula

SIZES = {"n": 5, "k": 3}


def _inputs(program, seed: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    out = []
    for var in program.env.vars.values():
        shape = tuple(int(d) if d.is_Integer else SIZES[str(d)] for d in var.shape)
        if var.vtype == "index":
            out.append(torch.as_tensor(rng.integers(0, SIZES["n"], shape)))
        elif var.vtype == "simplex":
            w = np.exp(rng.standard_normal(shape))
            out.append(torch.as_tensor(w / w.sum(axis=-1, keepdims=True)))
        else:
            out.append(torch.as_tensor(rng.standard_normal(shape)))
    return out


def _both_paths(program, args):
    """(values and gradients with in-place writes, the same without; the module's source)."""
    fn = load(program, "torch")
    module = sys.modules[fn.__module__]
    kept = [a.clone() for a in args]
    reusing = fn(*args)
    for a, k in zip(args, kept, strict=True):
        assert torch.equal(a, k), "an argument was written into"
    plain = module.__dict__.get("_may_reuse")
    if plain is not None:
        module._may_reuse = lambda *a: False
        try:
            functional = fn(*args)
        finally:
            module._may_reuse = plain
    else:
        functional = reusing
    return reusing, functional, module.__source__


def _fused(source: str) -> bool:
    """Whether the module's eager path calls a fused kernel (engine.export.kernels), which
    computes in its own order: the same values to rounding, not to the bit."""
    return "# autograd, torch.func transforms, torch.compile" in source


def _assert_same(a, b, tol: float = 0) -> None:
    """Bit for bit (or within `tol`, where a fused kernel computes in its own order)."""
    (va, ga), (vb, gb) = a, b
    torch.testing.assert_close(va, vb, rtol=tol, atol=tol, equal_nan=True)
    assert ga.keys() == gb.keys()
    for k in ga:
        torch.testing.assert_close(ga[k], gb[k], rtol=tol, atol=tol, equal_nan=True)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(formula("s", 3))
# A clip bound that is a constant array once x - x is simplified: torch.clamp(x, -1, tensor)
@example("cross_entropy(softmax(clip(x, -1, 1 + ((x) - (x)) ** 2)), q)")
def test_random_derived_programs_give_the_same_values_in_place(text):
    env = build_environment(VARS)
    expr = parse_formula(text, env)
    wrt = sorted(n for n, v in free_vars(expr).items() if v.vtype == "real")
    if not wrt or expr.shape != ():
        return
    program = derive(text, wrt, VARS, verify=False)  # the values are compared, not the formula
    args = _inputs(program, 0)
    with np.errstate(all="ignore"):
        reusing, functional, source = _both_paths(program, args)
    _assert_same(reusing, functional, tol=1e-12 if _fused(source) else 0)


LAYERNORM = {
    "vars": {"X": "real[n, k]", "g": "real[k]", "b": "real[k]", "O": "real[n, k]"},
    "defs": {
        "sigma": "sqrt(var(X, axis=-1, keepdims=True) + 1e-5)",
        "xhat": "(X - mean(X, axis=-1, keepdims=True)) / sigma",
    },
}
# Statistics over the first axis (a batch norm's, without running averages): not torch's
# LayerNorm, so no fused kernel (engine.export.kernels) replaces it and it writes in place.
COLUMN_NORM = {
    "vars": {"X": "real[n, k]", "g": "real[n, 1]", "b": "real[n, 1]", "O": "real[n, k]"},
    "defs": {
        "sigma": "sqrt(var(X, axis=0, keepdims=True) + 1e-5)",
        "xhat": "(X - mean(X, axis=0, keepdims=True)) / sigma",
    },
}


@pytest.mark.parametrize(
    ("f", "wrt", "vars_", "defs"),
    [
        ("sum(O * (xhat * g + b))", ["X", "g", "b"], LAYERNORM["vars"], LAYERNORM["defs"]),
        ("sum(O * (xhat * g + b))", ["X", "g", "b"], COLUMN_NORM["vars"], COLUMN_NORM["defs"]),
        (
            "sum(O * (P @ V))",
            ["Q", "K", "V"],
            {"Q": "real[n, k]", "K": "real[n, k]", "V": "real[n, k]", "O": "real[n, k]"},
            {"P": "softmax(Q @ K.T / sqrt(k), axis=-1)"},
        ),
        (
            "sum(O * (gelu(X @ W1) @ W2))",
            ["X", "W1", "W2"],
            {"X": "real[n, k]", "W1": "real[k, n]", "W2": "real[n, k]", "O": "real[n, k]"},
            {},
        ),
    ],
)
def test_the_textbook_programs_give_the_same_values_in_place(f, wrt, vars_, defs):
    program = derive(f, wrt, vars_, defs=defs)
    reusing, functional, source = _both_paths(program, _inputs(program, 1))
    if defs is LAYERNORM["defs"]:  # torch's fused kernel (tests/test_export_kernels.py)
        assert "X_norm_grads = _layer_norm_backward(O, X, 1e-05, g)" in source
    _assert_same(reusing, functional, tol=1e-12 if _fused(source) else 0)
    if "xhat" in defs and not _fused(source):  # the centred array becomes xhat in place
        assert "xhat = X_centred.div_(sigma) if reuse else X_centred / sigma" in source


def test_the_guard_keeps_autograd_transforms_and_compile_on_the_plain_path():
    program = derive("sum(O * (xhat * g + b))", ["X", "g", "b"], **LAYERNORM)
    fn = load(program, "torch")
    may_reuse = sys.modules[fn.__module__]._may_reuse
    X, g, b, O = _inputs(program, 2)  # noqa: E741 - the field's dO
    assert may_reuse(X, g, b, O)
    assert not may_reuse(X.clone().requires_grad_(), g, b, O)
    assert (
        torch.func.vmap(lambda x: torch.tensor(may_reuse(x, g, b, O[0])))(X).tolist()
        == [False] * SIZES["n"]
    )
    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        assert not may_reuse(fwAD.make_dual(X, torch.ones_like(X)), g, b, O)
    # Through the export itself: autograd sees the plain program (its saved tensors untouched)
    Xr = X.clone().requires_grad_()
    value, grads = fn(Xr, g, b, O)
    (second,) = torch.autograd.grad(grads["g"].sum(), Xr)
    assert torch.isfinite(second).all()


def test_only_torch_writes_in_place():
    program = derive("sum(O * (xhat * g + b))", ["X", "g", "b"], **LAYERNORM)
    for target in ("numpy", "jax"):
        assert "_may_reuse" not in to_module(program, target)
    assert "_may_reuse" in to_module(program, "torch")


@pytest.mark.parametrize(
    "f",
    [
        "(X * Y).T @ (Y * Y).T",  # two products each read through a view: neither in scratch
        "sum(X * Y, axis=0, keepdims=True) * sum(Y * Y, axis=1, keepdims=True) + X * X",
        "exp(X * Y) + mean(X * X, axis=1, keepdims=True) * (X * Y)",
    ],
)
def test_a_product_goes_to_scratch_only_as_a_reductions_argument(f):
    """Scratch memory is shared by every product a reduction reads: only a reduction, which
    returns new memory at once, may read it. A view of it (`.T`) kept for later would see the
    next product written over it."""
    from engine.derive.program import Program
    from engine.expr import call

    env = build_environment({"X": "real[n, n]", "Y": "real[n, n]", "w": "real[n, n]"})
    body = parse_formula(f, env)
    program = Program(call("sum", body * env.vars["w"]), env, (), (("w", body),))
    args = _inputs(program, 3)
    reusing, functional, source = _both_paths(program, args)
    _assert_same(reusing, functional)
    assert ("out=scratch_" in source) == ("sum(" in f or "mean(" in f), source
    want = parse_formula(f, env)
    from engine.backends import numpy_backend

    expected = numpy_backend.evaluate(
        want, dict(zip(env.vars, (a.numpy() for a in args), strict=True)), {"n": 5}
    )
    np.testing.assert_allclose(reusing[1]["w"].numpy(), expected, rtol=1e-12)
