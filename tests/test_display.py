"""Jupyter display: results, programs, expressions as Markdown/LaTeX; the example notebook runs."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from engine import build_environment, derive, parse_formula, verify
from engine.verify import Result

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
CE = {"z": "real[n]", "y": "simplex[n]"}


def test_passing_result_shows_the_statement_and_the_routes():
    md = verify("grad(cross_entropy(softmax(z), y), z) == softmax(z) - y", CE)._repr_markdown_()
    assert md.startswith("**✓ PASS**")
    assert r"\nabla_{z} \operatorname{CE}" in md and r"= \operatorname{softmax}" in md
    assert "| exact | yes | exact at n=2" in md and "| numeric | yes | numeric at n=64" in md
    assert "Counterexample" not in md


def test_failing_result_shows_the_counterexample_as_a_table():
    r = verify("grad(cross_entropy(softmax(z), y), z) == y - softmax(z)", CE, name="sign|slip")
    md = r._repr_markdown_()
    assert md.startswith("**✗ FAIL** — `sign\\|slip`")  # a table delimiter in a name is escaped
    assert "**Counterexample** (exact check, sizes n = 2" in md
    cx = r.counterexample
    assert f"| difference | {cx.difference:.3g} |" in md
    for name in ("z", "y"):
        assert f"| `{name}` | [" in md


def test_error_result_shows_the_message_without_a_statement():
    md = verify("foo(z) == z", CE)._repr_markdown_()
    assert md.startswith("**⚠ ERROR**") and "unknown function" in md and "$$" not in md


def test_results_built_by_hand_display_and_compare_as_before():
    r = Result("n", "pass", "verified")
    assert r._repr_markdown_().startswith("**✓ PASS**")
    assert r == Result("n", "pass", "verified", latex="x")  # the statement is not the verdict
    assert "latex" not in r.to_json()


def test_program_and_expression_reprs():
    program = derive("cross_entropy(softmax(z), y)", wrt="z", vars=CE)
    md = program._repr_markdown_()
    assert md.startswith("$$\n\\begin{aligned}") and "*verified: exact at" in md
    expr = parse_formula("logsumexp(z)", build_environment(CE))
    assert expr._repr_latex_() == r"$\displaystyle \operatorname{logsumexp}\left(z\right)$"


def test_the_example_notebook_is_stripped_and_runs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    rich = [o["data"] for c in code for o in c.outputs if o.output_type == "execute_result"]
    markdown = [d["text/markdown"] for d in rich if "text/markdown" in d]
    assert any(m.startswith("**✓ PASS**") for m in markdown)
    assert any(m.startswith("**✗ FAIL**") and "Counterexample" in m for m in markdown)
    assert any("\\begin{aligned}" in m for m in markdown)  # the derived program
    assert any("text/latex" in d for d in rich)  # an expression
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
