"""The `llm-math` command line: verify claims, derive gradients, build the notes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from engine.claims import Claim, ClaimsFileError, load_claims
from engine.cli_options import FormulaCommand, def_option, parse_pairs, seed_option, var_option
from engine.expr import EngineError
from engine.verify import Result

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


def exit_code(results: list[Result]) -> int:
    if any(r.verdict == "error" for r in results):
        return EXIT_ERROR
    if any(r.verdict == "fail" for r in results):
        return EXIT_FAIL
    return EXIT_PASS


def _sizes(values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for name, value in parse_pairs(values, "size").items():
        if not value.isdigit() or not 1 <= int(value) <= 10_000_000:
            raise click.BadParameter(
                f"{name}={value}: a size is an integer from 1 to 10**7", param_hint="--size"
            )
        out[name] = int(value)
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llm-math-notes")
def cli() -> None:
    """Machine-checked derivations for the mathematics of large language models.

    Every formula this tool shows has been checked twice: exactly with SymPy at small
    sizes, and numerically with NumPy (complex-step derivatives) at larger ones.
    """


@cli.command(cls=FormulaCommand)  # an equation may begin with '-'
@click.argument("target", required=False)
@var_option
@def_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
@seed_option
@click.option(
    "--size",
    "sizes",
    multiple=True,
    metavar="NAME=INT",
    help="Size for the numeric check, e.g. --size n=50000 (default n=64).",
)
def verify(target, vars_, defs, as_json, seed, sizes) -> None:
    """Check claims: a TOML claims file, or one EQUATION with --var/--def.

    \b
    Examples:
      llm-math verify examples/claims.toml
      llm-math verify --var 'z=real[n]' --var 'y=simplex[n]' --def 'p=softmax(z)' \\
          'grad(cross_entropy(p, y), z) == p - y'

    Exit status: 0 if every claim passes, 1 if any fails, 2 if any is an error.
    """
    if target is None:
        raise click.UsageError("give a claims file or an equation")
    numeric_sizes = _sizes(sizes)
    path = Path(target)
    if target.endswith(".toml") or (path.exists() and "==" not in target):
        if vars_ or defs:
            raise click.UsageError("--var/--def go with an inline equation, not a claims file")
        try:
            claims = load_claims(path)
        except ClaimsFileError as e:
            _die(str(e))
    else:
        claims = [Claim("claim", target, parse_pairs(vars_, "var"), parse_pairs(defs, "def"))]
    results = []
    for claim in claims:
        result = claim.check(seed=seed, numeric_sizes=numeric_sizes)
        results.append(result)
        if not as_json:
            click.echo(result.report())
    if as_json:
        click.echo(json.dumps([r.to_json() for r in results], indent=2))
    else:
        counts = {v: sum(r.verdict == v for r in results) for v in ("pass", "fail", "error")}
        click.echo(
            f"{counts['pass']} passed, {counts['fail']} failed, {counts['error']} errors", err=True
        )
    sys.exit(exit_code(results))


@cli.command()
@click.option(
    "--only", "only", multiple=True, metavar="NAME", help="Build only this note (repeatable)."
)
@click.option(
    "--format",
    "formats",
    default="md,tex",
    show_default=True,
    help="Comma-separated: md, tex, pdf (pdf needs pdflatex).",
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
def build(only, formats, out, force, no_cache) -> None:
    """Derive, verify and render every note in derivations/ (Markdown, LaTeX, PDF).

    Nothing is written unless every step of every selected note verifies; a failing step
    is named with its counterexample and the exit status is 1. Only files that a build wrote
    (listed in the directory's .llm-math-manifest.json) are ever replaced or removed.
    """
    from engine.notes.build import OUTPUT, build_cli

    fmts = tuple(f.strip() for f in formats.split(",") if f.strip())
    sys.exit(build_cli(only, fmts, OUTPUT if out is None else out, not no_cache, force))


@cli.command(name="list")
def list_notes() -> None:
    """List the notes in derivations/: name, number of checked steps, title."""
    from engine.notes.build import load_notes

    for x in load_notes():
        click.echo(f"{x.note.name:24} {len(x.note.steps()):3} steps  {x.note.title}")


def _die(message: str, code: int = EXIT_ERROR) -> None:
    click.echo(f"llm-math: {message}", err=True)
    sys.exit(code)


def main() -> None:
    """Entry point: never shows a traceback for bad input."""
    try:
        cli.main(standalone_mode=True)
    except EngineError as e:
        _die(str(e))
    except KeyboardInterrupt:
        _die("interrupted", 130)


from engine.derive.cli import derive as _derive_cmd  # noqa: E402 - registered after the group

cli.add_command(_derive_cmd)
