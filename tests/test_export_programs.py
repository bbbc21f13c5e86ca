"""Hand-built gradient programs (textbook backward passes) for the export tests, each verified."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.derive.program import Assignment, Program
from engine.expr import Size, call
from engine.index_type import declared_shape
from engine.parser import build_environment, parse_formula
from engine.types import TYPES


def _program(vars, defs, output, steps=(), gradients=()) -> Program:
    """Steps and gradients are formula text; each step can use the earlier ones by name."""
    env = build_environment(vars, defs)
    made: list[Assignment] = []
    for name, text in steps:
        step = Assignment(name, parse_formula(text, env))
        env.defs[name] = step.ref  # so later text can name it; removed again below
        made.append(step)
    grads = tuple((v, parse_formula(text, env)) for v, text in gradients)
    out = parse_formula(output, env)
    for name, _ in steps:
        del env.defs[name]
    return Program(output=out, env=env, steps=tuple(made), gradients=grads)


def cross_entropy() -> Program:
    return _program(
        {"z": "real[n]", "y": "simplex[n]"},
        {"p": "softmax(z)"},
        "cross_entropy(p, y)",
        gradients=[("z", "p - y")],
    )


def attention() -> Program:
    """O is the upstream gradient dO; the loss is the linear functional sum(O * (P @ V))."""
    env = build_environment(
        {"Q": "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"},
        {"P": "softmax(Q @ K.T / sqrt(d))"},
    )
    P = env.defs["P"]
    dV = Assignment("dV", parse_formula("P.T @ O", env))
    dP = Assignment("dP", parse_formula("O @ V.T", env))
    dS = Assignment("dS", P * (dP.ref - call("sum", P * dP.ref, axis=-1, keepdims=True)))
    sqrt_d = call("sqrt", Size("d"))
    dQ = Assignment("dQ", dS.ref @ env.vars["K"] / sqrt_d)
    dK = Assignment("dK", dS.ref.T @ env.vars["Q"] / sqrt_d)
    return Program(
        output=parse_formula("sum(O * (P @ V))", env),
        env=env,
        steps=(dV, dP, dS, dQ, dK),
        gradients=(("Q", dQ.ref), ("K", dK.ref), ("V", dV.ref)),
    )


def layernorm() -> Program:
    """Row-wise LayerNorm with gain and bias, against an upstream gradient O."""
    return _program(
        {"X": "real[n, d]", "g": "real[d]", "b": "real[d]", "O": "real[n, d]", "eps": "positive"},
        {
            "sigma": "sqrt(var(X, axis=-1, keepdims=True) + eps)",
            "xhat": "(X - mean(X, axis=-1, keepdims=True)) / sigma",
        },
        "sum(O * (xhat * g + b))",
        steps=[("dxhat", "O * g")],
        gradients=[
            (
                "X",
                "(dxhat - mean(dxhat, axis=-1, keepdims=True)"
                " - xhat * mean(dxhat * xhat, axis=-1, keepdims=True)) / sigma",
            ),
            ("g", "sum(O * xhat, axis=0)"),
            ("b", "sum(O, axis=0)"),
        ],
    )


def least_squares() -> Program:
    return _program(
        {"A": "real[m, n]", "x": "real[n]", "b": "real[m]"},
        {"r": "A @ x - b"},
        "sum(r ** 2) / 2",
        gradients=[("A", "outer(r, x)"), ("x", "A.T @ r"), ("b", "-r")],
    )


def mlp() -> Program:
    """softplus(w2 . act(W1 x + b1)) with act(u) = gelu(u) + tanh(u) * silu(u) + relu(u)."""
    return _program(
        {"W1": "real[h, n]", "b1": "real[h]", "w2": "real[h]", "x": "real[n]"},
        {"u": "W1 @ x + b1", "act": "gelu(u) + tanh(u) * silu(u) + relu(u)", "s": "w2 @ act"},
        "softplus(s)",
        steps=[
            ("ds", "sigmoid(s)"),
            (
                "dact_du",
                "(1 + erf(u / sqrt(2))) / 2 + u * exp(-u ** 2 / 2) / sqrt(2 * pi)"
                " + (1 - tanh(u) ** 2) * silu(u)"
                " + tanh(u) * sigmoid(u) * (1 + u * (1 - sigmoid(u))) + step(u)",
            ),
            ("du", "ds * w2 * dact_du"),
        ],
        gradients=[("W1", "outer(du, x)"), ("b1", "du"), ("w2", "ds * act"), ("x", "W1.T @ du")],
    )


def batched_logsumexp() -> Program:
    """Mean next-token loss over a batch: logsumexp minus the target logit, per row."""
    return _program(
        {"Z": "real[n, k]", "Y": "onehot[n, k]"},
        {},
        "mean(logsumexp(Z, axis=-1) - sum(Y * Z, axis=-1))",
        gradients=[("Z", "(softmax(Z, axis=-1) - Y) / n")],
    )


def temperature() -> Program:
    """log_softmax at temperature T: gradients for the logits and for the scalar T."""
    return _program(
        {"z": "real[n]", "y": "onehot[n]", "T": "positive"},
        {"q": "softmax(z / T)"},
        "-sum(y * log_softmax(z / T))",
        gradients=[("z", "(q - y) / T"), ("T", "-sum((q - y) * z) / T ** 2")],
    )


def multi_head_attention() -> Program:
    """Attention batched over a batch of 2 and h heads (issue 8): derive's program, per head."""
    return _program(
        {k: "real[2, h, n, d]" for k in ("Q", "K", "V", "G")},
        {"P": "softmax(Q @ swapaxes(K, -1, -2) / sqrt(d))"},
        "sum(G * (P @ V))",
        steps=[
            ("dP", "G @ swapaxes(V, -1, -2)"),
            ("dS", "P * (dP - sum(P * dP, axis=-1, keepdims=True))"),
        ],
        gradients=[
            ("Q", "dS @ K / sqrt(d)"),
            ("K", "swapaxes(dS, -1, -2) @ Q / sqrt(d)"),
            ("V", "swapaxes(P, -1, -2) @ G"),
        ],
    )


PROGRAMS = {
    "cross_entropy": cross_entropy,
    "attention": attention,
    "layernorm": layernorm,
    "least_squares": least_squares,
    "mlp": mlp,
    "batched_logsumexp": batched_logsumexp,
    "temperature": temperature,
    "multi_head_attention": multi_head_attention,  # tensors of any rank (issue 8)
}

# Sizes for the export checks: distinct, so a transposed shape mix-up cannot pass.
SIZES = {"n": 7, "d": 5, "m": 6, "h": 4, "k": 9}


def sample_inputs(program: Program, seed: int = 0, profile: str = "unit") -> dict[str, np.ndarray]:
    """Random float64 inputs of each variable's type, at SIZES."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, var in program.env.vars.items():
        dims = declared_shape(var)  # an index variable's bound too (integer labels, issue 8)
        shape = tuple(int(d) if d.is_Integer else SIZES[str(d)] for d in dims)
        out[name] = np.asarray(TYPES[var.vtype].numeric(rng, shape, profile), dtype=np.float64)
    return out


@pytest.fixture
def jax_x64():
    """JAX in 64-bit mode for one test, and back after it (exports never change the mode)."""
    import jax

    with jax.enable_x64(True):
        yield


def load_module(source: str, tmp_path: Path, stem: str):
    """Import generated source from a file, as a user of the exported module would."""
    path = tmp_path / f"{stem}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop(stem, None)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_hand_program_verifies(name):
    """Each hand-written backward program is correct, by both routes of the verifier."""
    results = PROGRAMS[name]().verify()
    failed = {k: r.report() for k, r in results.items() if not r.passed}
    assert not failed, failed
    assert all({c.method for c in r.checks} == {"exact", "numeric"} for r in results.values())


def test_a_wrong_hand_program_fails():
    """The check above has teeth: a transposed attention gradient is caught."""
    env = build_environment(
        {"Q": "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"},
        {"P": "softmax(Q @ K.T / sqrt(d))"},
    )
    wrong = Program(
        output=parse_formula("sum(O * (P @ V))", env),
        env=env,
        steps=(),
        gradients=(("V", parse_formula("P @ O", env)),),
    )
    assert wrong.verify()["V"].verdict == "fail"
