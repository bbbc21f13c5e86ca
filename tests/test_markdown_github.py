"""GitHub Markdown: every formula of every committed note reaches cmark-gfm's HTML intact;
references to another note's equations."""

from __future__ import annotations

import html
import re

import cmarkgfm
import pytest

from engine.notes.build import OUTPUT, load_notes
from engine.notes.check import environment
from engine.notes.markup import md_display, prose_md
from engine.notes.model import Figure, Note, Section
from engine.notes.render import NoteView, equation_numbers

NOTES = {x.note.name: x.note for x in load_notes()}
PAGES = sorted((OUTPUT / "md").glob("*.md")) + [OUTPUT / "README.md"]

# What GitHub's HTML holds for the two math forms the engine writes.
HTML_DISPLAY = re.compile(r'<pre lang="math"><code>(.*?)\n</code></pre>', re.S)
HTML_INLINE = re.compile(r"\$<code>(.*?)</code>\$", re.S)
# The same forms in the Markdown source, read without a Markdown parser.
MD_DISPLAY = re.compile(r"^```math\n(.*?)\n```$", re.S | re.M)
MD_INLINE = re.compile(r"\$`([^`]+)`\$")
# Inline $math$ of the note sources (prose, captions, references), read independently.
SOURCE_INLINE = re.compile(r"(?<![\\$])\$(?!\$)((?:\\\$|[^$])+?)(?<!\\)\$")


def github_html(markdown: str) -> str:
    """The HTML GitHub's parser makes (cmark-gfm with GitHub's extensions and options)."""
    return cmarkgfm.github_flavored_markdown_to_html(markdown)


def formulas(markdown: str) -> tuple[list[str], list[str]]:
    """(display, inline) formulas as GitHub's parser delivers them to MathJax."""
    page = github_html(markdown)
    display = [html.unescape(m) for m in HTML_DISPLAY.findall(page)]
    inline = [html.unescape(m) for m in HTML_INLINE.findall(page)]
    return display, inline


def text_outside_math(markdown: str) -> str:
    """The visible text of the page with the formulas taken out."""
    page = HTML_INLINE.sub(" ", HTML_DISPLAY.sub(" ", github_html(markdown)))
    page = re.sub(r"<pre.*?</pre>|<code>.*?</code>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def _source_prose(note) -> list[str]:
    texts = [note.summary]
    for section in note.sections:
        for item in section.items:
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, Figure):
                texts.append(item.caption)
    return texts + [r.text for r in note.references]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_formula_reaches_github_html_byte_identical(page):
    markdown = page.read_text()
    display, inline = formulas(markdown)
    assert display == MD_DISPLAY.findall(markdown), "a math fence was not kept literally"
    assert inline == MD_INLINE.findall(markdown), "an inline $`...`$ was not kept literally"
    assert display or inline
    # No formula escaped the two safe forms: no bare $ and no TeX command in the visible text.
    rest = text_outside_math(markdown)
    assert "$" not in rest, rest[max(0, rest.find("$") - 80) : rest.find("$") + 80]
    assert not re.search(r"\\[A-Za-z]+", rest), re.search(r".{0,60}\\[A-Za-z]+.{0,20}", rest)


@pytest.mark.parametrize("name", sorted(NOTES))
def test_every_source_formula_is_in_the_github_page(name):
    """The engine's own inline LaTeX (from the note source) is what GitHub receives, in order."""
    markdown = (OUTPUT / "md" / f"{name}.md").read_text()
    _, inline = formulas(markdown)
    # A paragraph's source lines are joined with one space, inside math too.
    expected = [
        re.sub(r"\s*\n\s*", " ", m).strip()
        for text in _source_prose(NOTES[name])
        for m in SOURCE_INLINE.findall(text.replace("$$", "\0\0"))
    ]
    it = iter(inline)
    missing = [f for f in expected if not any(f == g for g in it)]
    assert missing == [], "formulas of the source not delivered intact (or out of order)"


@pytest.mark.parametrize("name", sorted(NOTES))
def test_check_marks_read_as_written(name):
    markdown = (OUTPUT / "md" / f"{name}.md").read_text()
    marks = re.findall(r"^(✓ \(\d+\) [^\n]*?)\\?$", markdown, re.M)
    assert len(marks) == len(NOTES[name].steps())
    text = " ".join(text_outside_math(markdown).split())
    for mark in marks:
        assert " ".join(mark.split()) in text, mark


# The family of constructions that Markdown used to eat inside $...$ and $$...$$ on GitHub.
HOSTILE = [
    r"\|q\|",
    r"y \,\|\, p",
    r"D_{\mathrm{KL}}\left(y \,\middle\|\, p\right)",
    r"a_i b_j c_k",
    r"x_1 * y_2 * z_3",
    r"\mathrm{softmax}(z)_i = p_i",
    r"a < b > c \& d",
    r"[x](y) \text{ not a link}",
    r"\{ a \} \\ b",
    r"<b>x</b> &amp;",
    r"\#h \% k",
    r"1 \cdot \texttt{x}\!",
    r"~a~ ~~b~~",
    r"\sqrt[3]{x}",
    r"x^* y^{**}",
    r"\backslash \_",
    r"a \\ - \sum_i b_i",
    r"a -- b --- c",
]
HOSTILE_DISPLAY = [
    "- \\sum_{i} y_i \\log p_i",
    "+ x\n* y\n1. z",
    "# heading?\n> quote?\n    indented",
    "| a | b |\n|---|---|",
    "a_1 + b_1\n= c_1 _2",
    "\\begin{aligned}\nL &= - \\sum_i y_i \\,\\|\\, p \\\\\n&= x\n\\end{aligned}",
    "<div>\n\n</div>",
    "\\text{ends with a backslash} \\\\",
]


CONTEXTS = ["{m}", "({m})", "**{m}**", "*{m}*", "a{m}b", "- {m}", "1. {m}", "_{m}_"]


@pytest.mark.parametrize("latex", HOSTILE)
@pytest.mark.parametrize("context", CONTEXTS)
def test_inline_math_survives_markdown(latex, context):
    prose = context.replace("{m}", f"${latex}$")
    md = prose_md(prose, str, str)
    assert formulas(md) == ([], [latex]), md


@pytest.mark.parametrize("latex", HOSTILE + HOSTILE_DISPLAY)
def test_display_math_survives_markdown(latex):
    assert formulas(md_display(latex)) == ([latex], [])
    prose = f"Before.\n\n$$\n{latex}\n$$\n\nAfter."
    display, inline = formulas(prose_md(prose, str, str))
    assert display == ["\n".join(ln.strip() for ln in latex.split("\n") if ln.strip())]
    assert inline == []


def test_prose_dashes_become_typographic_outside_math_and_code():
    md = prose_md("Kullback--Leibler --- see $a--b$, `x--y` and [l](http://a--b).", str, str)
    assert md == "Kullback–Leibler — see $`a--b`$, `x--y` and [l](http://a--b)."


# ---------------------------------------------------------------- references to other notes


def _prose_note(text: str) -> Note:
    return Note(name="reader", order=9, title="Reader", summary="S.", sections=Section("A", text))


def test_a_reference_to_another_notes_equation_carries_its_number_and_link():
    number = equation_numbers(NOTES["cross-entropy"])["lse-shift"]
    note = _prose_note("As in [[cross-entropy:lse-shift]], shift by $c$.")
    assert note.problems() == []
    view = NoteView(note, environment(note), [], {}, catalog=NOTES)
    md, tex = view.sections[0]["blocks"][0]["md"], view.sections[0]["blocks"][0]["tex"]
    assert md == f"As in [({number})](cross-entropy.md), shift by $`c`$."
    assert tex == rf"As in \noteref{{eq:cross-entropy:lse-shift}}{{({number})}}, shift by $c$."
    softmax = (OUTPUT / "md" / "softmax.md").read_text()
    assert f"[({number})](cross-entropy.md)" in softmax  # the committed note that uses one
    assert r"\noteref{eq:cross-entropy:lse-shift}" in (OUTPUT / "tex" / "book.tex").read_text()


@pytest.mark.parametrize(
    "ref, message",
    [
        ("no-such-note:lse-shift", "there is no note named 'no-such-note'"),
        ("cross-entropy:no-such-step", "note 'cross-entropy' has no step labelled 'no-such-step'"),
    ],
)
def test_a_reference_to_a_missing_note_or_step_is_named(ref, message):
    note = _prose_note(f"See [[{ref}]].")
    with pytest.raises(ValueError, match=message):
        NoteView(note, environment(note), [], {}, catalog=NOTES)
