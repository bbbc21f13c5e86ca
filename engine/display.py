"""Rich display in Jupyter: results, derived programs and expressions as typeset Markdown."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.derive.program import Program
    from engine.expr import Expr
    from engine.verify.result import Result

MARK = {"pass": "✓ PASS", "fail": "✗ FAIL", "error": "⚠ ERROR"}
MAX_CELL = 120  # characters of one input's values in the counterexample table


def _cell(text: Any) -> str:
    """A Markdown table cell: escaped, one line, bounded."""
    s = " ".join(str(text).split())
    if len(s) > MAX_CELL:
        s = s[: MAX_CELL - 1] + "…"
    return html.escape(s, quote=False).replace("|", "\\|")


def result_markdown(result: Result) -> str:
    """The verdict, the statement typeset, the routes that ran and the counterexample."""
    lines = [f"**{MARK[result.verdict]}** — `{_cell(result.name)}`", ""]
    if result.latex:
        lines += ["$$", result.latex, "$$", ""]
    if result.verdict != "pass":
        lines += [_cell(result.message), ""]
    if result.checks:
        lines += ["| route | passed | how |", "|---|---|---|"]
        lines += [
            f"| {c.method} | {'yes' if c.passed else 'no'} | {_cell(c.detail)} |"
            for c in result.checks
        ]
        lines.append("")
    cx = result.counterexample
    if cx is not None:
        sizes = ", ".join(f"{k} = {v}" for k, v in cx.sizes.items()) or "none"
        where = f"entry [{', '.join(map(str, cx.entry))}]" if cx.entry else "value"
        lines += [
            f"**Counterexample** ({_cell(cx.check)} check, sizes {_cell(sizes)}, {where}"
            + (f", {_cell(cx.profile)} inputs" if cx.profile else "")
            + ")",
            "",
            "| | value |",
            "|---|---|",
        ]
        if cx.relation != "==":  # an inequality: which relation the entry violates
            lines.append(f"| violates | lhs {_cell(cx.relation)} rhs |")
        if cx.values_text:
            lines.append(f"| sides | {_cell(cx.values_text)} |")
        else:
            lines += [
                f"| left side | {cx.lhs:.10g} |",
                f"| right side | {cx.rhs:.10g} |",
                f"| difference | {cx.difference:.3g} |",
            ]
        from engine.verify.result import _short

        lines += [f"| `{_cell(k)}` | {_cell(_short(v))} |" for k, v in cx.inputs.items()]
    return "\n".join(lines).rstrip() + "\n"


def program_markdown(program: Program) -> str:
    """The backward program typeset (textbook notation) with its verification line."""
    return f"$$\n{program.to_latex()}\n$$\n\n*{_cell(program.verification_line())}*\n"


def expr_latex(expr: Expr) -> str:
    """An expression typeset, for `_repr_latex_`."""
    from engine.printing.latex import to_latex

    return f"$\\displaystyle {to_latex(expr)}$"
