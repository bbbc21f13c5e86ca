"""Command-line options shared by `verify` and `derive` (formulas that begin with `-` too), and
their message and JSON helpers."""

from __future__ import annotations

import contextlib
import gc
import json
import math
import os
import re
from collections.abc import Iterator
from typing import Any

import click

from engine.limits import DEFAULT_TIMEOUT

var_option = click.option(
    "--var",
    "vars_",
    multiple=True,
    metavar="NAME=TYPE",
    help="Declare a variable, e.g. --var 'z=real[n]'. Types: real, positive, unit, "
    "simplex, onehot, mask (0/1 entries), symmetric, spd, orthogonal (square: 'spd[n, n]'), "
    "index (integer labels: 'index[B, V]' is B positions in 0..V-1).",
)
def_option = click.option(
    "--def",
    "defs",
    multiple=True,
    metavar="NAME=EXPR",
    help="Let-bind a definition, e.g. --def 'p=softmax(z)'; results use its name.",
)
size_rel_option = click.option(
    "--size-rel",
    "size_rels",
    multiple=True,
    metavar="NAME=EXPR",
    help="Declare a relation between sizes, e.g. --size-rel 'd=h*dh'; the verifier picks h and "
    "dh and sets d = h * dh.",
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


class FormulaCommand(click.Command):
    """A command whose argument may begin with `-`, as a formula can: `derive '-sum(z * z)'`.

    Click would read `-sum(z * z)` as the short options -s, -u, -m, ... Here a word that starts
    with `-` and is neither one of the command's options nor an option's value is passed as the
    argument (as if written after `--`); an unknown `--name` still gets click's own error.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, formula_arguments(self.get_params(ctx), args))


_OPTION_LIKE = re.compile(r"--[A-Za-z][\w-]*(=.*)?", re.DOTALL)


def formula_arguments(params: list[click.Parameter], args: list[str]) -> list[str]:
    """`args` with each word that is a formula beginning with `-` moved after a `--`."""
    takes_value: dict[str, bool] = {}
    for p in params:
        if isinstance(p, click.Option):
            for opt in p.opts + p.secondary_opts:
                takes_value[opt] = not p.is_flag and not p.count
    kept: list[str] = []
    formulas: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            kept += args[i:]
            break
        name = word.split("=", 1)[0]
        if word.startswith("-") and len(word) > 1 and name not in takes_value:
            (kept if _OPTION_LIKE.fullmatch(word) else formulas).append(word)
        else:
            kept.append(word)
            if takes_value.get(name) and "=" not in word and i + 1 < len(args):
                i += 1
                kept.append(args[i])  # the option's value, whatever it looks like
        i += 1
    if not formulas:
        return list(args)
    if "--" in kept:
        at = kept.index("--") + 1
        return kept[:at] + formulas + kept[at:]
    return kept + ["--", *formulas]


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


def default_jobs() -> int:
    """How many checks run at once unless -j says: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


jobs_option = click.option(
    "-j",
    "--jobs",
    default=None,
    type=click.IntRange(min=1, max=256),
    metavar="N",
    help="Check up to N claims or steps at once, each in its own process (default: the number "
    "of cores). The output does not depend on N.",
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


@contextlib.contextmanager
def loading_the_engine() -> Iterator[None]:
    """Import the engine (SymPy, NumPy) with the cyclic garbage collector paused, then freeze
    what was loaded.

    Importing SymPy makes a few hundred thousand objects that live until the command exits; the
    collector would run hundreds of times over them while they load, and again at exit.
    Frozen (`gc.freeze`), they are skipped by every later collection, in this process and in the
    workers forked from it, whose pages then stay shared. The collector is back on for the
    command itself. Only the first time in a process (a test runs many commands in one): what is
    frozen is never collected.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
        if enabled:
            gc.enable()
