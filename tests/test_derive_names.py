"""derive never shadows a name: read top to bottom, every printed program computes its gradients.

Variables and definitions are named like the program's own gradients and temporaries (dX, dS,
P, t1, value, np, ...). Each printed text program is run line by line, each line re-parsed by
the engine's parser and evaluated by the NumPy backend, and the names the JSON output gives
for the gradients must hold the gradients computed independently (complex-step).
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_derive_random import formula

from engine import derive as derive_verified
from engine.backends.numpy_backend import to_numpy
from engine.derive.names import Names
from engine.derive.program import Program
from engine.expr import Expr, free_vars
from engine.parser import build_environment, parse_formula
from engine.printing.latex import latex_name
from engine.types import TYPES

SIZES = {"n": 4, "k": 3, "m": 5, "d": 2}

# The whole family of names a derived program (or an exported module) uses for itself.
FAMILY = [
    "dX",
    "dQ",
    "dK",
    "dV",
    "dW",
    "dS",
    "dP",
    "P",
    "t1",
    "t2",
    "value",
    "np",
    "torch",
    "jnp",
    "math",
]


def _type_text(shape: tuple) -> str:
    return "real" if not shape else "real[" + ", ".join(str(d) for d in shape) + "]"


def run_text(text: str, vars: dict[str, str], defs: dict[str, str], inputs: dict) -> dict:
    """Run a printed program top to bottom: every line re-parsed and evaluated in turn.

    The scope starts with the variables and the definitions; a line `name = expr` binds (or,
    were a program wrong in that way, rebinds) `name`, exactly as a reader would take it.
    """
    env = build_environment(vars, defs)
    scope = dict(inputs)
    types = dict(vars)
    for name, ref in env.defs.items():
        scope[name] = to_numpy(ref.body, SIZES)(**scope)
        types[name] = _type_text(ref.shape)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, source = line.partition(" = ")
        assert name.isidentifier() and source, line
        local = build_environment(types)
        expr = parse_formula(source, local)
        scope[name] = to_numpy(expr, SIZES)(**{n: scope[n] for n in free_vars(expr)})
        types[name] = _type_text(expr.shape)
    return scope


def sample(vars: dict[str, str], seed: int) -> dict[str, np.ndarray]:
    env = build_environment(vars)
    rng = np.random.default_rng(seed)
    out = {}
    for name, var in env.vars.items():
        shape = tuple(SIZES[str(d)] for d in var.shape)
        out[name] = np.asarray(TYPES[var.vtype].numeric(rng, shape, "unit"), dtype=np.float64)
    return out


def reference_gradient(output: str, wrt: str, vars, defs, inputs) -> np.ndarray:
    """grad(output, wrt) by the NumPy backend's complex step, independent of derive."""
    env = build_environment(vars, defs)
    return to_numpy(parse_formula(f"grad({output}, {wrt})", env), SIZES)(**inputs)


def derive(*args, **kwargs) -> Program:
    """derive without the verifier's check: the check here is the independent one below."""
    return derive_verified(*args, verify=False, **kwargs)


def all_names(program: Program) -> list[str]:
    """Every name a printed program binds or reads: declarations, steps, gradients."""
    names = list(program.env.names()) + [a.name for a in program.steps]
    return names + list(program.gradient_names().values())


def check_program(program: Program, output: str, vars, defs, seed: int = 0) -> None:
    """The printed text, run line by line, holds the true gradients under the JSON's names."""
    names = program.to_json()["gradient_names"]
    assert list(names) == [w for w, _ in program.gradients]
    # Every binding is new: no line names a variable, a definition or an earlier line.
    bound = [line.split(" = ")[0] for line in program.to_text().splitlines()]
    assert len(set(bound)) == len(bound), bound
    assert not set(bound) & program.env.names(), bound
    # ... and in LaTeX no two names print alike (beyond what the user declared).
    printed = [latex_name(n) for n in all_names(program)]
    user = {latex_name(n) for n in program.env.names()}
    assert len(set(printed)) - len(user) == len(printed) - len(program.env.names()), printed
    inputs = sample(vars, seed)
    scope = run_text(program.to_text(), vars, defs, inputs)
    for wrt, name in names.items():
        expected = reference_gradient(output, wrt, vars, defs, inputs)
        got = scope[name]
        assert got.shape == expected.shape, (wrt, name)
        assert np.allclose(got, expected, rtol=1e-8, atol=1e-10), (wrt, name, program.to_text())


# ---------------------------------------------------------------- the reported case and its family


def test_upstream_gradient_named_dX():
    """CS231n style: dX is an upstream gradient; the gradient of X must not overwrite it."""
    vars = {"dX": "real[n, m]", "X": "real[n, k]", "W": "real[k, m]"}
    program = derive_verified("sum(dX * (X @ W))", ["X", "W"], vars)
    assert program.verified
    assert program.gradient_names() == {"X": "grad_X", "W": "dW"}
    assert program.to_text().splitlines()[:2] == ["grad_X = dX @ W.T", "dW = X.T @ dX"]
    assert "\\nabla_{X} &= \\mathrm{d}X W^\\top" in program.to_latex()
    check_program(program, "sum(dX * (X @ W))", vars, {})


def test_gradient_names_free_of_each_other():
    """X and dX both differentiated, and grad_X taken too: every gradient gets its own name."""
    vars = {"X": "real[n]", "dX": "real[n]", "grad_X": "real[n]", "ddX": "real[n]"}
    output = "sum(X * dX * grad_X * ddX)"
    program = derive(output, ["X", "dX", "grad_X", "ddX"], vars)
    names = program.gradient_names()
    assert names == {"X": "dX_1", "dX": "grad_dX", "grad_X": "dgrad_X", "ddX": "dddX"}
    check_program(program, output, vars, {})


@pytest.mark.parametrize("taken", FAMILY)
def test_each_family_name_as_a_variable(taken):
    """Attention with one of the program's own names (P, dS, dQ, t1, value, ...) declared."""
    vars = {"Q": "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"}
    vars[taken] = "real[n, d]" if taken not in vars else vars[taken]
    # The declared name is used, so a program that rebinds it computes something else.
    output = f"sum(O * (softmax(Q @ K.T / sqrt(d)) @ V)) + sum({taken} * Q * K * V)"
    program = derive(output, ["Q", "K", "V"], vars)
    assert taken not in [a.name for a in program.steps]
    assert taken not in program.gradient_names().values()
    check_program(program, output, vars, {})


@pytest.mark.parametrize("taken", FAMILY)
def test_each_family_name_as_a_definition(taken):
    """The same names as definitions the program reads (S, P, dS, t1, ... are all steps too)."""
    vars = {"Q": "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"}
    defs = {taken: "tanh(Q) * K"}
    output = f"sum(O * (softmax(Q @ K.T / sqrt(d)) @ V)) + sum({taken} * V)"
    program = derive(output, ["Q", "K", "V"], vars, defs)
    assert taken not in [a.name for a in program.steps]
    assert taken not in program.gradient_names().values()
    check_program(program, output, vars, defs)


def test_temporaries_named_like_variables():
    """t1, t2 and P declared while derive needs temporaries of its own (logistic MSE)."""
    vars = {"X": "real[n, k]", "w": "real[k]", "y": "real[n]", "t1": "real[n]", "t2": "real"}
    output = "sum((sigmoid(X @ w) - y) ** 2) + t2 * sum(t1 * sigmoid(X @ w))"
    program = derive(output, ["w", "X"], vars)
    steps = [a.name for a in program.steps]
    assert steps and not {"t1", "t2"} & set(steps), steps
    check_program(program, output, vars, {})


def test_jacobian_name_taken():
    vars = {"z": "real[n]", "J": "real[n]", "J_z": "real[n]"}
    program = derive("softmax(z) * J + J_z", ["z"], vars)
    assert program.gradient_names() == {"z": "J_z_1"}
    assert program.to_text().startswith("J_z_1 = ") or "\nJ_z_1 = " in program.to_text()


def test_json_says_which_name_holds_each_gradient():
    vars = {"dX": "real[n, m]", "X": "real[n, k]", "W": "real[k, m]"}
    data = json.loads(json.dumps(derive("sum(dX * (X @ W))", ["X", "W"], vars).to_json()))
    assert data["gradient_names"] == {"X": "grad_X", "W": "dW"}
    assert data["gradients"]["X"] == "dX @ W.T"


def test_names_are_distinct_in_latex_too():
    """P_2 is taken, so a second softmax is not P2 (both print as P_2)."""
    names = Names(["P", "P_2"])
    assert names.fresh("P") == "P3"
    assert Names(["dX", "dX1"]).gradient("X") == "grad_X"
    assert Names(["dX", "grad_X", "dX1"]).gradient("X") == "dX_2"
    # Words of the language are never chosen: a definition `iag` does not give a step `diag`.
    assert Names().fresh("diag") == "diag2"
    assert Names().fresh("def") == "def2"


def test_long_names_stay_parseable():
    """A 40-character variable (the parser's limit) still leaves room for its gradient's name."""
    long = "x" * 40
    vars = {long: "real[n]"}
    program = derive(f"sum({long} * {long})", [long], vars)
    (name,) = program.gradient_names().values()
    assert len(name) <= 40
    check_program(program, f"sum({long} * {long})", vars, {})


# ---------------------------------------------------------------- random programs, renamed

# The random formulas of test_derive_random use x, y, s, W, A, M, q; each renaming below gives
# them names that derive (and the exporter) would otherwise use themselves.
RENAMINGS = [
    {"x": "X", "y": "dX", "s": "t1", "W": "P", "M": "dP", "A": "value", "q": "np"},
    {"x": "Q", "y": "dQ", "s": "t2", "W": "S", "M": "dS", "A": "math", "q": "torch"},
    {"x": "K", "y": "dK", "s": "dV", "W": "V", "M": "dW", "A": "jnp", "q": "t1"},
]
BASE_VARS = {
    "x": "real[n]",
    "y": "real[n]",
    "s": "real",
    "W": "real[n, n]",
    "A": "real[k, n]",
    "M": "real[n, n]",
    "q": "simplex[n]",
}


def rename(text: str, mapping: dict[str, str]) -> str:
    return re.sub(r"\b[A-Za-z]\b", lambda m: mapping.get(m.group(0), m.group(0)), text)


@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(formula("s", 3), st.sampled_from(RENAMINGS), st.integers(0, 3))
def test_random_programs_run_top_to_bottom(text: str, mapping: dict, seed: int):
    vars = {mapping[k]: v for k, v in BASE_VARS.items()}
    output = rename(text, mapping)
    env = build_environment(vars)
    expr: Expr = parse_formula(output, env)
    wrt = sorted(n for n, v in free_vars(expr).items() if v.vtype == "real")
    if not wrt:
        return
    program = derive(output, wrt, vars)
    check_program(program, output, vars, {}, seed)


@pytest.mark.parametrize("taken", ["_t0", "_t1", "t1", "t2"])
def test_definition_named_like_a_placeholder(taken):
    """derive's own working names (once `_t0`) never capture a user's definition."""
    vars = {"X": "real[n, k]", "w": "real[k]", "y": "unit[n]"}
    defs = {taken: "tanh(X @ w)"}
    output = f"mean((sigmoid(X @ w) - y) ** 2) + sum({taken})"
    program = derive(output, ["w"], vars, defs)
    assert f"1 - {taken} ** 2" in program.to_text()
    check_program(program, output, vars, defs)
