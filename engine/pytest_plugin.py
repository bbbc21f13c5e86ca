"""pytest plugin: claims files (`claims_*.toml`, `*.claims.toml`) run as tests, one per claim.

Enabled when the package is installed (entry point `llm_math` in the `pytest11` group); disable
with `-p no:llm_math`. A claim marked `expect = "fail"` passes when the verifier rejects it (the
file documents a wrong formula and the test checks that it is caught).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.limits import DEFAULT_TIMEOUT

DEFAULT_PATTERNS = ("claims_*.toml", "*.claims.toml")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llm_math", "llm-math-notes claims files")
    group.addoption(
        "--llm-math-seed",
        type=int,
        default=None,
        help="seed for the verifier's sampled points (default: the ini value, else 0)",
    )
    parser.addini(
        "llm_math_claims",
        type="args",
        default=list(DEFAULT_PATTERNS),
        help="file name patterns collected as claims files (default: claims_*.toml *.claims.toml)",
    )
    parser.addini("llm_math_seed", default="0", help="verifier seed for claims files")
    parser.addini(
        "llm_math_timeout",
        default=str(DEFAULT_TIMEOUT),
        help="seconds allowed per claim (0: no limit)",
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    patterns = parent.config.getini("llm_math_claims")
    if file_path.suffix == ".toml" and any(fnmatch.fnmatch(file_path.name, p) for p in patterns):
        return ClaimsFile.from_parent(parent, path=file_path)
    return None


class ClaimsFile(pytest.File):
    """A claims file: its `[[claim]]` tables become test items."""

    def collect(self) -> Iterator[ClaimItem]:
        from engine.claims import load_claims
        from engine.expr import EngineError

        try:
            claims = load_claims(self.path)
        except EngineError as e:
            raise self.CollectError(str(e)) from None
        for claim in claims:
            yield ClaimItem.from_parent(self, name=claim.name, claim=claim)


class ClaimFailure(Exception):
    """A claim whose verdict is not the one its file expects."""


class ClaimItem(pytest.Item):
    """One claim; it passes when the verifier's verdict is the one the file expects."""

    def __init__(self, *, claim: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.claim = claim
        self.add_marker(pytest.mark.llm_math_claim)

    def runtest(self) -> None:
        config = self.config
        seed = config.getoption("llm_math_seed")
        if seed is None:
            seed = int(config.getini("llm_math_seed"))
        timeout = float(config.getini("llm_math_timeout")) or None
        result = self.claim.check(seed=seed, timeout=timeout)
        self.user_properties.append(("verdict", result.verdict))
        expected = self.claim.expect
        if result.verdict == "error":
            raise ClaimFailure(result.report())
        if expected == "pass" and result.verdict != "pass":
            raise ClaimFailure(result.report())
        if expected == "fail" and result.verdict != "fail":
            raise ClaimFailure(
                f'claim {self.name!r} is marked expect = "fail" but the verifier passed it: '
                f"{result.summary()}"
            )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, ClaimFailure):
            return f"{self.claim.equation}\n{excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"claim: {self.name}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "llm_math_claim: a claim collected from a claims file")
