"""Command-line options shared by `verify` and `derive`: variables, definitions, seed."""

from __future__ import annotations

import click

var_option = click.option(
    "--var",
    "vars_",
    multiple=True,
    metavar="NAME=TYPE",
    help="Declare a variable, e.g. --var 'z=real[n]'. Types: real, positive, unit, "
    "simplex, onehot.",
)
def_option = click.option(
    "--def",
    "defs",
    multiple=True,
    metavar="NAME=EXPR",
    help="Let-bind a definition, e.g. --def 'p=softmax(z)'; results use its name.",
)
seed_option = click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seed for the verifier's random test points.",
)


def parse_pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    """`('z=real[n]', ...)` -> `{'z': 'real[n]'}`; a malformed item is a usage error."""
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=f"--{what}")
        out[name.strip()] = value.strip()
    return out
