"""Generated modules of many arguments are ruff-clean (issue 9): long lines split as ruff format
would, the noqa on every assignment of O, l or I; the transformer block on every target."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from engine.api import derive
from engine.export import to_module
from engine.export.layout import NOQA, lay_out, split_line

SPEC = tomllib.loads(
    (Path(__file__).parents[1] / "examples" / "transformer_block.toml").read_text()
)
WRT = ["Wq", "Wk", "Wv", "Wo", "W1", "W2", "g1", "b1", "g2", "b2", "X"]


@pytest.fixture(scope="module")
def block():
    return derive("sum(G * Y)", WRT, SPEC["vars"], SPEC["defs"], sizes=SPEC["sizes"], verify=False)


def _ruff(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated"]
        + ["--line-length", "100", "--select", "E,F,W,I,B,UP", str(path)],
        capture_output=True,
        text=True,
    )


def test_transformer_block_modules_are_ruff_clean(block, tmp_path):
    forms = [("numpy", "function"), ("torch", "function"), ("jax", "function")]
    forms += [("torch", "autograd-function"), ("jax", "custom-vjp")]
    for target, form in forms:
        src = to_module(block, target, as_=form)
        assert max(len(line) for line in src.splitlines()) <= 100
        (tmp_path / f"{target}_{form.replace('-', '_')}.py").write_text(src)
    done = _ruff(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_long_return_dict_is_split_one_entry_a_line():
    items = ", ".join(f'"W{i}": dW{i}' for i in range(12))
    lines = split_line(f"    return value, {{{items}}}")
    assert lines[0] == "    return value, {" and lines[-1] == "    }"
    assert lines[1:-1] == [f'        "W{i}": dW{i},' for i in range(12)]


def test_a_long_assignment_target_is_parenthesised_and_O_marked():
    names = [f"t{i}" for i in range(20)] + ["O"]
    lines = split_line("    " + ", ".join(names) + " = saved")
    assert lines[0] == "    (" and lines[-1] == "    ) = saved"
    assert lines[-2] == "        O," + NOQA and "noqa" not in lines[1]


def test_short_lines_and_docstrings_stay_as_they_are():
    src = '"""' + "x " * 60 + '\n"""\nO = f(a)\nl2 = g(O)\n'
    out = lay_out(src).split("\n")
    assert out[0] == '"""' + "x " * 60 and out[2] == "O = f(a)" + NOQA and out[3] == "l2 = g(O)"


@pytest.mark.parametrize(
    "line",
    [
        "    t = 1 / (" + "a_long_name + " * 12 + "b)",  # a parenthesized expression: no tuple
        "    y = x[" + "i + " * 30 + "j]",  # a subscript: no tuple index
        "    z = f(" + "aaaa, " * 25 + "b)",
        "    w = (" + "aaaa, " * 25 + "b)",
        "    v = (1 / (1 + math.exp(-math.pi)) if math.pi >= 0 else math.exp(math.pi) / ("
        + "1 + math.exp(math.pi)))",
        # a keyword before the bracket is no call: `else (a - b,)` would be a tuple
        "        else (" + "dxhat_long_name - " * 6 + "torch.mean(dxhat, dim=-1)) / s",
        "    return (" + "a_long_name + " * 12 + "b)",
        "    q = x if (" + "a_long_name and " * 12 + "b) else y",
        "    r = not (" + "a_long_name or " * 12 + "b)",
    ],
)
def test_a_split_line_means_what_the_line_meant(line):
    """Found by tests/test_export_random.py: a long `1 / (...)` split with a trailing comma
    became `1 / (..., )`, a tuple."""
    import ast

    lines = split_line(line)
    pad = len(line) - len(line.lstrip())
    again = "\n".join(part[pad:] for part in lines)
    if line.lstrip().startswith("else "):  # a clause: parse it inside its conditional
        again, line = f"x = (a\nif c\n{again}\n)", f"x = (a if c {line.strip()})"
    assert ast.dump(ast.parse(again)) == ast.dump(ast.parse(line.strip()))
