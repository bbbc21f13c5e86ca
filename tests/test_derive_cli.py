"""The `llm-math derive` command: formats, spec files, exit codes, no tracebacks."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.functions import REGISTRY

CE = ["cross_entropy(softmax(z), y)", "--wrt", "z", "--var", "z=real[n]", "--var", "y=simplex[n]"]


def run(*args: str):
    return CliRunner().invoke(cli, ["derive", *args])


def test_text_output_and_verified_line():
    r = run(*CE)
    assert r.exit_code == 0, r.output
    lines = r.stdout.strip().splitlines()
    assert lines[0] == "dz = softmax(z) - y"
    assert lines[1].startswith(
        "# verified: exact at n=2 and n=3 and n=4 (scales 1e-3..4); numeric at n=64, complex-step"
    )
    assert len(lines) == 2


def test_latex_output():
    r = run(*CE, "--format", "latex")
    assert r.exit_code == 0, r.output
    assert "\\mathrm{d}z &= \\operatorname{softmax}\\left(z\\right) - y" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("% verified: exact at")


def test_json_output():
    r = run(*CE, "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["gradients"] == {"z": "softmax(z) - y"}
    assert data["program"] == []
    assert data["verified"] is True
    assert data["checks"]["z"]["verdict"] == "pass"


def test_spec_file_and_several_wrt(tmp_path):
    spec = tmp_path / "attn.toml"
    spec.write_text(
        '[vars]\nQ = "real[n, d]"\nK = "real[n, d]"\nV = "real[n, d]"\nO = "real[n, d]"\n'
        '[defs]\nS = "Q @ K.T / sqrt(d)"\nP = "softmax(S)"\n'
    )
    r = run("sum(O * (P @ V))", "--file", str(spec), "--wrt", "Q,K", "--wrt", "V")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[:5] == [
        "dP = O @ V.T",
        "dS = P * (dP - sum(P * dP, axis=-1, keepdims=True))",
        "dQ = dS @ K / sqrt(d)",
        "dK = dS.T @ Q / sqrt(d)",
        "dV = P.T @ O",
    ]


def test_python_output_calls_the_exporter(tmp_path):
    import importlib.util

    import numpy as np

    r = run(*CE, "--format", "python", "--target", "numpy")
    assert r.exit_code == 0, r.output
    assert "def value_and_grad(z, y, *, dtype=None):" in r.stdout
    assert "Verified by llm-math-notes: exact at n=2 and n=3" in r.stdout
    path = tmp_path / "ce_grad.py"
    path.write_text(r.stdout)
    spec = importlib.util.spec_from_file_location("ce_grad", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    namespace = vars(module)

    z = np.array([0.5, -1.0, 2.0])
    y = np.array([0.2, 0.3, 0.5])
    value, grads = namespace["value_and_grad"](z, y)
    p = np.exp(z) / np.exp(z).sum()
    assert np.allclose(grads["z"], p - y, rtol=1e-14, atol=0)


@pytest.mark.parametrize(
    "args,message",
    [
        (["sum(z", "--wrt", "z", "--var", "z=real[n]"], "syntax error"),
        (["sum(z)", "--wrt", "q", "--var", "z=real[n]"], "not a declared variable"),
        (["sum(z)", "--var", "z=real[n]"], "say which variable"),
        (["sum(z)", "--wrt", "z", "--var", "z=complex[n]"], "unknown type"),
        (["sum(z)", "--wrt", "z", "--file", "/nonexistent/spec.toml"], "cannot read"),
        (["__import__('os')", "--wrt", "z", "--var", "z=real[n]"], "not allowed"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    assert message in r.stderr
    assert "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1


def test_malformed_option_is_a_usage_error():
    r = run("sum(z)", "--wrt", "z", "--var", "z real")
    assert r.exit_code == 2
    assert "is not NAME=VALUE" in r.output
    assert "internal error" not in r.output


def test_failed_verification_shows_counterexample_not_formula(monkeypatch):
    wrong = dataclasses.replace(REGISTRY["sigmoid"], vjp=lambda n, g, i: g * n)
    monkeypatch.setitem(REGISTRY, "sigmoid", wrong)
    r = run("sum(sigmoid(s))", "--wrt", "s", "--var", "s=real[n]")
    assert r.exit_code == 1
    assert r.stdout == ""
    assert "did not verify" in r.stderr
    assert "differs" in r.stderr  # the verifier's counterexample


def test_help_mentions_formats_and_exit_codes():
    r = run("--help")
    assert r.exit_code == 0
    for word in ("--wrt", "--file", "latex", "json", "python", "--target", "Exit status"):
        assert word in r.stdout


# ---------------------------------------------------------------- formulas that begin with '-'

NEGATIVE = [
    ["-sum(z * z)", "--wrt", "z", "--var", "z=real[n]"],
    ["--wrt", "z", "-sum(z * z)", "--var", "z=real[n]"],
    ["--wrt=z", "--var=z=real[n]", "-sum(z * z)"],
    ["--wrt", "z", "--var", "z=real[n]", "--", "-sum(z * z)"],
    ["-sum(z * z)", "--wrt", "z", "--var", "z=real[n]", "--format", "json"],
    # 'h' and 's' are in it: -h is the help option, and no letter may be read as one
    ["-tanh(sum(z * z))", "--wrt", "z", "--var", "z=real[n]"],
    ["-z @ z", "--wrt", "z", "--var", "z=real[n]"],
]


@pytest.mark.parametrize("args", NEGATIVE)
def test_derive_expression_beginning_with_minus(args):
    r = run(*args)
    assert r.exit_code == 0, r.output
    if "json" in args:
        assert json.loads(r.stdout)["gradient_names"] == {"z": "dz"}
    else:
        first, verified = r.stdout.splitlines()
        assert first.startswith("dz = ") and "z" in first[5:]
        assert verified.startswith("# verified: exact")


@pytest.mark.parametrize(
    "args",
    [
        ["--var", "z=real[n]", "-sum(z) == -sum(z)"],
        ["-sum(z) == -sum(z)", "--var", "z=real[n]"],
        ["-1 == -1"],
        ["--var", "z=real[n]", "--", "-sum(z) == -sum(z)"],
    ],
)
def test_verify_equation_beginning_with_minus(args):
    r = CliRunner().invoke(cli, ["verify", *args])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("PASS claim")


def test_unknown_long_option_still_named():
    """A misspelt option is still reported as one, not taken for the formula."""
    r = run("-sum(z * z)", "--wrtt", "z", "--var", "z=real[n]")
    assert r.exit_code == 2
    assert "No such option '--wrtt'" in r.output


def test_option_values_beginning_with_minus_stay_values():
    """`--seed -1` is the seed's (bad) value, not a formula."""
    r = run("-sum(z * z)", "--wrt", "z", "--var", "z=real[n]", "--seed", "-1")
    assert r.exit_code == 2
    assert "Invalid value for '--seed'" in r.output
