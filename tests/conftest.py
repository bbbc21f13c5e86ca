"""pytest configuration: hypothesis runs derandomized in CI, so a CI verdict can be reproduced."""

from __future__ import annotations

import importlib
import os
import time

import pytest
from hypothesis import settings

# Locally, property tests explore new random examples on every run (that is how the kink bug in
# SymPy's derivative of sign(s / (2 + sin(s))) was found); in CI the examples are fixed by the
# test's own source, so a green or red CI run means the same on a rerun.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def slow_exact_route(monkeypatch):
    """Make the verifier's exact route hang on claims that use a variable named Q (the audit's
    hang inputs are now decided in milliseconds, so the time budget needs a hang of its own).
    The sleep runs inside engine/verify/exact.py's exact_check, so the worker's stack names the
    exact route, as a real hang there would; the budget's forked worker inherits the patch."""
    exact = importlib.import_module("engine.verify.exact")  # engine.verify is the function

    real = exact.exact_point

    def slow(used, *args, **kwargs):
        if "Q" in used:
            time.sleep(3600)
        return real(used, *args, **kwargs)

    monkeypatch.setattr(exact, "exact_point", slow)


@pytest.fixture
def slow_derivation(monkeypatch):
    """Make derive's reverse mode hang (inside engine/derive/reverse.py's reverse)."""
    reverse = importlib.import_module("engine.derive.reverse")

    real = reverse._pullback

    def slow(*args, **kwargs):
        time.sleep(3600)
        return real(*args, **kwargs)

    monkeypatch.setattr(reverse, "_pullback", slow)
