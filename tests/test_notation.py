"""The book's notation section (engine/notes/notation.py): present in the built LaTeX book, the
index page and the web book, printed by the engine's own printer, and its common symbols are
the table the symbol-table test checks every note against."""

from __future__ import annotations

import html

import pytest
from test_build_output import tiny  # noqa: F401 - the fixture
from test_symbols import BOOK_SYMBOLS

from engine.notes.build import build
from engine.notes.markup import md_math
from engine.notes.notation import COMMON_SYMBOLS, NOTATION, OPERATIONS, Notation, notation_rows
from engine.parser import parse_formula
from engine.printing.latex import latex_name, to_latex


@pytest.fixture
def built(tiny, tmp_path):  # noqa: F811 - the fixture above
    out = tmp_path / "out"
    report = build(formats=("md", "tex", "html"), out=out)
    assert report.failures == []
    return out


def test_the_section_is_in_the_built_book_index_and_web_book(built):
    rows = notation_rows()
    book = (built / "tex" / "book.tex").read_text()
    index = (built / "README.md").read_text()
    assert book.count(r"\chapter*{Notation}") == 1
    assert book.index(r"\chapter*{Notation}") < book.index(r"\mainmatter")
    assert index.count("## Notation") == 1
    for row in rows["operations"] + rows["symbols"]:
        assert f"${row['latex']}$ & {row['tex']} \\\\" in book
        assert f"| {md_math(row['latex'])} | {row['md']} |" in index
    for page in ("index.html", "notation.html"):
        text = (built / "html" / page).read_text()
        assert text.count('<section id="notation">') == 1, page
        for row in rows["operations"] + rows["symbols"]:
            assert html.escape(row["latex"], quote=False) in text, (page, row["latex"])


def test_the_section_shows_the_printers_forms_of_the_notation_the_review_asked_for():
    shown = [row["latex"] for row in notation_rows()["operations"]]
    wanted = {
        "sum of all entries": r"{\textstyle\sum}\left(x\right)",
        "row sum": r"{\textstyle\sum}_{\text{row}}\left(A\right)",
        "keepdims row sum, a column": r"{\textstyle\sum}_{\text{row}}\left(A\right) \, "
        r"\mathbf{1}_{n}^{\top}",
        "scalar derivative": r"\nabla_{T}",
        "Iverson bracket": r"[\,P\,]",
        "Hadamard product": r"\odot",
        "softmax": r"\operatorname{softmax}",
    }
    for what, latex in wanted.items():
        assert any(latex in s for s in shown), f"the notation section lacks the {what}"
    # each operation given in the formula language is shown exactly as the notes print it
    for n in OPERATIONS:
        if n.formula is not None:
            from engine.notes.check import build_environment

            env = build_environment(dict(n.vars), dict(n.defs))
            assert n.symbol_latex() == to_latex(parse_formula(n.formula, env))


def _inconsistent(rows: tuple[Notation, ...], table) -> list[str]:
    """Rows whose declarations give a common symbol another meaning than the symbol table's."""
    bad = []
    for n in rows:
        for where in ("vars", "defs"):
            for name, text in getattr(n, where).items():
                if name in table and not table[name](where, text):
                    bad.append(f"{n.formula or n.latex}: {name} as {where} {text!r}")
    return bad


def test_every_symbol_of_the_section_agrees_with_the_symbol_table():
    assert _inconsistent(NOTATION, BOOK_SYMBOLS) == []
    # the common symbols of the section are exactly the symbol test's table
    assert [n.name for n in COMMON_SYMBOLS] == ["p", "z", "y", "T", "d", "n"]
    assert set(BOOK_SYMBOLS) == {n.name for n in COMMON_SYMBOLS}
    for n in COMMON_SYMBOLS:
        assert n.symbol_latex() == latex_name(n.name)
        for name, text in n.vars.items():
            assert name == n.name and BOOK_SYMBOLS[name]("vars", text)
    # a row that used T for a vector, or p for logits, would be caught
    planted = (
        Notation("T as a vector", formula="sum(T)", vars={"T": "real[n]"}),
        Notation("p as logits", formula="softmax(p)", vars={"p": "real[n]"}),
    )
    assert len(_inconsistent(planted, BOOK_SYMBOLS)) == 2
