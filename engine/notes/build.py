"""`llm-math build`: load the notes, check every step, draw figures, render and write output/."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from engine.expr import EngineError
from engine.notes.check import (
    ResultCache,
    StepResult,
    check_note,
    engine_fingerprint,
    environment,
    write_atomic,
)
from engine.notes.model import Note
from engine.notes.render import (
    FigureFiles,
    NoteView,
    render_book_tex,
    render_index_md,
    render_note_md,
    render_note_tex,
)
from engine.parser import parse_formula

ROOT = Path(__file__).resolve().parent.parent.parent
DERIVATIONS = ROOT / "derivations"
OUTPUT = ROOT / "output"
# steps/ (passing results) and figures/ (SVG and PDF); LLM_MATH_CACHE moves it (benchmarks).
CACHE = Path(os.environ.get("LLM_MATH_CACHE") or ROOT / ".cache" / "llm-math")
BOOK_TITLE = "The Mathematics of Large Language Models"
FORMATS = ("md", "tex", "pdf")
PDF_PACKAGES = "texlive-latex-base texlive-latex-recommended texlive-fonts-recommended latexmk"


class BuildError(EngineError):
    """A note that cannot be built: a failing step, a format error, a missing tool."""


@dataclass
class LoadedNote:
    """A note and the source text of the module that defines it."""

    note: Note
    path: Path
    source: str


@dataclass
class BuildReport:
    """What a build did."""

    notes: list[str] = field(default_factory=list)
    steps: int = 0
    cached: int = 0
    failures: list[StepResult] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    pdfs: list[Path] = field(default_factory=list)


def load_module(path: Path) -> ModuleType:
    """Import one note source file as the module `derivations.<stem>`."""
    spec = importlib.util.spec_from_file_location(f"derivations.{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_notes(directory: Path | None = None) -> list[LoadedNote]:
    """Every `NOTE` defined by a module in `directory`, sorted by order then name."""
    directory = DERIVATIONS if directory is None else directory
    loaded = []
    for path in sorted(directory.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            module = load_module(path)
        except Exception as e:  # a note module is the author's code: report it as one line
            raise BuildError(f"{path.name}: cannot load the note: {type(e).__name__}: {e}") from e
        note = getattr(module, "NOTE", None)
        if not isinstance(note, Note):
            raise BuildError(f"{path.name}: defines no NOTE = Note(...)")
        loaded.append(LoadedNote(note, path, path.read_text()))
    names = [x.note.name for x in loaded]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise BuildError(f"two notes share the name {', '.join(dup)}")
    return sorted(loaded, key=lambda x: (x.note.order, x.note.name))


def select(notes: list[LoadedNote], only: Sequence[str]) -> list[LoadedNote]:
    if not only:
        return notes
    known = {x.note.name for x in notes}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise BuildError(f"no note named {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return [x for x in notes if x.note.name in only]


def failure_report(sr: StepResult) -> str:
    """The message for a failing step: note, step, verdict, counterexample."""
    return sr.result.report()


def build(
    only: Sequence[str] = (),
    formats: Sequence[str] = ("md", "tex"),
    out: Path | None = None,
    use_cache: bool = True,
    directory: Path | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[str, StepResult | None], None] | None = None,
) -> BuildReport:
    """Check every step of the selected notes; if all pass, draw, render and write them.

    Nothing is written unless every step passes. Each file is written atomically and only
    when its content changed. The index page and the book are written when all notes are built.
    """
    out = OUTPUT if out is None else out
    cache_dir = CACHE if cache_dir is None else cache_dir
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise BuildError(f"unknown format {', '.join(bad)} (choose from {', '.join(FORMATS)})")
    notes = select(load_notes(directory), only)
    report = BuildReport(notes=[x.note.name for x in notes])
    problems = [f"{x.note.name}: {p}" for x in notes for p in x.note.problems()]
    if problems:
        raise BuildError("; ".join(problems))
    cache = ResultCache(cache_dir / "steps" if use_cache else None)
    fingerprint = engine_fingerprint() if use_cache else ""
    figure_cache = FigureCache(cache_dir / "figures" if use_cache else None, fingerprint)
    checked: dict[str, list[StepResult]] = {}
    for x in notes:
        results = check_note(
            x.note,
            cache,
            fingerprint,
            x.source,
            progress=(lambda sr: progress(sr.note, sr)) if progress else None,
        )
        checked[x.note.name] = results
        report.steps += len(results)
        report.cached += sum(r.cached for r in results)
        report.failures += [r for r in results if not r.result.passed]
    if report.failures:
        return report
    views = []
    for x in notes:
        if progress:
            progress(x.note.name, None)
        drawn = figure_cache.draw(x, checked[x.note.name])
        views.append(_render_note(x.note, checked[x.note.name], drawn, formats, out, report))
    if not only:
        _write_collection(views, formats, out, report)
    if "pdf" in formats:
        targets = [out / "tex" / f"{v.name}.tex" for v in views]
        if not only:
            targets.append(out / "tex" / "book.tex")
        report.pdfs = compile_pdfs(targets, out / "pdf")
    return report


class FigureCache:
    """SVG and PDF bytes of each figure, keyed by the note's source, the figure's name, the
    engine and matplotlib: a rebuild with nothing changed draws nothing."""

    def __init__(self, directory: Path | None, fingerprint: str):
        self.directory = directory
        if directory is not None:
            import matplotlib

            own = (Path(__file__).parent / "figures.py").read_bytes()
            salt = f"{fingerprint}|{matplotlib.__version__}|".encode() + own
            self.salt = hashlib.sha256(salt).hexdigest()

    def draw(self, loaded: LoadedNote, results: list[StepResult]) -> dict[str, tuple[bytes, bytes]]:
        note, out = loaded.note, {}
        ctx = None
        for f in note.figures():
            key = path = None
            if self.directory is not None:
                text = f"{self.salt}|{note.name}|{f.name}|{loaded.source}"
                key = hashlib.sha256(text.encode()).hexdigest()
                path = self.directory / key
                try:
                    out[f.name] = ((path / "f.svg").read_bytes(), (path / "f.pdf").read_bytes())
                    continue
                except OSError:
                    pass
            ctx = ctx or _figure_context(note, results)
            out[f.name] = _draw(note, f, ctx)
            if path is not None:
                write_atomic(path / "f.svg", out[f.name][0])
                write_atomic(path / "f.pdf", out[f.name][1])
        return out


def _figure_context(note: Note, results: list[StepResult]):
    from engine.notes import figures as figs

    env = environment(note)
    verified: dict[str, tuple] = {}
    for sr in results:
        if sr.step.label:
            lhs, rhs = sr.step.sides()
            if sr.step.resolved_kind == "formula":
                lhs, rhs = parse_formula(str(lhs), env), parse_formula(str(rhs), env)
            verified[sr.step.label] = (lhs, rhs)
    return figs.FigureContext(env, verified)


def _draw(note: Note, f, ctx) -> tuple[bytes, bytes]:
    from engine.notes import figures as figs

    try:
        with figs.style():
            return figs.save(f.draw(ctx))
    except Exception as e:  # a figure's code is the note author's: report, do not crash
        raise BuildError(f"{note.name}: figure {f.name!r}: {type(e).__name__}: {e}") from e


def _render_note(
    note: Note,
    results: list[StepResult],
    drawn: dict[str, tuple[bytes, bytes]],
    formats,
    out: Path,
    report: BuildReport,
) -> NoteView:
    env = environment(note)
    files: dict[str, FigureFiles] = {}
    for f in note.figures():
        stem = f"{note.name}-{f.name}"
        svg, pdf = drawn[f.name]
        files[f.name] = FigureFiles(f"figures/{stem}.svg", f"figures/{stem}.pdf")
        if "md" in formats:
            _write(out / "md" / "figures" / f"{stem}.svg", svg, report)
        if "tex" in formats or "pdf" in formats:
            _write(out / "tex" / "figures" / f"{stem}.pdf", pdf, report)
    view = NoteView(note, env, [sr.result for sr in results], files)
    if "md" in formats:
        _write(out / "md" / f"{note.name}.md", render_note_md(view).encode(), report)
    if "tex" in formats or "pdf" in formats:
        _write(out / "tex" / f"{note.name}.tex", render_note_tex(view).encode(), report)
    return view


def _write_collection(views: list[NoteView], formats, out: Path, report: BuildReport) -> None:
    paths: dict = {v.name: {"md": f"md/{v.name}.md", "tex": f"tex/{v.name}.tex"} for v in views}
    paths["book"] = "tex/book.tex"
    if "md" in formats:
        _write(out / "README.md", render_index_md(views, paths).encode(), report)
    if "tex" in formats or "pdf" in formats:
        _write(out / "tex" / "book.tex", render_book_tex(views, BOOK_TITLE).encode(), report)
    _remove_stale(out, formats, report)


def _remove_stale(out: Path, formats, report: BuildReport) -> None:
    """Delete generated files of notes or figures that no longer exist (in the formats built)."""
    keep = {p.resolve() for p in report.written + report.unchanged}
    places = []
    if "md" in formats:
        places += [("md", "*.md"), ("md/figures", "*.svg")]
    if "tex" in formats or "pdf" in formats:
        places += [("tex", "*.tex"), ("tex/figures", "*.pdf")]
    for sub, pattern in places:
        for path in (out / sub).glob(pattern):
            if path.resolve() not in keep:
                path.unlink()


def _write(path: Path, data: bytes, report: BuildReport) -> None:
    if write_atomic(path, data):
        report.written.append(path)
    else:
        report.unchanged.append(path)


# ---------------------------------------------------------------- PDF


def latex_tool() -> str | None:
    """`latexmk` if installed, else `pdflatex`, else None."""
    for tool in ("latexmk", "pdflatex"):
        if shutil.which(tool):
            return tool
    return None


def compile_pdfs(sources: Sequence[Path], pdf_dir: Path) -> list[Path]:
    """Compile each .tex into `pdf_dir`; raise BuildError naming the Debian packages if needed."""
    tool = latex_tool()
    if tool is None:
        raise BuildError(
            "--format pdf needs pdflatex; on Debian/Ubuntu install it with: "
            f"sudo apt-get install {PDF_PACKAGES}"
        )
    pdf_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for tex in sources:
        _compile(tool, tex.resolve(), pdf_dir.resolve())
        problems = log_problems((pdf_dir / f"{tex.stem}.log").read_text(errors="replace"))
        if problems:
            raise BuildError(f"{tex.name}: " + "; ".join(problems[:5]))
        out.append(pdf_dir / f"{tex.stem}.pdf")
    return out


def _compile(tool: str, tex: Path, pdf_dir: Path) -> None:
    if tool == "latexmk":
        commands = [
            [
                "latexmk",
                "-pdf",
                "-interaction=nonstopmode",
                "-halt-on-error",
                "-file-line-error",
                f"-outdir={pdf_dir}",
                tex.name,
            ]
        ]
    else:
        once = [
            "pdflatex",
            "-interaction=nonstopmode",
            "-halt-on-error",
            "-file-line-error",
            f"-output-directory={pdf_dir}",
            tex.name,
        ]
        commands = [once, once, once]
    for cmd in commands:
        proc = subprocess.run(cmd, cwd=tex.parent, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            log = pdf_dir / f"{tex.stem}.log"
            errors = log_problems(log.read_text(errors="replace")) if log.exists() else []
            detail = "; ".join(errors[:5]) or proc.stdout[-800:]
            raise BuildError(f"LaTeX failed on {tex.name}: {detail}")


OVERFULL_LIMIT_PT = 1.0  # an overfull box wider than this (in points) counts as a defect


def log_problems(log: str) -> list[str]:
    """LaTeX errors, undefined references/citations and overfull boxes in a .log file."""
    problems = [m.group(0).strip() for m in re.finditer(r"^(?:.*:\d+: |! ).*$", log, re.M)]
    for m in re.finditer(r"(?:Reference|Citation) `([^']+)' .*undefined", log):
        problems.append(f"undefined reference {m.group(1)}")
    if re.search(r"There were undefined references", log):
        problems.append("there were undefined references")
    for m in re.finditer(r"Overfull \\[hv]box \(([\d.]+)pt too (?:wide|high)\)([^\n]*)", log):
        if float(m.group(1)) > OVERFULL_LIMIT_PT:
            problems.append(f"overfull box {m.group(1)}pt{m.group(2)}")
    return problems


# ---------------------------------------------------------------- command line


def build_cli(only: Sequence[str], formats: Sequence[str], out: Path, use_cache: bool) -> int:
    """Run a build with a progress bar on stderr; return the exit status (0, 1 or 2)."""
    import click

    try:
        notes = select(load_notes(), only)
        total = sum(len(x.note.steps()) + 1 for x in notes)
        with click.progressbar(
            length=total, label="Checking and rendering notes", file=sys.stderr, width=30
        ) as bar:

            def progress(note: str, sr: StepResult | None) -> None:
                bar.label = f"{note:>18}"
                bar.update(1)

            report = build(only, formats, out, use_cache, progress=progress)
    except BuildError as e:
        click.echo(f"llm-math: {e}", err=True)
        return 2
    if report.failures:
        for sr in report.failures:
            click.echo(failure_report(sr), err=True)
        names = ", ".join(f"{sr.note}: {sr.title}" for sr in report.failures)
        click.echo(
            f"llm-math: {len(report.failures)} step(s) failed, nothing written: {names}", err=True
        )
        return 1 if all(sr.result.verdict == "fail" for sr in report.failures) else 2
    click.echo(
        f"{len(report.notes)} note(s), {report.steps} steps verified "
        f"({report.cached} from cache); {len(report.written)} file(s) written, "
        f"{len(report.unchanged)} unchanged"
        + (f", {len(report.pdfs)} PDF(s)" if report.pdfs else ""),
        err=True,
    )
    return 0
