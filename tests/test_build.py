"""`llm-math build`: every note verifies and renders, failures are named, output is deterministic,
current, well-formed Markdown/LaTeX, and compiles to PDF without LaTeX problems."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

import engine.notes.build as build_mod
from engine.cli import cli
from engine.notes.build import (
    CACHE,
    OUTPUT,
    BuildError,
    build,
    compile_pdfs,
    load_notes,
    log_problems,
)
from engine.notes.check import write_atomic

SYMPY_INTERNALS = (
    "Idx",
    "Piecewise",
    "Lambda",
    "Dummy",
    "KroneckerDelta",
    "Indexed",
    "Derivative(",
)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        # not committed: the PDFs, the web book and the manifest that lists them
        if p.is_file()
        and p.relative_to(root).parts[0] not in ("pdf", "html", ".llm-math-manifest.local.json")
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    report = build(formats=("md", "tex"), out=out)
    return out, report


def test_every_note_builds_and_every_step_verifies(built):
    out, report = built
    assert report.failures == [], "\n".join(sr.result.report() for sr in report.failures)
    notes = load_notes()
    assert {"cross-entropy", "softmax"} <= {x.note.name for x in notes}
    assert report.steps == sum(len(x.note.steps()) for x in notes)
    for x in notes:
        md = (out / "md" / f"{x.note.name}.md").read_text()
        tex = (out / "tex" / f"{x.note.name}.tex").read_text()
        # One verification mark per checked step, none for definitions.
        assert len(re.findall(r"^✓ \(\d+\) exact", md, re.M)) == len(x.note.steps())
        assert tex.count(r"\verified{") == len(x.note.steps())
        assert tex.count(r"\checkdetail{") == len(x.note.steps())  # the full account, once
        assert md.count(r"\mathrel{:=}") == tex.count(r"\mathrel{:=}")
    index = (out / "README.md").read_text()
    book = (out / "tex" / "book.tex").read_text()
    for x in notes:
        assert f"(md/{x.note.name}.md)" in index
        assert r"\chapter{" in book
    # One chapter per note, then the appendix of check details; one bibliography.
    assert book.count(r"\chapter{") == len(notes) + 1
    assert book.count(r"\checkdetail{") == book.count(r"\verified{") == report.steps
    assert book.count(r"\begin{thebibliography}") == 1
    assert book.index(r"\frontmatter") < book.index(r"\mainmatter") < book.index(r"\appendix")


def _math_segments_balanced(text: str) -> bool:
    """Inline $ signs pair up within each paragraph (escaped \\$ excluded)."""
    for para in re.split(r"\n\s*\n", text):
        if para.count("$$") % 2:
            return False
        single = re.sub(r"\$\$", "", para.replace(r"\$", ""))
        if single.count("$") % 2:
            return False
    return True


def _braces_balanced(text: str) -> bool:
    depth = 0
    for m in re.finditer(r"\\[{}]|[{}]", text):
        if m.group(0) in (r"\{", r"\}"):
            continue
        depth += 1 if m.group(0) == "{" else -1
        if depth < 0:
            return False
    return depth == 0


def test_markdown_math_delimiters_balanced(built):
    out, _ = built
    for path in sorted((out / "md").glob("*.md")) + [out / "README.md"]:
        text = path.read_text()
        assert _math_segments_balanced(text), path.name
        assert "$$" not in text, (path.name, "display math goes in ```math fences")
        for block in re.findall(r"^```math\n(.*?)\n```$", text, re.S | re.M):
            assert _braces_balanced(block), (path.name, block)
            assert block.count(r"\left") == block.count(r"\right"), (path.name, block)
            assert block.count(r"\begin{") == block.count(r"\end{"), (path.name, block)
            assert "\n\n" not in block, (path.name, "blank line breaks GitHub math")


def test_latex_delimiters_balanced(built):
    out, _ = built
    for path in sorted((out / "tex").glob("*.tex")):
        text = path.read_text()
        assert _braces_balanced(text), path.name
        assert _math_segments_balanced(text), path.name
        assert text.count(r"\left") == text.count(r"\right"), path.name
        assert text.count(r"\[") == text.count(r"\]"), path.name
        begins = re.findall(r"\\begin\{(\w+\*?)\}", text)
        ends = re.findall(r"\\end\{(\w+\*?)\}", text)
        assert sorted(begins) == sorted(ends), path.name


def test_no_sympy_internals_in_outputs(built):
    out, _ = built
    for path in sorted(out.rglob("*.md")) + sorted(out.rglob("*.tex")):
        text = path.read_text()
        for word in SYMPY_INTERNALS:
            assert word not in text, (path.name, word)


def test_two_builds_are_byte_identical(built, tmp_path):
    out, _ = built
    # Verification results from the cache, figures drawn afresh: a second process-independent
    # rendering must give the same bytes (no timestamps, fixed SVG hash salt, PDF metadata).
    cache = tmp_path / "cache"
    shutil.copytree(CACHE / "steps", cache / "steps")
    again = tmp_path / "again"
    report = build(formats=("md", "tex"), out=again, cache_dir=cache)
    assert report.failures == []
    assert list((cache / "figures").iterdir()), "figures were drawn, not copied"
    first, second = _files(out), _files(again)
    assert sorted(first) == sorted(second)
    for name in first:
        assert first[name] == second[name], name


def test_a_rebuild_with_nothing_changed_checks_nothing(built, tmp_path):
    report = build(formats=("md", "tex"), out=tmp_path)
    assert report.failures == []
    assert report.cached == report.steps


def test_committed_output_is_current(built):
    out, _ = built
    fresh, committed = _files(out), _files(OUTPUT)
    assert sorted(fresh) == sorted(committed), "run `llm-math build` and commit output/"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert stale == [], f"output/ is stale in {stale}: run `llm-math build` and commit output/"


# ---------------------------------------------------------------- a failing note

WRONG_NOTE = '''
"""A note with one wrong step."""
import sympy
from engine.notes import Note, Section, Step
from engine.notes.symbols import Named, array, delta, indices, size, total

n = size("n")
z = array("z")
i, j, k = indices("i j k")


def p(a):
    return Named("p", sympy.exp(z[a]) / total(sympy.exp(z[k]), k, n), a)


NOTE = Note(
    name="broken",
    order=1,
    title="Broken",
    summary="One right step, two wrong ones.",
    vars={"z": "real[n]", "y": "simplex[n]"},
    defs={"p": "softmax(z)"},
    arrays={"z": "real[n]"},
    indices={"i": "n", "j": "n"},
    sections=(
        Section(
            "S",
            Step("grad(cross_entropy(p, y), z) == p - y", "right", label="right-grad"),
            Step("grad(cross_entropy(p, y), z) == y - p", "sign slip", label="wrong-grad"),
            Step(
                (sympy.Derivative(p(i), z[j]), p(i) * (delta(i, j) + p(j))),
                "sign slip",
                label="wrong-jacobian",
            ),
        ),
    ),
)
'''


def test_a_wrong_step_fails_the_build_and_is_named(tmp_path, monkeypatch):
    source = tmp_path / "derivations"
    source.mkdir()
    (source / "broken.py").write_text(WRONG_NOTE)
    out = tmp_path / "out"
    monkeypatch.setattr(build_mod, "DERIVATIONS", source)
    result = CliRunner().invoke(cli, ["build", "--out", str(out)])
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert "step [wrong-grad]" in err
    assert "step [wrong-jacobian]" in err
    assert "[right-grad]" not in err
    assert "exact check at n=2" in err  # the counterexample
    assert "i = " in err and "j = " in err  # the index values of the index-notation failure
    assert "2 step(s) failed, nothing written" in err
    assert not out.exists() or not any(out.rglob("*"))


def test_list_shows_the_notes():
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0
    for x in load_notes():
        line = next(ln for ln in result.output.splitlines() if ln.startswith(x.note.name + " "))
        assert f"{len(x.note.steps())} steps" in line
        assert x.note.title in line


def test_unknown_note_and_format_are_errors():
    runner = CliRunner()
    result = runner.invoke(cli, ["build", "--only", "no-such-note", "--out", "/nonexistent"])
    assert result.exit_code == 2 and "no note named no-such-note" in result.stderr
    result = runner.invoke(cli, ["build", "--format", "docx", "--out", "/nonexistent"])
    assert result.exit_code == 2 and "unknown format docx" in result.stderr


# ---------------------------------------------------------------- writing files


def test_atomic_write_leaves_the_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "note.md"
    target.write_text("old")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, b"new content")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["note.md"]  # no temp file left behind


def test_atomic_write_reports_unchanged_content(tmp_path):
    target = tmp_path / "a" / "b.txt"
    assert write_atomic(target, b"x") is True
    assert write_atomic(target, b"x") is False
    assert target.read_bytes() == b"x"


# ---------------------------------------------------------------- PDF


def test_log_problems_finds_errors_undefined_references_and_overfull_boxes():
    log = "\n".join(
        [
            "! Undefined control sequence.",
            "./note.tex:12: LaTeX Error: File `x.sty' not found.",
            "LaTeX Warning: Reference `eq:a:b' on page 1 undefined on input line 40.",
            "LaTeX Warning: There were undefined references.",
            "Overfull \\hbox (12.5pt too wide) in paragraph at lines 3--4",
            "Overfull \\hbox (0.4pt too wide) in paragraph at lines 5--6",
            "Underfull \\hbox (badness 10000) in paragraph at lines 7--8",
        ]
    )
    problems = log_problems(log)
    assert problems == [
        "! Undefined control sequence.",
        "./note.tex:12: LaTeX Error: File `x.sty' not found.",
        "undefined reference eq:a:b",
        "there were undefined references",
        "overfull box 12.5pt in paragraph at lines 3--4",
    ]


def test_pdf_without_latex_names_the_debian_packages(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(BuildError, match="apt-get install texlive-latex-base"):
        compile_pdfs({"tex/x.tex": b""}, ["x"])


NO_LATEX = shutil.which("pdflatex") is None and not os.environ.get("CI")


@pytest.mark.skipif(NO_LATEX, reason="pdflatex is not installed (this test always runs in CI)")
def test_pdfs_compile_without_latex_problems(tmp_path):
    report = build(formats=("md", "tex", "pdf"), out=tmp_path)
    assert report.failures == []
    names = {p.name for p in report.pdfs}
    assert names == {f"{x.note.name}.pdf" for x in load_notes()} | {"book.pdf"}
    for pdf in report.pdfs:
        assert pdf.read_bytes().startswith(b"%PDF")
        log = pdf.with_suffix(".log").read_text(errors="replace")
        assert log_problems(log) == [], pdf.name
        assert "Overfull \\hbox" not in log, (pdf.name, "an equation or line sticks out")
        assert "destination with the same identifier" not in log, (pdf.name, "duplicate anchor")
        pages = pdf_pages(pdf)
        marks = [m for page in pages for m in MARK.findall(page)]
        assert len(marks) == (STEPS if pdf.name == "book.pdf" else STEPS_OF[pdf.stem]), pdf.name
        for k, page in enumerate(pages, start=1):
            assert marks_apart_from_their_equations(page) == [], (pdf.name, f"page {k}")
    book = pdf_pages(tmp_path / "pdf" / "book.pdf")
    text = "\n".join(book)
    assert text.count("How to read the check marks") == 2  # the contents and the page itself
    assert len(re.findall(r"^\s*References\s*$", text, re.M)) == 1, "one bibliography"
    words = " ".join(text.split())
    assert words.count("are not checked") == 1, "the disclaimer once in the book"


# A check mark line as pdftotext -layout gives it: the whole mark on one line, page reference last.
MARK = re.compile(r"^✓ \((\d+(?:\.\d+)?)\) (?:exact|numeric)[^\n]*details p\. \S+$", re.M)
STEPS_OF = {x.note.name: len(x.note.steps()) for x in load_notes()}
STEPS = sum(STEPS_OF.values())


def pdf_pages(pdf: Path) -> list[str]:
    """The text of each page of a PDF (poppler's pdftotext, layout kept)."""
    assert shutil.which("pdftotext"), "pdftotext is missing: apt-get install poppler-utils"
    out = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    )
    return out.stdout.split("\f")[:-1]


def marks_apart_from_their_equations(page: str) -> list[str]:
    """The check marks on a page whose equation (its number at the line's end) is not above them."""
    lonely = []
    for m in re.finditer(r"^✓ \(([\d.]+)\)", page, re.M):
        above = page[: m.start()]
        if not re.search(rf"\({re.escape(m.group(1))}\)\s*$", above, re.M):
            lonely.append(m.group(0))
    return lonely


def test_the_pdf_page_check_finds_a_mark_split_from_its_equation():
    kept = "text\n    a = b        (2.3)\n✓ (2.3) exact and numeric; details p. 9\n"
    split = "CHAPTER 2. SOFTMAX    9\n✓ (2.3) exact and numeric; details p. 9\n  c = d   (2.4)\n"
    assert marks_apart_from_their_equations(kept) == []
    assert marks_apart_from_their_equations(split) == ["✓ (2.3)"]


def test_a_note_module_that_does_not_load_is_reported_in_one_line(tmp_path, monkeypatch):
    source = tmp_path / "derivations"
    source.mkdir()
    (source / "typo.py").write_text("NOTE = Note(\n")
    monkeypatch.setattr(build_mod, "DERIVATIONS", source)
    result = CliRunner().invoke(cli, ["build", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "typo.py: cannot load the note: SyntaxError" in result.stderr
    assert "Traceback" not in result.stderr


def test_build_cli_reports_on_stderr_only(tmp_path):
    result = CliRunner().invoke(cli, ["build", "--only", "softmax", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    steps = next(len(x.note.steps()) for x in load_notes() if x.note.name == "softmax")
    assert f"1 note(s), {steps} steps verified" in result.stderr
    assert (tmp_path / "md" / "softmax.md").exists()
    assert not (tmp_path / "README.md").exists()  # the index is written by full builds only
