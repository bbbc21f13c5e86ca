"""`llm-math build`: load the notes, check every step, draw figures, render and write output/."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from engine.expr import EngineError
from engine.notes.cache import FigureCache, ResultCache, engine_fingerprint
from engine.notes.check import StepResult, check_note, environment
from engine.notes.model import Note
from engine.notes.output import OutputDirectory, OutputError
from engine.notes.paths import CACHE, DERIVATIONS, OUTPUT, ROOT  # noqa: F401 - re-exported
from engine.notes.render import (
    FigureFiles,
    NoteView,
    render_book_tex,
    render_index_md,
    render_note_md,
    render_note_tex,
)
from engine.parser import parse_formula

BOOK_TITLE = "The Mathematics of Large Language Models"
FORMATS = ("md", "tex", "pdf", "html")
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
    out: Path | str | None = None,
    use_cache: bool = True,
    directory: Path | None = None,
    cache_dir: Path | None = None,
    progress: Callable[[str, StepResult | None], None] | None = None,
    force: bool = False,
    parallel: int = 1,
) -> BuildReport:
    """Check every step of the selected notes; if all pass, draw, render and write them.

    Nothing is written unless every step passes (and, with pdf, LaTeX succeeds). Each file is
    written atomically and only when its content changed. The output directory's manifest
    lists what builds wrote there; only those files are ever replaced or removed (see
    `OutputDirectory`). The index page and the book are written when all notes are built.
    """
    target = OutputDirectory(OUTPUT if out is None else out, force)
    cache_dir = CACHE if cache_dir is None else cache_dir
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise BuildError(f"unknown format {', '.join(bad)} (choose from {', '.join(FORMATS)})")
    if only and "html" in formats:
        raise BuildError(
            "--format html builds the whole web book (its pages link to each other): drop --only"
        )
    loaded = load_notes(directory)
    notes = select(loaded, only)
    catalog = {x.note.name: x.note for x in loaded}  # for references to other notes' equations
    report = BuildReport(notes=[x.note.name for x in notes])
    problems = [f"{x.note.name}: {p}" for x in notes for p in x.note.problems()]
    if problems:
        raise BuildError("; ".join(problems))
    cache = ResultCache(cache_dir / "steps" if use_cache else None, cache_dir)
    fingerprint = engine_fingerprint() if use_cache else ""
    figures = FigureCache(cache_dir / "figures" if use_cache else None, cache_dir)
    checked: dict[str, list[StepResult]] = {}
    for x in notes:
        results = check_note(
            x.note,
            cache,
            fingerprint,
            x.source,
            progress=(lambda sr: progress(sr.note, sr)) if progress else None,
            parallel=parallel,
        )
        checked[x.note.name] = results
        report.steps += len(results)
        report.cached += sum(r.cached for r in results)
        report.failures += [r for r in results if not r.result.passed]
    if report.failures:
        return report
    files: dict[str, bytes] = {}
    views = []
    salt = _figure_salt(fingerprint) if use_cache else ""
    for x in notes:
        if progress:
            progress(x.note.name, None)
        drawn = draw_figures(x, checked[x.note.name], figures, salt)
        views.append(_render_note(x.note, checked[x.note.name], drawn, formats, files, catalog))
    if not only:
        _render_collection(views, formats, files)
    target.check(files)  # refuse before LaTeX runs, not after
    if "pdf" in formats:
        stems = [v.name for v in views] + ([] if only else ["book"])
        files.update(compile_pdfs(files, stems))
        report.pdfs = [target.root / "pdf" / f"{stem}.pdf" for stem in stems]
    # A full build removes the files earlier builds wrote that it no longer writes, in the
    # formats it writes (pdf writes its .tex too); a build of some notes removes nothing.
    built = set(formats) | ({"tex"} if "pdf" in formats else set())
    report.written, report.unchanged = target.commit(files, remove_stale=() if only else built)
    return report


def _figure_salt(fingerprint: str) -> str:
    import matplotlib

    own = (Path(__file__).parent / "figures.py").read_bytes()
    return hashlib.sha256(f"{fingerprint}|{matplotlib.__version__}|".encode() + own).hexdigest()


def draw_figures(
    loaded: LoadedNote, results: list[StepResult], cache: FigureCache, salt: str
) -> dict[str, tuple[bytes, bytes]]:
    """SVG and PDF bytes of each figure of a note: from the cache where a valid record of
    this note source, figure, engine and matplotlib is stored, else drawn (and stored)."""
    note, out = loaded.note, {}
    ctx = None
    source = hashlib.sha256(loaded.source.encode()).hexdigest()
    for f in note.figures():
        claim = {"salt": salt, "note": note.name, "figure": f.name, "source": source}
        found = cache.get(claim)
        if found is not None:
            out[f.name] = found
            continue
        ctx = ctx or _figure_context(note, results)
        out[f.name] = _draw(note, f, ctx)
        cache.put(claim, *out[f.name])
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
            fig = f.draw(ctx)
            found = figs.problems(fig)  # legend over data, ticks, math as plain text
            if found:
                figs.plt.close(fig)
                raise BuildError(f"{note.name}: figure {f.name!r}: " + "; ".join(found))
            return figs.save(fig)
    except BuildError:
        raise
    except Exception as e:  # a figure's code is the note author's: report, do not crash
        raise BuildError(f"{note.name}: figure {f.name!r}: {type(e).__name__}: {e}") from e


def _render_note(
    note: Note,
    results: list[StepResult],
    drawn: dict[str, tuple[bytes, bytes]],
    formats,
    files: dict[str, bytes],
    catalog: Mapping[str, Note] | None = None,
) -> NoteView:
    env = environment(note)
    figure_files: dict[str, FigureFiles] = {}
    for f in note.figures():
        stem = f"{note.name}-{f.name}"
        svg, pdf = drawn[f.name]
        figure_files[f.name] = FigureFiles(f"figures/{stem}.svg", f"figures/{stem}.pdf")
        if "md" in formats:
            files[f"md/figures/{stem}.svg"] = svg
        if "html" in formats:
            files[f"html/figures/{stem}.svg"] = svg
        if "tex" in formats or "pdf" in formats:
            files[f"tex/figures/{stem}.pdf"] = pdf
    view = NoteView(note, env, [sr.result for sr in results], figure_files, catalog)
    if "md" in formats:
        files[f"md/{note.name}.md"] = render_note_md(view).encode()
    if "tex" in formats or "pdf" in formats:
        files[f"tex/{note.name}.tex"] = render_note_tex(view).encode()
    return view


def _render_collection(views: list[NoteView], formats, files: dict[str, bytes]) -> None:
    paths: dict = {v.name: {"md": f"md/{v.name}.md", "tex": f"tex/{v.name}.tex"} for v in views}
    paths["book"] = "tex/book.tex"
    if "md" in formats:
        files["README.md"] = render_index_md(views, paths).encode()
    if "tex" in formats or "pdf" in formats:
        files["tex/book.tex"] = render_book_tex(views, BOOK_TITLE).encode()
    if "html" in formats:  # the web book (engine.notes.html): all notes, so a full build only
        from engine.notes.html import HtmlError, render_book

        try:
            book = render_book(views, BOOK_TITLE)
        except HtmlError as e:  # a missing dependency: one line, as every build error
            raise BuildError(str(e)) from e
        for rel, data in book.items():
            files[f"html/{rel}"] = data


# ---------------------------------------------------------------- PDF


def latex_tool() -> str | None:
    """`latexmk` if installed, else `pdflatex`, else None."""
    for tool in ("latexmk", "pdflatex"):
        if shutil.which(tool):
            return tool
    return None


def compile_pdfs(files: Mapping[str, bytes], stems: Sequence[str]) -> dict[str, bytes]:
    """Compile `tex/<stem>.tex` of the rendered `files` for each stem, in a scratch directory;
    return the PDFs and logs as `pdf/<stem>.pdf` and `pdf/<stem>.log`.

    Nothing is written to the output directory here, so a LaTeX error leaves it untouched.
    The PDFs are reproducible: the preamble drops pdfTeX's dates and document ID, and
    SOURCE_DATE_EPOCH (fixed unless set) pins any date LaTeX prints.
    """
    tool = latex_tool()
    if tool is None:
        raise BuildError(
            "--format pdf needs pdflatex; on Debian/Ubuntu install it with: "
            f"sudo apt-get install {PDF_PACKAGES}"
        )
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="llm-math-pdf-") as scratch:
        tex_dir, pdf_dir = Path(scratch) / "tex", Path(scratch) / "pdf"
        for rel, data in files.items():
            if rel.startswith("tex/"):
                (Path(scratch) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(scratch) / rel).write_bytes(data)
        pdf_dir.mkdir()
        for stem in stems:
            try:
                _compile(tool, tex_dir / f"{stem}.tex", pdf_dir)
                log = (pdf_dir / f"{stem}.log").read_bytes()
                pdf = (pdf_dir / f"{stem}.pdf").read_bytes()
            except subprocess.TimeoutExpired as e:
                raise BuildError(f"LaTeX took over {e.timeout:.0f} s on {stem}.tex") from e
            except OSError as e:
                raise BuildError(f"LaTeX on {stem}.tex: {e.strerror or e}") from e
            problems = log_problems(log.decode(errors="replace"))
            if problems:
                raise BuildError(f"{stem}.tex: " + "; ".join(problems[:5]))
            out[f"pdf/{stem}.pdf"] = pdf
            out[f"pdf/{stem}.log"] = log
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
    env = {**os.environ, "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "0")}
    env["FORCE_SOURCE_DATE"] = "1"
    for cmd in commands:
        proc = subprocess.run(
            cmd, cwd=tex.parent, capture_output=True, text=True, timeout=300, env=env
        )
        if proc.returncode != 0:
            log = pdf_dir / f"{tex.stem}.log"
            errors = log_problems(log.read_text(errors="replace")) if log.exists() else []
            detail = "; ".join(errors[:5]) or " ".join(proc.stdout[-400:].split())
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


class LineProgress:
    """Progress for a log (stderr not a terminal): one plain line per note once its steps are
    checked, and one when the notes are being rendered."""

    def __init__(self, steps: Mapping[str, int]):
        self.steps = dict(steps)
        self.done: dict[str, list[bool]] = {name: [] for name in steps}
        self.rendering = False

    def __call__(self, note: str, sr: StepResult | None) -> None:
        import click

        if sr is None:
            if not self.rendering:
                self.rendering = True
                click.echo(f"rendering {len(self.steps)} note(s)", err=True)
            return
        done = self.done[note]
        done.append(sr.cached)
        if len(done) == self.steps[note]:
            cached = sum(done)
            click.echo(
                f"{note}: {len(done)} steps checked"
                + (f" ({cached} from cache)" if cached else ""),
                err=True,
            )


def build_cli(
    only: Sequence[str],
    formats: Sequence[str],
    out: Path | str,
    use_cache: bool,
    force: bool = False,
    parallel: int = 1,
) -> int:
    """Run a build with progress on stderr (a bar on a terminal, one line per note otherwise);
    return the exit status (0, 1 or 2)."""
    import click

    try:
        OutputDirectory(out, force)  # refuse a bad --out before any work
        notes = select(load_notes(), only)
        if sys.stderr.isatty():
            total = sum(len(x.note.steps()) + 1 for x in notes)
            with click.progressbar(
                length=total, label="Checking and rendering notes", file=sys.stderr, width=30
            ) as bar:

                def progress(note: str, sr: StepResult | None) -> None:
                    bar.label = f"{note:>18}"
                    bar.update(1)

                report = build(
                    only, formats, out, use_cache, progress=progress, force=force, parallel=parallel
                )
        else:
            report = build(
                only,
                formats,
                out,
                use_cache,
                progress=LineProgress({x.note.name: len(x.note.steps()) for x in notes}),
                force=force,
                parallel=parallel,
            )
    except (BuildError, OutputError) as e:
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
