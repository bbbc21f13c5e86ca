"""The `llm-math` command line: verify claims, derive gradients, build the notes."""

from __future__ import annotations

import atexit
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from engine.cli_options import (
    FormulaCommand,
    budget_seconds,
    def_option,
    default_jobs,
    dumps,
    jobs_option,
    loading_the_engine,
    parse_pairs,
    seed_option,
    shorten,
    size_rel_option,
    timeout_option,
    var_option,
)

if TYPE_CHECKING:
    from engine.verify import Result

# The engine (SymPy, NumPy) is imported inside the commands, so `--help` starts instantly.

# Exit status: pass, a claim is false, bad input (or over budget), a bug in the engine, Ctrl-C.
EXIT_PASS, EXIT_FAIL, EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
MAX_SIZE = 10_000_000


def exit_code(results: list[Result]) -> int:
    if any(r.verdict == "error" for r in results):
        return EXIT_ERROR
    if any(r.verdict == "fail" for r in results):
        return EXIT_FAIL
    return EXIT_PASS


def _sizes(values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for name, value in parse_pairs(values, "size").items():
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_SIZE:
            raise click.BadParameter(
                f"{shorten(name)}={shorten(value)}: a size is an integer from 1 to 10**7",
                param_hint="--size",
            )
        out[name] = int(value)
    return out


def _fail(message: str, code: int) -> None:
    click.echo(f"llm-math: {shorten(message)}", err=True)
    sys.exit(code)


class EngineGroup(click.Group):
    """The command group: every failure below it is one line and an exit status, no traceback."""

    argv: list[str] = []

    def main(  # noqa: ANN201 - click's signature
        self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra
    ):
        self.argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        # Click's own standalone handling turns Ctrl-C into "Aborted!" and exit status 1.
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            _fail("interrupted", EXIT_INTERRUPTED)
        sys.exit(rv if isinstance(rv, int) else EXIT_PASS)

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException as e:
            e.message = shorten(e.message)  # click shows it: usage errors echo the value given
            raise
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", EXIT_INTERRUPTED)
        except BrokenPipeError:
            raise  # click closes quietly when the reader of stdout went away
        except OSError as e:
            where = f" {e.filename}" if e.filename else ""
            _fail(f"cannot access{where}: {e.strerror or type(e).__name__}", EXIT_ERROR)
        except (RecursionError, MemoryError) as e:
            _fail(f"the input is too large or nested too deeply ({type(e).__name__})", EXIT_ERROR)
        except Exception as e:  # noqa: BLE001 - a bug: one line, its own exit status
            from engine.expr import EngineError

            if isinstance(e, EngineError):
                _fail(str(e), EXIT_ERROR)
            command = shorten(shlex.join(["llm-math", *self.argv]), 200)
            _fail(
                f"internal error ({type(e).__name__}: {shorten(str(e), 120)}); this is a bug in "
                f"llm-math, please report it with the command: {command}",
                EXIT_INTERNAL,
            )


def _is_file_target(target: str) -> bool:
    """A claims file (a .toml name, or an existing path without a relation), not a claim."""
    if target.endswith(".toml"):
        return True
    if any(op in target for op in ("==", "<", ">")):  # an equation or inequality
        return False
    try:
        return Path(target).exists()
    except (OSError, ValueError):  # a name too long for a path, a NUL byte
        return False


def _report(result: Result) -> str:
    if result.verdict == "error":
        return f"ERROR {shorten(result.name, 80)}: {shorten(result.message)}"
    return result.report()


@click.group(cls=EngineGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llm-math-notes")
def cli() -> None:
    """Machine-checked derivations for the mathematics of large language models.

    Every formula this tool shows has been checked twice: exactly with SymPy at small
    sizes, and numerically with NumPy (complex-step derivatives) at larger ones.

    Exit status: 0 pass, 1 a claim is false, 2 bad input (or over the time budget),
    3 internal error (a bug: please report it), 130 interrupted.
    """


@cli.command(cls=FormulaCommand)  # an equation may begin with '-'
@click.argument("target", required=False)
@var_option
@def_option
@size_rel_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
@seed_option
@click.option(
    "--size",
    "sizes",
    multiple=True,
    metavar="NAME=INT",
    help="Size for the numeric check, e.g. --size n=50000 (default n=64).",
)
@timeout_option
@jobs_option
def verify(target, vars_, defs, size_rels, as_json, seed, sizes, timeout, jobs) -> None:
    """Check claims: a TOML claims file, or one EQUATION with --var/--def.

    An inequality (<=, >=, <, >) is a claim too: it must hold entry by entry.

    \b
    Examples:
      llm-math verify examples/claims.toml
      llm-math verify --var 'z=real[n]' --var 'y=simplex[n]' --def 'p=softmax(z)' \\
          'grad(cross_entropy(p, y), z) == p - y'
      llm-math verify --var 'p=simplex[n]' --var 'q=simplex[n]' 'kl(p, q) >= 0'

    Exit status: 0 if every claim passes, 1 if any fails, 2 if any is an error (bad input,
    or a claim over its time budget), 3 on an internal error.
    """
    if target is None:
        raise click.UsageError("give a claims file or an equation")
    with loading_the_engine():
        from engine.claims import Claim, check_claims, load_claims, read_within

    numeric_sizes = _sizes(sizes)
    seconds = budget_seconds(timeout)
    if _is_file_target(target):
        if vars_ or defs:
            raise click.UsageError("--var/--def go with an inline equation, not a claims file")
        if size_rels:
            raise click.UsageError("--size-rel goes with an inline equation; a file has [sizes]")
        claims = read_within(load_claims, target, seconds)
    else:
        claims = [
            Claim(
                "claim",
                target,
                parse_pairs(vars_, "var"),
                parse_pairs(defs, "def"),
                sizes=parse_pairs(size_rels, "size-rel"),
            )
        ]
    finished: dict[int, Result] = {}
    shown = 0

    def done(i: int, result: Result) -> None:
        nonlocal shown  # reports go out in the file's order, as soon as all before are done
        finished[i] = result
        while shown in finished and not as_json:
            click.echo(_report(finished[shown]))
            shown += 1

    results = check_claims(claims, seed, numeric_sizes, seconds, jobs or default_jobs(), done=done)
    if as_json:
        click.echo(dumps([_json(r) for r in results]))
    else:
        counts = {v: sum(r.verdict == v for r in results) for v in ("pass", "fail", "error")}
        click.echo(
            f"{counts['pass']} passed, {counts['fail']} failed, {counts['error']} errors", err=True
        )
    sys.exit(exit_code(results))


def _json(result: Result) -> dict:
    out = result.to_json()
    if result.verdict == "error":
        out["message"] = shorten(out["message"])
    return out


@cli.command()
@click.option(
    "--only", "only", multiple=True, metavar="NAME", help="Build only this note (repeatable)."
)
@click.option(
    "--format",
    "formats",
    default="md,tex",
    show_default=True,
    help="Comma-separated: md, tex, pdf (needs pdflatex), html (the web book in output/html/).",
)
@click.option(
    "--out",
    default=None,
    metavar="DIR",
    help="Output directory (default: output/ in the repository).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty --out directory that no build wrote: files at the paths the "
    "build writes are replaced, nothing else is touched or removed.",
)
@click.option("--no-cache", is_flag=True, help="Re-check every step (ignore cached results).")
@timeout_option
@jobs_option
def build(only, formats, out, force, no_cache, timeout, jobs) -> None:
    """Derive, verify and render every note in derivations/ (Markdown, LaTeX, PDF).

    Nothing is written unless every step of every selected note verifies; a failing step
    is named with its counterexample and the exit status is 1. Only files that a build wrote
    (listed in the directory's .llm-math-manifest.json) are ever replaced or removed.
    """
    from engine import budget
    from engine.notes.build import OUTPUT, build_cli

    fmts = tuple(f.strip() for f in formats.split(",") if f.strip())
    with budget.timeout_set(budget_seconds(timeout)):
        target = OUTPUT if out is None else out
        sys.exit(build_cli(only, fmts, target, not no_cache, force, jobs or default_jobs()))


@cli.command(name="list")
def list_notes() -> None:
    """List the notes in derivations/: name, number of checked steps, title."""
    from engine.notes.listing import note_index

    for entry in note_index():
        click.echo(f"{entry['name']:24} {entry['steps']:3} steps  {entry['title']}")


def main() -> None:
    """Entry point: `llm-math`; never shows a traceback (see EngineGroup)."""
    try:
        cli.main()
    except SystemExit as e:
        _exit_now(e.code)
    _exit_now(0)


def _exit_now(code: object) -> None:
    """Exit as `sys.exit(code)` would, without the interpreter's teardown.

    The exit handlers still run (`atexit`, and through it `weakref.finalize`: temporary
    directories are removed) and stdout and stderr are flushed; what is skipped is freeing every
    module and object one by one, about 0.06 s after SymPy and NumPy are loaded (a tenth of
    `llm-math verify` of one claim; benchmarks/startup_bench.py).
    """
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            status = status or 1
    os._exit(status)


from engine.derive.cli import derive as _derive_cmd  # noqa: E402 - registered after the group

cli.add_command(_derive_cmd)
