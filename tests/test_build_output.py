"""`llm-math build --out`: only files a build wrote are replaced or removed (the manifest), bad
output directories are refused in one line, cached figures are validated, PDFs reproduce."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import engine.notes.build as build_mod
from engine.cli import cli
from engine.notes.build import build
from engine.notes.cache import valid_pdf, valid_svg
from engine.notes.output import MANIFEST, OutputError, read_manifest

TINY = '''
"""A one-step note with a figure, for the build's safety tests."""
from engine.notes import Figure, Note, Section, Step


def draw(ctx):
    fig = ctx.figure(2.0, 1.5)
    ax = fig.add_subplot()
    ax.plot([0.0, 1.0, 2.0], [0.0, 1.0, 0.5])
    return fig


NOTE = Note(
    name="tiny",
    order=1,
    title="Tiny",
    summary="Probabilities sum to one.",
    vars={"z": "real[n]"},
    defs={"p": "softmax(z)"},
    sections=(
        Section(
            "S",
            "The softmax is a distribution.",
            Step("sum(p) == 1", "probabilities sum to one", label="norm"),
            Figure("line", "A line.", draw),
        ),
    ),
)
'''
TINY_FILES = {
    "README.md",
    "md/tiny.md",
    "md/figures/tiny-line.svg",
    "tex/tiny.tex",
    "tex/book.tex",
    "tex/figures/tiny-line.pdf",
}
FOREIGN = {
    "notes.txt": "mine",
    "md/mine.md": "mine",
    "md/figures/mine.svg": "<svg/>",
    "tex/mine.tex": "mine",
    "tex/figures/mine.pdf": "mine",
    "pdf/mine.pdf": "mine",
}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A derivations directory holding only the tiny note; the cache in tmp_path."""
    source = tmp_path / "derivations"
    source.mkdir()
    (source / "tiny.py").write_text(TINY)
    monkeypatch.setattr(build_mod, "DERIVATIONS", source)
    monkeypatch.setattr(build_mod, "CACHE", tmp_path / "cache")
    return source


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def plant(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def run_build(*args: str):
    return CliRunner().invoke(cli, ["build", *args])


def one_line_error(result, code: int = 2) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("llm-math: "), result.stderr
    return lines[-1]


# ---------------------------------------------------------------- the manifest


def test_a_build_lists_what_it_wrote_and_a_rebuild_is_allowed(tiny, tmp_path):
    out = tmp_path / "out"
    report = build(out=out)
    assert report.failures == []
    assert read_manifest(out) == TINY_FILES
    assert set(tree(out)) == TINY_FILES | {MANIFEST}
    again = build(out=out)  # the directory is not empty, but the build wrote it
    assert again.written == [] and len(again.unchanged) == len(TINY_FILES)


def test_foreign_files_in_out_are_never_deleted_or_replaced(tiny, tmp_path):
    out = tmp_path / "out"
    build(out=out)
    plant(out, FOREIGN)
    build(out=out, formats=("md", "tex", "pdf") if shutil.which("pdflatex") else ("md", "tex"))
    for rel, text in FOREIGN.items():
        assert (out / rel).read_text() == text, rel
    assert not set(FOREIGN) & read_manifest(out)


def test_a_non_empty_directory_without_a_manifest_is_refused_unless_forced(tiny, tmp_path):
    out = tmp_path / "out"
    plant(out, {**FOREIGN, "README.md": "my readme", "md/tiny.md": "my notes"})
    before = tree(out)
    line = one_line_error(run_build("--out", str(out)))
    assert "not empty" in line and "--force" in line
    assert tree(out) == before
    result = run_build("--out", str(out), "--force")
    assert result.exit_code == 0, result.output
    after = tree(out)
    for rel in FOREIGN:
        assert after[rel] == before[rel], rel  # forced: still nothing of the user's removed
    assert after["md/tiny.md"] != before["md/tiny.md"]  # a path the build writes: replaced
    assert read_manifest(out) == TINY_FILES


def test_a_foreign_file_at_a_path_the_build_writes_is_refused_before_writing(tiny, tmp_path):
    out = tmp_path / "out"
    build(out=out)
    (out / "md" / "tiny.md").unlink()
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"].remove("md/tiny.md")
    (out / MANIFEST).write_text(json.dumps(manifest))
    (out / "md" / "tiny.md").write_text("the user's own file")
    (out / "md" / "figures" / "tiny-line.svg").unlink()  # something the build would write
    before = tree(out)
    with pytest.raises(OutputError, match="md/tiny.md exists and was not written by"):
        build(out=out)
    assert tree(out) == before  # nothing written, not even the missing figure


def test_stale_files_are_removed_only_if_listed_and_only_in_the_formats_built(tiny, tmp_path):
    out = tmp_path / "out"
    build(out=out)
    stale = {"md/old-note.md": "stale", "tex/old-note.tex": "stale", "pdf/old-note.log": "x"}
    plant(out, {**stale, **FOREIGN})
    outside = tmp_path / "outside.md"
    outside.write_text("outside the output directory")
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"] += [*stale, "../outside.md", "/etc/hostname", "md/../../outside.md"]
    (out / MANIFEST).write_text(json.dumps(manifest))

    build(out=out, formats=("md",))
    assert not (out / "md" / "old-note.md").exists()  # listed, md built: removed
    assert (out / "tex" / "old-note.tex").exists()  # listed, but tex was not built
    assert (out / "pdf" / "old-note.log").exists()
    build(out=out, formats=("tex",), only=("tiny",))
    assert (out / "tex" / "old-note.tex").exists()  # a build of some notes removes nothing
    build(out=out, formats=("tex",))
    assert not (out / "tex" / "old-note.tex").exists()
    assert outside.read_text() == "outside the output directory"
    assert Path("/etc/hostname").exists()
    for rel, text in FOREIGN.items():
        assert (out / rel).read_text() == text, rel
    assert read_manifest(out) == TINY_FILES | {"pdf/old-note.log"}


def test_a_corrupted_manifest_counts_as_none(tiny, tmp_path):
    out = tmp_path / "out"
    build(out=out)
    for bad in ("", "[]", "null", '{"files": "README.md"}', "[" * 100_000):
        (out / MANIFEST).write_text(bad)
        assert read_manifest(out) is None
        line = one_line_error(run_build("--out", str(out)))
        assert "not empty" in line


# ---------------------------------------------------------------- bad --out values


def test_out_empty_is_refused_and_the_current_directory_is_untouched(tiny, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    plant(cwd, {"README.md": "the user's readme", "md/chapter1.md": "chapter one"})
    monkeypatch.chdir(cwd)
    for args in (["--out", ""], ["--out", "", "--force"], ["--out", "  "]):
        line = one_line_error(run_build(*args))
        assert line == "llm-math: --out is empty: give the output directory"
    assert tree(cwd) == {"README.md": b"the user's readme", "md/chapter1.md": b"chapter one"}


def test_out_that_is_not_a_directory_is_refused(tiny, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    os.mkfifo(tmp_path / "fifo")
    for out in (a_file, "/dev/null", tmp_path / "fifo", a_file / "sub", a_file / "a" / "b"):
        line = one_line_error(run_build("--out", str(out), "--force"))
        assert "not a directory" in line, line
    assert a_file.read_text() == "keep me"


@pytest.mark.parametrize("where", ["mkstemp", "replace"])
def test_a_read_only_output_directory_is_one_line_and_nothing_half_written(
    tiny, tmp_path, monkeypatch, where
):
    # Root ignores chmod, so the refusal a read-only directory gives is simulated.
    out = tmp_path / "out"
    out.mkdir()
    real_mkstemp, real_replace = tempfile.mkstemp, os.replace

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).is_relative_to(out):
            raise PermissionError(13, "Permission denied", str(dir))
        return real_mkstemp(*args, dir=dir, **kwargs)

    def replace(src, dst):
        if Path(dst).is_relative_to(out):
            raise PermissionError(13, "Permission denied", str(dst))
        return real_replace(src, dst)

    if where == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    else:
        monkeypatch.setattr(os, "replace", replace)
    result = run_build("--out", str(out))
    line = one_line_error(result)
    assert re.fullmatch(
        rf"llm-math: cannot write {re.escape(str(out))}\S*: Permission denied", line
    )
    assert [p for p in out.rglob("*") if p.is_file()] == []  # no temp file, no partial file
    if where == "mkstemp":  # found before any step is checked: the only line on stderr
        assert result.stderr == line + "\n"


# ---------------------------------------------------------------- cached figures


def test_garbage_cached_figures_are_redrawn_not_copied(tiny, tmp_path):
    first = tmp_path / "first"
    build(out=first)
    entries = [p for p in (tmp_path / "cache" / "figures").iterdir() if p.is_dir()]
    assert len(entries) == 1
    (entries[0] / "f.svg").write_bytes(b"\x00garbage, not an SVG")
    (entries[0] / "f.pdf").write_bytes(b"")
    second = tmp_path / "second"
    build(out=second)
    svg = (second / "md" / "figures" / "tiny-line.svg").read_bytes()
    pdf = (second / "tex" / "figures" / "tiny-line.pdf").read_bytes()
    assert valid_svg(svg) and valid_pdf(pdf)
    assert tree(second) == tree(first)
    assert valid_svg((entries[0] / "f.svg").read_bytes())  # the cache entry was rewritten
    assert valid_pdf((entries[0] / "f.pdf").read_bytes())


def test_a_corrupted_cache_directory_is_rebuilt_by_a_build(tiny, tmp_path):
    build(out=tmp_path / "first")
    shutil.rmtree(tmp_path / "cache")
    (tmp_path / "cache").write_text("the cache root replaced by a file")
    report = build(out=tmp_path / "second")
    assert report.failures == [] and report.cached == 0
    assert (tmp_path / "cache" / "steps").is_dir()
    assert build(out=tmp_path / "third").cached == report.steps
    assert tree(tmp_path / "second") == tree(tmp_path / "third")


# ---------------------------------------------------------------- reproducible PDFs

NO_LATEX = shutil.which("pdflatex") is None and not os.environ.get("CI")


@pytest.mark.skipif(NO_LATEX, reason="pdflatex is not installed (this test always runs in CI)")
def test_two_pdf_builds_of_the_same_sources_are_byte_identical(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    first = build(out=tmp_path / "a", formats=("pdf",), only=("tiny",))
    # Another directory, another cache (figures drawn again), a later time.
    monkeypatch.setattr(build_mod, "CACHE", tmp_path / "other-cache")
    second = build(out=tmp_path / "b" / "deeper", formats=("pdf",), only=("tiny",))
    [a], [b] = first.pdfs, second.pdfs
    data = a.read_bytes()
    assert data.startswith(b"%PDF-") and data == b.read_bytes()
    assert b"/CreationDate" not in data and b"/ID [" not in data


@pytest.mark.parametrize("failure", ["error", "timeout", "no log"])
def test_a_latex_failure_writes_nothing_and_is_one_line(tiny, tmp_path, monkeypatch, failure):
    import subprocess

    def run(cmd, cwd=None, **kwargs):
        if failure == "timeout":
            raise subprocess.TimeoutExpired(cmd, 300)
        code = 1 if failure == "error" else 0
        return subprocess.CompletedProcess(
            cmd, code, stdout="! LaTeX Error: boom\n\nl.12 here", stderr=""
        )

    monkeypatch.setattr(build_mod, "latex_tool", lambda: "pdflatex")
    monkeypatch.setattr(subprocess, "run", run)
    out = tmp_path / "out"
    line = one_line_error(run_build("--out", str(out), "--format", "md,pdf"))
    assert {"error": "LaTeX failed on tiny.tex", "timeout": "LaTeX took over 300 s"}.get(
        failure, "LaTeX on tiny.tex"
    ) in line
    assert not out.exists() or tree(out) == {}


def test_a_step_without_exactly_one_equals_is_a_one_line_format_error(tiny, tmp_path):
    (tiny / "tiny.py").write_text(TINY.replace('"sum(p) == 1"', '"sum(p) == 1 == 1"'))
    line = one_line_error(run_build("--out", str(tmp_path / "out")))
    assert "write exactly one '=='" in line
    assert not (tmp_path / "out").exists()
