"""benchmarks/tensorgrad_bench.py: its cases derive; its report states refusals and bounds."""

from __future__ import annotations

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import pytest

from engine.derive import derive

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "tensorgrad_bench", ROOT / "benchmarks" / "tensorgrad_bench.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["tensorgrad_bench"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["mha", "block"])
def test_case_derives_every_gradient_with_the_mask_visible(bench, name):
    case = bench.CASES[name]
    program = derive(case.loss, case.wrt, case.vars, case.defs, sizes=case.sizes, verify=False)
    assert [w for w, _ in program.gradients] == case.wrt
    text = program.to_text()
    assert "softmax(where(tril(n), " in (text if name == "mha" else case.defs["P"])
    assert "where(tril(n), P * (dP - sum(P * dP, axis=-1, keepdims=True)), 0)" in text


def test_case_axes_cover_every_variable(bench):
    """The cross-check names every variable's axes, each axis a size it gives a value."""
    for case in bench.CASES.values():
        assert set(case.axes) == set(case.vars)
        known = set(case.check_sizes) | set(case.sizes)
        assert all(a in known for axes in case.axes.values() for a in axes.split())


def test_ratio_is_a_median_or_a_bound(bench):
    assert bench._ratio([1.0, 2.0, 3.0], [2.0, 4.0, 2.0], 60) == "0.5x"
    assert bench._ratio([1.0, 2.0], [None], 100) == "< 0.015x"  # never finished: a bound
    assert bench._ratio([1.0], [], 100) == "-"


def test_report_states_a_refused_verification_and_an_unfinished_tensorgrad_run(bench):
    row = bench.Row(bench.CASES["block"])
    row.ours, row.compile, row.symbolic = [0.2, 0.1, 0.1], [0.4, 0.3, 0.3], [None]
    row.verify = [5.0]
    row.outcome = "refused as too large for the exact route: d/dX: the claim is too large"
    row.numeric = (21.0, "11/11 gradients pass")
    args = Namespace(samples=3, verify_samples=1, tg_timeout=120.0)
    text = bench.markdown([row], args, {"tensorgrad": "0.3.0"}, (1.0, 2.0))
    line = next(x for x in text.splitlines() if x.startswith("| pre-LN transformer block"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[1:] == [
        "100.0 ms (first 200.0)",
        "refused (see below)",
        "> 120 s (not finished)",
        "300.0 ms (first 400.0)",
        "< 0.000833x",
        "0.333x",
        "-",
        "-",
    ]
    assert "TODO: the exact route refuses the block as too large" in text
    assert "The numeric route alone" in text and "21.0 s, 11/11 gradients pass" in text


def test_report_states_a_failed_verification_without_the_todo(bench):
    row = bench.Row(bench.CASES["mha"])
    row.ours, row.compile, row.symbolic, row.verify = [0.1], [0.2], [0.3], [4.0]
    row.outcome = "FAILED: d/dQ: the two sides differ"
    args = Namespace(samples=1, verify_samples=1, tg_timeout=120.0)
    text = bench.markdown([row], args, {}, (1.0, 2.0))
    assert "| FAILED (see below) |" in text
    assert "Our verification: FAILED: d/dQ: the two sides differ." in text
    assert "TODO" not in text
