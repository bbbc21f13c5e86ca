"""Tests of `llm-math verify`: output lines, --json, exit codes 0/1/2, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.claims import load_claims
from engine.cli import cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "claims.toml"

HEADER = """
[vars]
z = "real[n]"
y = "simplex[n]"

[defs]
p = "softmax(z)"
"""
PASSING = """
[[claim]]
name = "ce-grad"
equation = "grad(cross_entropy(p, y), z) == p - y"

[[claim]]
name = "sums-to-one"
equation = "sum(p) == 1"
"""
FAILING = """
[[claim]]
name = "wrong-sign"
equation = "grad(cross_entropy(p, y), z) == y - p"
"""
ERROR = """
[[claim]]
name = "log-of-real"
equation = "log(z) == z"

[[claim]]
name = "hostile"
equation = "__import__('os').system('echo pwned') == z"
"""


@pytest.fixture
def claims_file(tmp_path):
    def write(*bodies: str, name: str = "claims.toml") -> str:
        path = tmp_path / name
        path.write_text(HEADER + "".join(bodies), encoding="utf-8")
        return str(path)

    return write


def run(*args: str):
    return CliRunner().invoke(cli, ["verify", *args])


def test_examples_file_gives_the_documented_verdicts():
    # smaller numeric sizes than the default 64 keep this fast; the verdicts are the same
    result = run(str(EXAMPLES), "--size", "n=16", "--size", "m=8", "--size", "d=4")
    assert result.exit_code == 1  # the file holds deliberately wrong claims
    heads = [line for line in result.stdout.splitlines() if not line.startswith("  ")]
    claims = load_claims(EXAMPLES)
    assert len(heads) == len(claims) == 17
    for line, claim in zip(heads, claims, strict=True):
        if claim.expect == "pass":
            assert line.startswith(f"PASS {claim.name}  [exact at "), line
            assert "; numeric at " in line and "=64" not in line
        else:
            assert line == f"FAIL {claim.name}"
    assert result.stderr.strip() == "12 passed, 5 failed, 0 errors"
    assert "Traceback" not in result.output


def test_all_passing_exits_0(claims_file):
    result = run(claims_file(PASSING))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    how = "exact at n=2 and n=3 and n=4 (scales 1e-3..4); numeric at n=64"
    assert lines[0].startswith(f"PASS ce-grad  [{how}, complex-step")
    assert lines[1].startswith(f"PASS sums-to-one  [{how}")
    assert len(lines) == 2
    assert result.stderr.strip() == "2 passed, 0 failed, 0 errors"


def test_any_failure_exits_1(claims_file):
    result = run(claims_file(PASSING, FAILING))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[2] == "FAIL wrong-sign"
    assert lines[3] == "  the two sides differ (exact and numeric check)"
    assert lines[4].startswith("  exact check at n=2: entry [")
    assert lines[5].startswith("  z = [") and lines[6].startswith("  y = [")
    assert result.stderr.strip() == "2 passed, 1 failed, 0 errors"


def test_any_error_exits_2_and_the_other_claims_are_still_checked(claims_file):
    result = run(claims_file(ERROR, PASSING, FAILING))
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ERROR log-of-real: the left side is not real")
    assert (
        lines[1] == "ERROR hostile: attribute '.system' is not allowed (only '.T', the transpose)"
    )
    assert lines[2].startswith("PASS ce-grad")
    assert lines[3].startswith("PASS sums-to-one")
    assert lines[4] == "FAIL wrong-sign"
    assert result.stderr.strip() == "2 passed, 1 failed, 2 errors"
    assert "pwned" not in result.output


def test_json_output(claims_file):
    result = run(claims_file(PASSING, FAILING, ERROR), "--json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert [(d["name"], d["verdict"]) for d in data] == [
        ("ce-grad", "pass"),
        ("sums-to-one", "pass"),
        ("wrong-sign", "fail"),
        ("log-of-real", "error"),
        ("hostile", "error"),
    ]
    for d in data:
        assert {"name", "verdict", "message", "counterexample"} <= set(d)
        assert isinstance(d["message"], str) and d["message"]
    assert data[0]["counterexample"] is None and data[0]["message"] == "verified"
    assert data[3]["counterexample"] is None
    cx = data[2]["counterexample"]
    assert cx["check"] == "exact" and cx["sizes"] == {"n": 2}
    assert set(cx["inputs"]) == {"z", "y"}
    assert cx["lhs"] == pytest.approx(-cx["rhs"])
    assert [c["method"] for c in data[0]["checks"]] == ["exact", "numeric"]


def test_same_file_and_seed_give_the_same_output(claims_file):
    path = claims_file(PASSING, FAILING)
    first, second = run(path, "--json", "--seed", "5"), run(path, "--json", "--seed", "5")
    assert first.stdout == second.stdout
    other = run(path, "--json", "--seed", "6")
    assert (
        json.loads(other.stdout)[2]["counterexample"]
        != json.loads(first.stdout)[2]["counterexample"]
    )


def test_inline_equation_with_vars_and_defs():
    result = run(
        "--var",
        "z=real[n]",
        "--var",
        "y=simplex[n]",
        "--def",
        "p=softmax(z)",
        "grad(cross_entropy(p, y), z) == p - y",
    )
    assert result.exit_code == 0
    assert result.stdout.startswith("PASS claim  [exact at n=2 and n=3")
    result = run("--var", "z=real[n]", "softmax(z) == z")
    assert result.exit_code == 1 and result.stdout.startswith("FAIL claim")
    result = run("--var", "z=real[n]", "softmax(z) == q")
    assert result.exit_code == 2 and result.stdout == "ERROR claim: unknown name 'q'\n"


def test_size_option_sets_the_numeric_size():
    result = run("--var", "z=real[n]", "--size", "n=7", "sum(softmax(z)) == 1")
    assert result.exit_code == 0
    assert "numeric at n=7," in result.stdout
    result = run("--var", "z=real[n]", "--size", "n=0", "sum(z) == 1")
    assert result.exit_code == 2 and "a size is an integer from 1 to 10**7" in result.output


@pytest.mark.parametrize(
    "content, message",
    [
        ("this is not toml = = =", "not valid TOML"),
        ("[vars]\nz = 'real[n]'\n", "no [[claim]] entries"),
        ("[varz]\nz = 'real'\n[[claim]]\nequation = 'z == z'\n", "unknown table [varz]"),
        ("[[claim]]\nname = 'a'\n", "claim 1 needs a name and an equation"),
        (
            "[[claim]]\nname = 'a'\nequation = 'z == z'\nbogus = 1\n",
            "claim 'a' has unknown key 'bogus'",
        ),
        (
            "[[claim]]\nname = 'a'\nequation = '1 == 1'\n" * 2,
            "claim name 'a' is used twice",
        ),
    ],
)
def test_malformed_claims_files_exit_2_with_one_line(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    result = run(str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("llm-math: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_file_and_usage_errors_exit_2(tmp_path):
    result = run(str(tmp_path / "missing.toml"))
    assert result.exit_code == 2 and "cannot read" in result.stderr
    result = run()
    assert result.exit_code == 2 and "give a claims file or an equation" in result.stderr
    result = run(str(EXAMPLES), "--var", "z=real[n]")
    assert result.exit_code == 2 and "--var/--def go with an inline equation" in result.stderr
    result = run("--var", "z", "z == z")
    assert result.exit_code == 2 and "is not NAME=VALUE" in result.stderr
    # a negative seed once crashed inside NumPy with a traceback
    result = run("--seed", "-1", "--var", "z=real[n]", "sum(z) == 1")
    assert result.exit_code == 2 and "-1 is not in the range x>=0" in result.stderr


def test_python_m_engine_prints_no_traceback(claims_file):
    path = claims_file(
        PASSING,
        FAILING,
        ERROR,
        '\n[[claim]]\nname = "blow-up"\nequation = "(((z ** 64) ** 64) ** 64) ** 64 == z"\n',
        '\n[[claim]]\nname = "escape"\nequation = "().__class__.__base__.__subclasses__() == z"\n',
    )
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "verify", path],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("PASS ce-grad") and "FAIL wrong-sign" in lines
    assert "ERROR blow-up: nested powers are too large" in proc.stdout
    assert "ERROR escape: " in proc.stdout
    assert proc.stderr.strip() == "2 passed, 1 failed, 4 errors"


def test_output_is_the_same_in_fresh_processes(claims_file):
    """Same file and seed give byte-identical output, whatever the process's hash seed."""
    path = claims_file(PASSING, FAILING)
    outputs = []
    for hash_seed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-m", "engine", "verify", path, "--json", "--seed", "3"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        assert proc.returncode == 1
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0])[2]["verdict"] == "fail"
