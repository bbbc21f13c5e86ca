"""The adversarial corpus: every true claim PASSes and every false one FAILs (tests/corpus/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.claims import load_claims

CORPUS = Path(__file__).parent / "corpus"
CLAIMS = [c for path in sorted(CORPUS.glob("*.toml")) for c in load_claims(path)]


def test_the_corpus_is_as_large_as_promised():
    # issue: at least 100 true and 70 false claims across the classes
    assert sum(c.expect == "pass" for c in CLAIMS) >= 100
    assert sum(c.expect == "fail" for c in CLAIMS) >= 70
    classes = {c.name.split("-")[0] for c in CLAIMS}
    assert {"clamp", "kink", "mag", "hess", "dec", "sat", "onehot", "zero", "attn2"} <= classes


@pytest.mark.parametrize("claim", CLAIMS, ids=[c.name for c in CLAIMS])
def test_corpus_claim(claim):
    result = claim.check(seed=0)
    assert result.verdict == claim.expect, result.report()
