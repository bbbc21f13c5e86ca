"""The `llm-math derive` command: a gradient program, verified before it is printed."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import click

from engine.derive.core import DerivationFailed
from engine.derive.core import derive as derive_program
from engine.derive.program import Program
from engine.expr import EngineError

EXIT_FAIL, EXIT_ERROR = 1, 2
FORMATS = ("text", "latex", "json", "python")
TARGETS = ("numpy", "jax", "torch")


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=f"--{what}")
        out[name.strip()] = value.strip()
    return out


def read_spec(path: str) -> tuple[dict[str, str], dict[str, str]]:
    """[vars] and [defs] of a TOML file (a claims file works too: its claims are ignored)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise EngineError(f"cannot read {path}: {e.strerror or type(e).__name__}") from None
    except UnicodeDecodeError:
        raise EngineError(f"cannot read {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise EngineError(f"{path}: not valid TOML: {e}") from None
    unknown = set(data) - {"vars", "defs", "claim"}
    if unknown:
        raise EngineError(f"{path}: unknown table [{sorted(unknown)[0]}]")
    tables = []
    for key in ("vars", "defs"):
        table = data.get(key, {})
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise EngineError(f"{path}: [{key}] must be a table of strings")
        tables.append(dict(table))
    return tables[0], tables[1]


def render(program: Program, fmt: str, target: str = "numpy") -> str:
    """The program in one of the output formats, with its verification line."""
    line = program.verification_line()
    if fmt == "text":
        return program.to_text() + f"\n# {line}"
    if fmt == "latex":
        return program.to_latex() + f"\n% {line}"
    if fmt == "json":
        return json.dumps(program.to_json(), indent=2)
    try:
        from engine.export import to_module
    except ImportError:
        raise EngineError(
            "--format python needs the code exporter (engine.export), which is not installed "
            "in this version"
        ) from None
    summary = line.removeprefix("verified: ") if program.verified else None
    return to_module(program, target, verified_summary=summary)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("expr")
@click.option(
    "--wrt",
    "wrt",
    multiple=True,
    metavar="VAR",
    help="Variable to differentiate with respect to; repeat it (or use commas) for several.",
)
@click.option(
    "--var",
    "vars_",
    multiple=True,
    metavar="NAME=TYPE",
    help="Declare a variable, e.g. --var 'z=real[n]'. Types: real, positive, unit, "
    "simplex, onehot.",
)
@click.option(
    "--def",
    "defs",
    multiple=True,
    metavar="NAME=EXPR",
    help="Let-bind a definition, e.g. --def 'p=softmax(z)'; the result uses its name.",
)
@click.option(
    "--file",
    "spec",
    metavar="SPEC.toml",
    help="Read [vars] and [defs] from a TOML file (a claims file works); --var/--def add to it.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text: the program in the formula language; latex: textbook notation; json; "
    "python: a standalone module (see --target).",
)
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default="numpy",
    show_default=True,
    help="Array library of --format python.",
)
@click.option("--seed", default=0, show_default=True, help="Seed for the verifier's test points.")
def derive(expr, wrt, vars_, defs, spec, fmt, target, seed) -> None:
    """Derive the gradient of EXPR as a short program, verified before it is shown.

    EXPR is a scalar expression (one gradient per --wrt variable), a vector function of one
    vector variable (its Jacobian), or grad(f, x) / jacobian(f, x). The result is checked
    exactly with SymPy at small sizes and numerically with NumPy (complex-step) at larger
    ones; the last line says how. A program that fails the check is never printed.

    \b
    Examples:
      llm-math derive 'cross_entropy(softmax(z), y)' --wrt z \\
          --var 'z=real[n]' --var 'y=simplex[n]'
      llm-math derive 'sum(O * (P @ V))' --wrt Q --wrt K --wrt V --file examples/claims.toml
      llm-math derive 'jacobian(softmax(z), z)' --var 'z=real[n]' --def 'p=softmax(z)'

    Exit status: 0 verified, 1 the verifier rejected the derivation, 2 bad input.
    """
    try:
        variables, definitions = read_spec(spec) if spec else ({}, {})
        variables.update(_pairs(vars_, "var"))
        definitions.update(_pairs(defs, "def"))
        names = [w for item in wrt for w in item.split(",") if w.strip()] or None
        program = derive_program(expr, names, variables, definitions, seed=seed)
        text = render(program, fmt, target)
    except DerivationFailed as e:
        bad = [r for r in e.results.values() if not r.passed]
        click.echo("llm-math: the derived program did not verify; it is not shown.", err=True)
        for r in bad:
            click.echo(r.report(), err=True)
        sys.exit(EXIT_ERROR if any(r.verdict == "error" for r in bad) else EXIT_FAIL)
    except EngineError as e:
        click.echo(f"llm-math: {e}", err=True)
        sys.exit(EXIT_ERROR)
    except click.ClickException:
        raise  # usage errors: click prints them (exit 2)
    except RecursionError:
        click.echo("llm-math: the expression is nested too deeply to differentiate", err=True)
        sys.exit(EXIT_ERROR)
    except Exception as e:  # a bug must not show a user a traceback
        click.echo(f"llm-math: internal error while deriving ({type(e).__name__}: {e})", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(text)
