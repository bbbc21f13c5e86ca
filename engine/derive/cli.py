"""The `llm-math derive` command: a gradient program, verified before it is printed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from engine.cli_options import (
    FormulaCommand,
    budget_seconds,
    def_option,
    dumps,
    parse_pairs,
    seed_option,
    size_rel_option,
    timeout_option,
    var_option,
)

if TYPE_CHECKING:
    from engine.derive.program import Program

# The engine is imported inside the command, so `llm-math --help` does not load SymPy.

EXIT_FAIL, EXIT_ERROR = 1, 2
FORMATS = ("text", "latex", "json", "python")
TARGETS = ("numpy", "jax", "torch")
FORMS = ("function", "autograd-function", "custom-vjp")  # --as (engine.export.wrappers)


def render(
    program: Program,
    fmt: str,
    target: str = "numpy",
    as_: str = "function",
    name: str | None = None,
) -> str:
    """The program in one of the output formats, with its verification line."""
    line = program.verification_line()
    if fmt == "text":
        return program.to_text() + f"\n# {line}"
    if fmt == "latex":
        return program.to_latex() + f"\n% {line}"
    if fmt == "json":
        return dumps(program.to_json())
    from engine.expr import EngineError

    try:
        from engine.export import to_module
    except ImportError:
        raise EngineError(
            "--format python needs the code exporter (engine.export), which is not installed "
            "in this version"
        ) from None
    summary = line.removeprefix("verified: ") if program.verified else None
    return to_module(program, target, name, verified_summary=summary, as_=as_)


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
@size_rel_option
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
@click.option(
    "--order",
    type=click.IntRange(1, 2),
    default=1,
    show_default=True,
    help="1: gradients (or a Jacobian); 2: the Hessian of a scalar EXPR with respect to one "
    "vector or scalar --wrt variable.",
)
@click.option("--hessian", is_flag=True, help="The same as --order 2.")
@click.option(
    "--as",
    "as_",
    type=click.Choice(FORMS),
    default="function",
    show_default=True,
    help="Form of --format python: a value-and-gradients function; a torch.autograd.Function "
    "(--target torch) or a jax.custom_vjp function (--target jax) whose backward is the "
    "derived program.",
)
@click.option(
    "--name",
    metavar="NAME",
    help="Name of the exported function (default value_and_grad, or fused with --as).",
)
@seed_option
@timeout_option
def derive(
    expr, wrt, vars_, defs, size_rels, spec, fmt, target, as_, name, seed, timeout, order, hessian
) -> None:
    """Derive the gradient of EXPR as a short program, verified before it is shown.

    EXPR is a scalar expression (one gradient per --wrt variable), a vector function of one
    vector variable (its Jacobian), or grad(f, x) / jacobian(f, x) / hessian(f, x); with
    --order 2 (--hessian) the Hessian of a scalar EXPR. The result is checked
    exactly with SymPy at small sizes and numerically with NumPy (complex-step) at larger
    ones; the last line says how. A program that fails the check is never printed.

    \b
    Examples:
      llm-math derive 'cross_entropy(softmax(z), y)' --wrt z \\
          --var 'z=real[n]' --var 'y=simplex[n]'
      llm-math derive 'sum(O * (P @ V))' --wrt Q --wrt K --wrt V --file examples/claims.toml
      llm-math derive 'jacobian(softmax(z), z)' --var 'z=real[n]' --def 'p=softmax(z)'
      llm-math derive 'sum((X @ w - y)**2)' --wrt w --order 2 \\
          --var 'X=real[m, n]' --var 'w=real[n]' --var 'y=real[m]'

    Exit status: 0 verified, 1 the verifier rejected the derivation, 2 bad input (or over
    the time budget), 3 internal error.
    """
    from engine import budget
    from engine.claims import load_declarations, load_size_relations, read_within
    from engine.derive.core import DerivationFailed
    from engine.derive.core import derive as derive_program
    from engine.expr import EngineError
    from engine.parser import build_environment, parse_formula

    seconds = budget_seconds(timeout)

    variables, definitions = read_within(load_declarations, spec, seconds) if spec else ({}, {})
    variables.update(parse_pairs(vars_, "var"))
    definitions.update(parse_pairs(defs, "def"))
    relations = read_within(load_size_relations, spec, seconds) if spec else {}
    relations.update(parse_pairs(size_rels, "size-rel"))
    names = [w for item in wrt for w in item.split(",") if w.strip()] or None
    env = build_environment(variables, definitions, relations)  # parsing is linear in bounded text
    tree = parse_formula(expr, env)

    def job() -> tuple[int, str]:
        try:
            program = derive_program(tree, names, env=env, seed=seed, order=2 if hessian else order)
        except RecursionError:
            raise EngineError("the expression is nested too deeply to differentiate") from None
        except DerivationFailed as e:
            bad = [r for r in e.results.values() if not r.passed]
            lines = ["llm-math: the derived program did not verify; it is not shown."]
            lines += [r.report() for r in bad]
            code = EXIT_ERROR if any(r.verdict == "error" for r in bad) else EXIT_FAIL
            return code, "\n".join(lines)
        return 0, render(program, fmt, target, as_, name)

    code, text = budget.run(job, seconds, what="the derivation")
    if code:
        click.echo(text, err=True)
        sys.exit(code)
    click.echo(text)
