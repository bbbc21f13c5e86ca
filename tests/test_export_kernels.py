"""Fused kernels on the PyTorch export's eager path (engine.export.kernels) give the derived values.

Each rule's identities pass our verifier; the kernel helper agrees with the formulas it replaces;
every program the rules rewrite gives the plain path's values (float64), keeps float32 and
bfloat16 (matching torch.autograd at that precision), runs on the meta device, and programs that
only look alike (RMSNorm, statistics over another axis) are left as derived.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import derive, verify
from engine.export import load
from engine.export.kernels import LAYER_NORM_BACKWARD, RULES, SOFTMAX_BACKWARD, fuse
from engine.export.lower import Lowering
from engine.parser import build_environment, parse_formula

LN = {
    "sigma": "sqrt(var(X, axis=-1, keepdims=True) + eps)",
    "xhat": "(X - mean(X, axis=-1, keepdims=True)) / sigma",
}
ROWS = {"X": "real[n, k]", "g": "real[k]", "b": "real[k]", "O": "real[n, k]", "eps": "positive"}
SIZES = {"n": 6, "k": 5, "B": 3, "m": 4}

# (formula, wrt, vars, defs, fused?)
PROGRAMS = [
    ("sum(O * (xhat * g + b))", ["X", "g", "b"], ROWS, LN, True),
    ("sum(O * (xhat * g + b))", ["X"], ROWS, LN, True),
    ("sum(O * xhat)", ["X"], ROWS, LN, True),
    ("sum(O * (xhat * g))", ["X", "g"], ROWS, LN, True),
    ("sum(O * xhat ** 2)", ["X"], ROWS, LN, True),  # G = 2 * O * xhat, no weight
    (
        "sum(O * (xhat * g + b))",
        ["X", "g", "b"],
        ROWS,
        {"sigma": "sqrt(var(X, axis=-1, keepdims=True))", "xhat": LN["xhat"]},  # no eps
        True,
    ),
    (
        "sum(O * (xhat * g + b))",
        ["X", "g", "b"],
        {**ROWS, "X": "real[B, n, k]", "O": "real[B, n, k]"},
        LN,
        True,
    ),
    (
        "sum(O * ((xhat * g + b) @ W))",
        ["X", "g", "b", "W"],
        {**ROWS, "W": "real[k, m]", "O": "real[n, m]"},
        LN,
        True,
    ),
    (
        "sum(O * (xhat * g + b))",
        ["X", "g", "b"],
        ROWS,
        {"sigma": "sqrt(mean(X * X, axis=-1, keepdims=True) + eps)", "xhat": "X / sigma"},
        False,  # RMSNorm: no mean subtracted
    ),
    (
        "sum(O * (xhat * g + b))",
        ["X", "g", "b"],
        {**ROWS, "g": "real[n, 1]", "b": "real[n, 1]"},
        {
            "sigma": "sqrt(var(X, axis=0, keepdims=True) + eps)",
            "xhat": "(X - mean(X, axis=0, keepdims=True)) / sigma",
        },
        False,  # statistics over the first axis: not torch's LayerNorm
    ),
]


def _inputs(program, dtype=torch.float64, device="cpu", seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for name, var in program.env.vars.items():
        shape = tuple(SIZES[str(d)] if not d.is_Integer else int(d) for d in var.shape)
        if name == "eps":
            out.append(torch.tensor(1e-5, dtype=dtype, device=device))
        else:
            x = 1.5 * rng.standard_normal(shape) + (0.3 if name == "X" else 0)
            out.append(torch.as_tensor(x, dtype=dtype, device=device))
    return out


def _paths(fn, args):
    module = sys.modules[fn.__module__]
    eager = fn(*args)
    kept = module._may_reuse
    module._may_reuse = lambda *a: False
    try:
        plain = fn(*args)
    finally:
        module._may_reuse = kept
    return eager, plain


def _close(a, b, rtol, atol):
    (va, ga), (vb, gb) = a, b
    torch.testing.assert_close(va.double(), vb.double(), rtol=rtol, atol=atol)
    assert ga.keys() == gb.keys()
    for key in ga:
        torch.testing.assert_close(ga[key].double(), gb[key].double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("claim", [c for rule in RULES for c in rule.claims])
def test_each_rule_identity_passes_our_verifier(claim):
    rule = next(r for r in RULES if claim in r.claims)
    result = verify(claim, rule.claim_vars, rule.claim_defs)
    assert result.passed, result


@pytest.mark.parametrize(
    "wrong",
    [
        # the projection term dropped, its sign flipped, or the mean of G left out
        "grad(sum(G * xhat), X) == (G - mean(G, axis=-1, keepdims=True)) / sigma",
        "grad(sum(G * xhat), X) == (G - mean(G, axis=-1, keepdims=True)"
        " + xhat * mean(G * xhat, axis=-1, keepdims=True)) / sigma",
        "grad(sum(G * xhat), X) == (G - xhat * mean(G * xhat, axis=-1, keepdims=True)) / sigma",
    ],
)
def test_the_identity_check_fails_a_wrong_layer_norm_backward(wrong):
    rule = LAYER_NORM_BACKWARD
    assert verify(wrong, rule.claim_vars, rule.claim_defs).verdict == "fail"


@pytest.mark.parametrize(("f", "wrt", "vars_", "defs", "fused"), PROGRAMS)
def test_fused_programs_give_the_derived_values(f, wrt, vars_, defs, fused):
    program = derive(f, wrt, vars_, defs=defs)
    fn = load(program, "torch")
    assert ("_layer_norm_backward(" in sys.modules[fn.__module__].__source__) == fused
    eager, plain = _paths(fn, _inputs(program))
    _close(eager, plain, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_kernel_helper_computes_the_formulas_it_replaces(rank, weighted):
    program = derive("sum(O * (xhat * g + b))", ["X", "g", "b"], ROWS, defs=LN)
    helper = sys.modules[load(program, "torch").__module__]._layer_norm_backward
    gen = torch.Generator().manual_seed(rank)
    shape = (4, 3, 7)[3 - rank :]
    x = torch.randn(shape, dtype=torch.float64, generator=gen) * 2 + 1
    grad = torch.randn(shape, dtype=torch.float64, generator=gen)
    w = torch.randn(shape[-1], dtype=torch.float64, generator=gen) if weighted else None
    eps = 1e-3
    got = helper(grad, x, torch.tensor(eps, dtype=torch.float64), w)
    centred = x - x.mean(-1, keepdim=True)
    sigma = torch.sqrt((centred * centred).mean(-1, keepdim=True) + eps)
    xhat = centred / sigma
    G = grad * w if weighted else grad
    dx = (G - G.mean(-1, keepdim=True) - xhat * (G * xhat).mean(-1, keepdim=True)) / sigma
    torch.testing.assert_close(got[0], dx, rtol=1e-12, atol=1e-12)
    if weighted:  # summed over the leading axes (none for a single row)
        lead = tuple(range(rank - 1))
        dw, db = grad * xhat, grad
        if lead:
            dw, db = dw.sum(lead), db.sum(lead)
        torch.testing.assert_close(got[1], dw, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got[2], db, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.bfloat16, 0)])
def test_the_fused_path_keeps_the_dtype_and_matches_autograd_at_it(dtype, tol):
    program = derive("sum(O * (xhat * g + b))", ["X", "g", "b"], ROWS, defs=LN)
    fn = load(program, "torch")
    X, g, b, O, eps = _inputs(program, dtype, seed=3)  # noqa: E741 - the field's dO
    value, grads = fn(X, g, b, O, eps)
    assert value.dtype == dtype and all(v.dtype == dtype for v in grads.values())
    leaves = [t.detach().clone().requires_grad_() for t in (X, g, b)]
    y = F.layer_norm(leaves[0], (X.shape[-1],), leaves[1], leaves[2], 1e-5)
    want = torch.autograd.grad(torch.sum(O * y), leaves)
    for got, ref in zip((grads["X"], grads["g"], grads["b"]), want, strict=True):
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


def test_the_fused_path_runs_on_the_meta_device():
    program = derive("sum(O * (xhat * g + b))", ["X", "g", "b"], ROWS, defs=LN)
    fn = load(program, "torch")
    args = _inputs(program, device="meta")
    value, grads = fn(*args)
    assert value.device.type == "meta" and grads["X"].shape == args[0].shape
    assert grads["g"].shape == args[1].shape and grads["b"].shape == args[2].shape


def test_autograd_and_vmap_run_the_derived_program():
    program = derive("sum(O * (xhat * g + b))", ["X", "g", "b"], ROWS, defs=LN)
    fn = load(program, "torch")
    X, g, b, O, eps = _inputs(program)  # noqa: E741 - the field's dO
    leaf = X.clone().requires_grad_()
    _, grads = fn(leaf, g, b, O, eps)
    assert grads["X"].grad_fn is not None  # recorded: the plain operations ran
    (second,) = torch.autograd.grad(grads["X"].sum(), leaf)  # and differentiate again
    assert torch.isfinite(second).all()
    stacked = torch.stack([X, X + 1])
    batched = torch.func.vmap(lambda x: fn(x, g, b, O, eps)[1]["X"])(stacked)
    torch.testing.assert_close(batched[1], fn(X + 1, g, b, O, eps)[1]["X"])


NEAR_MISSES = [
    # each differs from LayerNorm's backward in one place: nothing may be replaced
    "(G - mean(G, axis=-1, keepdims=True) + xhat * mean(G * xhat, axis=-1, keepdims=True)) / s",
    "(G - mean(G, axis=-1, keepdims=True) - xhat * mean(G * X, axis=-1, keepdims=True)) / s",
    "(G - mean(G, axis=0, keepdims=True) - xhat * mean(G * xhat, axis=-1, keepdims=True)) / s",
    "(G - mean(O, axis=-1, keepdims=True) - xhat * mean(G * xhat, axis=-1, keepdims=True)) / s",
    "(G - mean(G, axis=-1, keepdims=True) - X * mean(G * xhat, axis=-1, keepdims=True)) / s",
    "(G - mean(G, axis=-1, keepdims=True) - xhat * mean(G * xhat, axis=-1, keepdims=True)) / t",
    "(G - mean(G, axis=-1, keepdims=True) - xhat * mean(G * xhat, axis=-1, keepdims=True)) * s",
    "(G - mean(G, axis=-1, keepdims=True) - 2 * xhat * mean(G * xhat, axis=-1, keepdims=True)) / s",
    "(G - mean(G, axis=-1, keepdims=True) - xhat * mean(G * xhat, axis=-1, keepdims=True) - G) / s",
]
MATCHES = [
    "(G - mean(G, axis=-1, keepdims=True) - xhat * mean(G * xhat, axis=-1, keepdims=True)) / s",
    "(-(xhat * mean(xhat * G, axis=-1, keepdims=True)) + (G - mean(G, axis=-1, keepdims=True)))"
    " / s",
    "(G - (mean(G, axis=-1, keepdims=True) + mean(G * xhat, axis=-1, keepdims=True) * xhat)) / s",
]


def _fuse(text, vars_, defs):
    """The lowered formula after the kernel rules, and the rules that applied."""
    env = build_environment(vars_, defs)
    roots, used = fuse([Lowering()(parse_formula(text, env))])
    return roots[0], used


NEAR_VARS = {"X": "real[n, k]", "G": "real[n, k]", "O": "real[n, k]", "eps": "positive"}
NEAR_DEFS = {
    "s": "sqrt(var(X, axis=-1, keepdims=True) + eps)",
    "t": "sqrt(var(X, axis=-1, keepdims=True) + 2 * eps)",
    "xhat": "(X - mean(X, axis=-1, keepdims=True)) / s",
}


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_a_near_miss_is_left_as_written(text):
    root, used = _fuse(text, NEAR_VARS, NEAR_DEFS)
    assert not used
    assert all(getattr(n, "fn", None) != "_layer_norm_backward" for n in root.walk())


@pytest.mark.parametrize("text", MATCHES)
def test_the_backward_is_found_in_any_order_of_its_terms(text):
    root, used = _fuse(text, NEAR_VARS, NEAR_DEFS)
    assert used == [LAYER_NORM_BACKWARD]
    assert root.fn == "_item" and root.args[0].fn == "_layer_norm_backward"


# ---------------------------------------------------------------- softmax and its backward

ATT = {v: "real[n, k]" for v in "QKVO"}
HEADS = {v: "real[B, m, n, k]" for v in "QKVO"}
SOFTMAX_PROGRAMS = [
    # (formula, wrt, vars, defs, the kernels expected in the eager path)
    ("sum(O * (P @ V))", ["Q", "K", "V"], ATT, {"P": "softmax(Q @ K.T / sqrt(k))"}, 2),
    (
        "sum(O * (P @ V))",
        ["Q", "K", "V"],
        HEADS,
        {"P": "softmax(Q @ swapaxes(K, -1, -2) / sqrt(k))"},
        2,
    ),
    ("sum(O * (P @ V))", ["Q", "K", "V"], ATT, {"P": "softmax(Q @ K.T, axis=0)"}, 2),
    ("sum(w * softmax(z))", ["z"], {"z": "real[n]", "w": "real[n]"}, {}, 2),
    # cross-entropy reads the exponentials' sum for its value: no softmax kernel there
    ("cross_entropy(softmax(z), y)", ["z"], {"z": "real[n]", "y": "simplex[n]"}, {}, 0),
    (
        "cross_entropy(softmax(Z, axis=-1), Y)",
        ["Z"],
        {"Z": "real[n, k]", "Y": "simplex[n, k]"},
        {},
        0,
    ),
]


@pytest.mark.parametrize(("f", "wrt", "vars_", "defs", "kernels"), SOFTMAX_PROGRAMS)
def test_softmax_programs_give_the_derived_values(f, wrt, vars_, defs, kernels):
    program = derive(f, wrt, vars_, defs=defs)
    fn = load(program, "torch")
    source = sys.modules[fn.__module__].__source__
    eager = source.split("# autograd,")[0]
    found = eager.count("torch.softmax(") + eager.count("= _softmax_backward(")
    assert found == kernels, source
    args = [
        a.softmax(-1) if n in ("y", "Y") else a
        for n, a in zip(program.env.vars, _inputs(program), strict=True)
    ]
    got, plain = _paths(fn, args)
    _close(got, plain, rtol=1e-10, atol=1e-12)
    if kernels:  # float32 in, float32 out, on the eager path
        value, grads = fn(*[a.float() for a in args])
        assert all(g.dtype == torch.float32 for g in grads.values())


SOFTMAX_NEAR_MISSES = [
    "P * (G + sum(P * G, axis=-1, keepdims=True))",
    "P * (G - sum(P * G, axis=0, keepdims=True))",
    "P * (G - sum(P * H, axis=-1, keepdims=True))",
    "P * (G - sum(G, axis=-1, keepdims=True))",
    "R * (G - sum(R * G, axis=-1, keepdims=True))",  # R is not a softmax
    "Pc * (G - sum(Pc * G, axis=-1, keepdims=True))",  # a softmax over the other axis
]


SOFTMAX_VARS = {"S": "real[n, k]", "G": "real[n, k]", "H": "real[n, k]", "R": "real[n, k]"}
SOFTMAX_DEFS = {"P": "softmax(S, axis=-1)", "Pc": "softmax(S, axis=0)"}


@pytest.mark.parametrize("text", SOFTMAX_NEAR_MISSES)
def test_a_softmax_near_miss_is_not_a_softmax_backward(text):
    root, _ = _fuse(text, SOFTMAX_VARS, SOFTMAX_DEFS)
    assert all(getattr(n, "fn", None) != "_softmax_backward" for n in root.walk())


@pytest.mark.parametrize(
    "text",
    [
        "P * (G - sum(P * G, axis=-1, keepdims=True))",
        "(G - sum(G * P, axis=1, keepdims=True)) * P",
        "Pc * (G - sum(Pc * G, axis=0, keepdims=True))",
    ],
)
def test_the_softmax_backward_is_found(text):
    root, used = _fuse(text, SOFTMAX_VARS, SOFTMAX_DEFS)
    assert SOFTMAX_BACKWARD in used and root.fn == "_softmax_backward"
