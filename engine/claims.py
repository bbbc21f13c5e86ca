"""Claims files: TOML with [vars], [defs] and [[claim]] tables, checked claim by claim."""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from engine import budget
from engine.budget import check_entries, result_within
from engine.expr import EngineError
from engine.parser import build_environment, parse_claim
from engine.verify import Result, verify_sides

MAX_FILE_BYTES = 4 * 2**20  # a claims or spec file is refused above 4 MiB, before it is read
IN_PROCESS_BYTES = 64 * 2**10  # larger claims files are read in a budgeted worker
MAX_TOML_NESTING = 100  # dots, brackets and braces outside strings on one line of a claims file
_TOML_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'')


T = TypeVar("T")


class ClaimsFileError(EngineError):
    """A claims file that cannot be read as a whole."""


@dataclass(frozen=True)
class Claim:
    """One named equation to check, with the variables and definitions it may use."""

    name: str
    equation: str
    vars: Mapping[str, str] = field(default_factory=dict)
    defs: Mapping[str, str] = field(default_factory=dict)
    expect: str = "pass"  # what the example file documents: "pass" or "fail"
    sizes: Mapping[str, str] = field(default_factory=dict)  # [sizes] relations, d = "h * dh"

    def check(
        self,
        seed: int = 0,
        numeric_sizes: Mapping[str, int] | None = None,
        timeout: float | None = None,
    ) -> Result:
        """Verify the claim; with `timeout`, in a worker stopped after that many seconds.

        Parsing (linear in the text, which is bounded) runs here; the checks, which SymPy and
        mpmath can make arbitrarily slow, run in the worker.
        """
        job = self.job(seed, numeric_sizes)
        if isinstance(job, Result):
            return job
        return result_within(job, self.name, timeout, "the claim")

    def job(
        self, seed: int = 0, numeric_sizes: Mapping[str, int] | None = None
    ) -> Callable[[], Result] | Result:
        """The check as a callable for a worker, after parsing here; an `error` Result if the
        claim does not parse."""
        try:
            env = build_environment(self.vars, self.defs, self.sizes)
            lhs, relation, rhs = parse_claim(self.equation, env)
            check_entries((lhs, rhs), numeric_sizes)
        except EngineError as e:
            return Result(self.name, "error", str(e))

        def job() -> Result:
            return verify_sides(
                lhs,
                rhs,
                env,
                seed=seed,
                name=self.name,
                numeric_sizes=numeric_sizes,
                relation=relation,
            )

        return job


def check_claims(
    claims: list[Claim],
    seed: int = 0,
    numeric_sizes: Mapping[str, int] | None = None,
    timeout: float | None = None,
    parallel: int = 1,
    done: Callable[[int, Result], None] | None = None,
) -> list[Result]:
    """Every claim's Result, in the claims' order, checking up to `parallel` at once (each in
    its own forked worker within `timeout`). `done(i, result)` is called as claim i finishes.
    The results do not depend on `parallel`: each claim's points come from `seed` alone."""
    if parallel <= 1:
        results = []
        for i, claim in enumerate(claims):
            results.append(claim.check(seed, numeric_sizes, timeout))
            if done:
                done(i, results[-1])
        return results
    prepared = [claim.job(seed, numeric_sizes) for claim in claims]
    results: list[Result | None] = [p if isinstance(p, Result) else None for p in prepared]
    todo = [i for i, p in enumerate(prepared) if not isinstance(p, Result)]
    if done:
        for i, r in enumerate(results):
            if r is not None:
                done(i, r)

    def finished(k: int, outcome: tuple[bool, object]) -> None:
        i = todo[k]
        results[i] = _as_result(claims[i].name, *outcome)
        if done:
            done(i, results[i])

    jobs = [prepared[i] for i in todo]
    budget.run_all(jobs, timeout, "the claim", parallel, done=finished)  # type: ignore[arg-type]
    return results  # type: ignore[return-value]


def _as_result(name: str, ok: bool, value: object) -> Result:
    if ok:
        return value  # type: ignore[return-value]
    if isinstance(value, budget.BudgetExceeded):
        return Result(name, "error", str(value))
    raise value  # type: ignore[misc] - an engine error or bug, as Claim.check would raise it


def read_text_bounded(path: str | Path, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes, checked before it is read.

    Devices (/dev/zero), FIFOs and directories are refused without reading from them: the file
    is opened without blocking and inspected with fstat first.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError) as e:
        raise ClaimsFileError(f"cannot read {path}: {_reason(e)}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ClaimsFileError(f"cannot read {path}: not a regular file")
        raise ClaimsFileError(f"{path} is too large ({info.st_size} bytes, limit {limit} bytes)")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise ClaimsFileError(f"cannot read {path}: {_reason(e)}") from None
    if len(data) > limit:
        raise ClaimsFileError(f"{path} is too large (over {limit} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ClaimsFileError(f"cannot read {path}: not UTF-8 text") from None


def _reason(e: Exception) -> str:
    return e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__


def _check_nesting(text: str, where: str) -> None:
    """Refuse a line nested past MAX_TOML_NESTING before tomllib sees it: a 100,000-part dotted
    key costs tomllib quadratic time and memory (minutes, gigabytes)."""
    for number, line in enumerate(text.splitlines(), 1):
        bare = _TOML_STRING.sub('""', line)
        if bare.count(".") + bare.count("[") + bare.count("{") > MAX_TOML_NESTING:
            raise ClaimsFileError(
                f"{where}: line {number} is nested too deeply (over {MAX_TOML_NESTING} levels)"
            )


def _read_toml(path: str | Path) -> dict:
    text = read_text_bounded(path)
    _check_nesting(text, str(path))
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ClaimsFileError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise ClaimsFileError(f"{path}: TOML nested too deeply") from None
    except MemoryError:
        raise ClaimsFileError(
            f"{path}: TOML too deeply nested or too large (out of memory)"
        ) from None


def read_within(read: Callable[[str | Path], T], path: str | Path, timeout: float | None) -> T:
    """`read(path)`: here for a file of at most IN_PROCESS_BYTES, in a budgeted worker above.

    tomllib is linear on a small file once deep nesting is refused (_check_nesting); a large one
    is read under the time and memory budget, without a fork's cost for every small file.
    """
    try:
        small = os.stat(path).st_size <= IN_PROCESS_BYTES
    except (OSError, ValueError):
        small = True  # `read` reports the problem in one line
    if small or timeout is None:
        return read(path)
    return budget.run(lambda: read(path), timeout, what="reading the file")


def load_claims(path: str | Path) -> list[Claim]:
    """Read a claims file; raise ClaimsFileError with a one-line reason if it is malformed."""
    return list(claims_from_table(_read_toml(path), str(path)))


def load_declarations(path: str | Path) -> tuple[dict[str, str], dict[str, str]]:
    """The [vars] and [defs] tables of a claims or spec file (its claims, if any, unread)."""
    return declarations(_read_toml(path), str(path))


def declarations(data: Mapping, where: str) -> tuple[dict[str, str], dict[str, str]]:
    unknown = set(data) - {"vars", "defs", "claim", "sizes"}
    if unknown:
        raise ClaimsFileError(f"{where}: unknown table [{sorted(unknown)[0]}]")
    vars_ = _string_table(data.get("vars", {}), f"{where}: [vars]")
    defs = _string_table(data.get("defs", {}), f"{where}: [defs]")
    return vars_, defs


def claims_from_table(data: Mapping, where: str = "claims") -> Iterator[Claim]:
    vars_, defs = declarations(data, where)
    claims = data.get("claim", [])
    if not isinstance(claims, list) or not claims:
        raise ClaimsFileError(f"{where}: no [[claim]] entries")
    seen: set[str] = set()
    for i, c in enumerate(claims, 1):
        if not isinstance(c, dict):
            raise ClaimsFileError(f"{where}: claim {i} is not a table")
        name = c.get("name", f"claim-{i}")
        equation = c.get("equation")
        if not isinstance(name, str) or not isinstance(equation, str):
            raise ClaimsFileError(f"{where}: claim {i} needs a name and an equation (strings)")
        extra = set(c) - {"name", "equation", "expect", "note"}
        if extra:
            raise ClaimsFileError(f"{where}: claim {name!r} has unknown key {sorted(extra)[0]!r}")
        if name in seen:
            raise ClaimsFileError(f"{where}: claim name {name!r} is used twice")
        seen.add(name)
        expect = c.get("expect", "pass")
        if expect not in ("pass", "fail"):
            raise ClaimsFileError(f"{where}: claim {name!r}: expect must be 'pass' or 'fail'")
        yield Claim(name, equation, vars_, defs, expect, size_relations(data, where))


def size_relations(data: Mapping, where: str) -> dict[str, str]:
    """The [sizes] table of a claims or spec file: relations such as d = "h * dh"."""
    return _string_table(data.get("sizes", {}), f"{where}: [sizes]")


def load_size_relations(path: str | Path) -> dict[str, str]:
    """The [sizes] table of a claims or spec file."""
    return size_relations(_read_toml(path), str(path))


def _string_table(table, where: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise ClaimsFileError(f"{where} must be a table")
    for k, v in table.items():
        if not isinstance(v, str):
            raise ClaimsFileError(f"{where}: {k} must be a string")
    return dict(table)
