"""The notes source format: prose markup, SymPy LaTeX for index notation, format checks."""

from __future__ import annotations

import pytest
import sympy

from engine.notes import Chain, Definition, Figure, Note, Reference, Section, Step
from engine.notes.markup import MarkupError, prose_md, prose_tex, tex_escape, tex_inline, why_math
from engine.notes.symbols import Named, array, delta, indices, param, size, sympy_latex, total

n = size("n")
z, y = array("z"), array("y")
i, j, k = indices("i j k")


def xref(label: str) -> str:
    return rf"\eqref{{{label}}}"


def cite(key: str) -> str:
    return rf"\cite{{{key}}}"


def p(a):
    return Named("p", sympy.exp(z[a]) / total(sympy.exp(z[k]), k, n), a)


# ---------------------------------------------------------------- markup


def test_tex_escape_comparisons_and_bars():
    # OT1 text fonts print < > | as ¡ ¿ —: the checks appendix read "sizes ¿= 4"
    assert tex_escape("sizes >= 4, |x| < 1") == (
        r"sizes \textgreater{}= 4, \textbar{}x\textbar{} \textless{} 1"
    )


def test_tex_escape_specials_and_unicode():
    assert tex_escape("50% of a_b & #1 {x}") == r"50\% of a\_b \& \#1 \{x\}"
    assert tex_escape("a — b ≈ c") == r"a --- b $\approx$ c"
    with pytest.raises(MarkupError, match="U\\+2603"):
        tex_escape("snow ☃")


def test_tex_inline_keeps_math_and_converts_markdown():
    text = (
        "*logit* $z_i^2 * 3$ **big $a_b$** `x_y` [[ce-grad]] [@kalai2024] [site](https://a.org/x_y)"
    )
    assert tex_inline(text, xref, cite) == (
        r"\emph{logit} $z_i^2 * 3$ \textbf{big $a_b$} \texttt{x\_y} \eqref{ce-grad} "
        r"\cite{kalai2024} \href{https://a.org/x_y}{site}"
    )


def test_double_quotes_become_typographic_and_must_balance():
    assert tex_inline('say "I don\'t know"', xref, cite) == "say ``I don't know''"
    with pytest.raises(MarkupError, match="unbalanced"):
        tex_inline('one " quote', xref, cite)


def test_prose_blocks_lists_and_display_math():
    text = """
    First paragraph
    continues here.

    - one $a$
    - two
      wrapped

    1. first
    2. second

    $$
    a = b
    $$
    """
    assert prose_tex(text, xref, cite) == (
        "First paragraph continues here.\n\n"
        "\\begin{itemize}\n  \\item one $a$\n  \\item two wrapped\n\\end{itemize}\n\n"
        "\\begin{enumerate}\n  \\item first\n  \\item second\n\\end{enumerate}\n\n"
        "\\[\na = b\n\\]"
    )
    assert prose_md(text, lambda label: "(3)", lambda key: "[1]") == (
        "First paragraph continues here.\n\n- one $`a`$\n- two wrapped\n\n1. first\n2. second"
        "\n\n```math\na = b\n```"
    )


def test_why_math_for_latex_and_for_mathjax():
    assert why_math("by $\\sum_i y_i = 1$", xref, cite, tex=True) == (
        r"\text{by $\textstyle \sum_i y_i = 1$}"
    )
    assert why_math("by $\\sum_i y_i = 1$ and [[dp]]", lambda x: "(5)", cite, tex=False) == (
        r"\text{by } {\textstyle \sum_i y_i = 1} \text{ and (5)}"
    )
    assert why_math("", xref, cite, tex=True) == ""


# ---------------------------------------------------------------- SymPy printing


def test_index_notation_prints_plainly():
    assert sympy_latex(z[i]) == "z_{i}"
    assert sympy_latex(delta(i, j)) == r"\delta_{ij}"
    assert sympy_latex(total(z[k], k, n), {"n"}) == r"\sum_{k} z_{k}"
    assert sympy_latex(p(i)) == "p_{i}"
    assert sympy_latex(sympy.Derivative(p(i), z[j])) == r"\frac{\partial p_{i}}{\partial z_{j}}"
    assert sympy_latex(p(i) * (delta(i, j) - p(j))) == r"p_{i} \left(\delta_{ij} - p_{j}\right)"


def test_a_sum_over_a_parameter_shows_its_range():
    eps, ell = param("eps", "unit"), param("ell", "integer")
    text = sympy_latex(total(eps * (1 - eps) ** k, k, ell), {"n"})
    assert text.startswith(r"\sum_{k=0}^{\ell - 1}")


def test_no_sympy_internals_in_printed_index_notation():
    exprs = [
        sympy.Derivative(p(i), z[j]),
        total(y[i] * sympy.log(p(i)), i, n),
        p(i) * (delta(i, j) - p(j)),
    ]
    for e in exprs:
        text = sympy_latex(e, {"n"})
        for word in ("Idx", "Piecewise", "Lambda", "Dummy", "otherwise", r"\text{for}"):
            assert word not in text


def test_piecewise_is_refused_rather_than_printed():
    x = sympy.Symbol("x")
    with pytest.raises(ValueError, match="Piecewise"):
        sympy_latex(sympy.Piecewise((x, x > 0), (0, True)))


# ---------------------------------------------------------------- the model


def _note(*items, references=()):
    return Note(
        name="t",
        order=1,
        title="T",
        summary="s",
        sections=(Section("S", *items),),
        vars={"z": "real[n]"},
        references=references,
    )


def test_step_sides_and_kinds():
    assert Step("a == b", "why").sides() == ("a", "b")
    assert Step("a == b", "why").resolved_kind == "formula"
    assert Step((z[i], z[i]), "why").resolved_kind == "index"
    x = param("x")
    assert Step((x, x), "why").resolved_kind == "identity"
    with pytest.raises(ValueError, match="exactly one"):
        Step("a == b == c", "why").sides()


def test_chain_rows_become_steps_against_the_first_side():
    chain = Chain("a", [("b", "one"), ("c", "two", "lab")])
    steps = chain.steps()
    assert [s.sides() for s in steps] == [("a", "b"), ("a", "c")]
    assert [s.label for s in steps] == [None, "lab"]


def test_note_problems_are_reported():
    note = _note(
        "see [[missing]] and [@nobody]",
        Step("z == z", "x", label="dup"),
        Step("z == z", "x", label="dup"),
        Step("z == z", "x", label="Bad_Label"),
        Figure("Bad Name", "c", lambda ctx: None),
    )
    problems = "\n".join(note.problems())
    assert "duplicate labels: dup" in problems
    assert "label 'Bad_Label'" in problems
    assert "figure name 'Bad Name'" in problems
    assert "[[missing]]" in problems
    assert "[@nobody]" in problems


def test_a_clean_note_has_no_problems():
    note = _note(
        Definition("z"),
        Step("z == z", "x", label="ok"),
        "see [[ok]] and [@r]",
        references=(Reference("r", "R"),),
    )
    assert note.problems() == []
    assert len(note.steps()) == 1
