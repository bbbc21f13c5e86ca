"""Command-line options shared by `verify` and `derive`, and their message and JSON helpers."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import click

from engine.budget import DEFAULT_TIMEOUT

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


def _finite_timeout(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds")
    return value


def budget_seconds(timeout: float) -> float | None:
    """The --timeout value as `engine.budget.run` takes it (0 means no budget)."""
    return None if timeout == 0 else timeout


timeout_option = click.option(
    "--timeout",
    default=DEFAULT_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=0, max=86_400),
    metavar="SECONDS",
    callback=_finite_timeout,
    help="Time budget of each claim, derive or note step, in seconds; past it the check is "
    "stopped and reported as an error naming the stage that ran out. 0: no budget.",
)


MESSAGE_LIMIT = 300  # characters of one message line
TOKEN_LIMIT = 60  # characters of one unbroken run (a long literal or name) in a message


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` with long unbroken runs and, past `limit` characters, its middle elided."""

    def cut(m: re.Match) -> str:
        run = m.group(0)
        return f"{run[: TOKEN_LIMIT - 20]}...[{len(run)} characters]...{run[-8:]}"

    text = re.sub(rf"\S{{{TOKEN_LIMIT + 1},}}", cut, text)
    if len(text) <= limit:
        return text
    head, tail = (2 * limit) // 3, limit // 4
    return f"{text[:head]} ...[{len(text) - head - tail} characters]... {text[-tail:]}"


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float as a string ("inf", "-inf", "nan"): strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if value != value else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Strict JSON text (`allow_nan=False` after `strict_json`), indented."""
    return json.dumps(strict_json(value), indent=2, allow_nan=False)
