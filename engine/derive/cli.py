"""The `llm-math derive` command: a gradient program, verified before it is printed."""

from __future__ import annotations

import json
import sys

import click

from engine.claims import load_declarations
from engine.cli_options import FormulaCommand, def_option, parse_pairs, seed_option, var_option
from engine.derive.core import DerivationFailed
from engine.derive.core import derive as derive_program
from engine.derive.program import Program
from engine.expr import EngineError

EXIT_FAIL, EXIT_ERROR = 1, 2
FORMATS = ("text", "latex", "json", "python")
TARGETS = ("numpy", "jax", "torch")


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


@click.command(cls=FormulaCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("expr")
@click.option(
    "--wrt",
    "wrt",
    multiple=True,
    metavar="VAR",
    help="Variable to differentiate with respect to; repeat it (or use commas) for several.",
)
@var_option
@def_option
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
@seed_option
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
        variables, definitions = load_declarations(spec) if spec else ({}, {})
        variables.update(parse_pairs(vars_, "var"))
        definitions.update(parse_pairs(defs, "def"))
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
