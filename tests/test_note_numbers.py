"""Numbers in the notes' prose are computed from the formulas, not typed (issue 11's review:
a typed "≈ 0.44" stood for the true 0.4275)."""

from __future__ import annotations

import re
from pathlib import Path

import mpmath

ROOT = Path(__file__).resolve().parent.parent
CE = (ROOT / "output" / "md" / "cross-entropy.md").read_text()


def _approx(text: str, before: str) -> str:
    m = re.search(re.escape(before) + r"\) \\approx\s+([0-9.]+)", text)
    assert m, before
    return m.group(1)


def test_the_shifted_logsumexp_of_the_figure_is_the_true_value():
    quoted = _approx(CE, r"\log(1 + e^{-1} + e^{-2} + e^{-3.5}")
    true = mpmath.log(1 + mpmath.e**-1 + mpmath.e**-2 + mpmath.e**-3.5)
    assert quoted == mpmath.nstr(true, 4)  # 0.4275
    assert abs(float(quoted) - float(true)) < 5e-5


def test_the_overflow_threshold_is_the_true_value():
    assert "1.8 \\times 10^{308}" in CE
    quoted = _approx(CE, r"\log(1.8 \times 10^{308}")
    true = mpmath.log(mpmath.mpf(2) ** 1024 * (1 - mpmath.mpf(2) ** -53))  # the largest double
    assert quoted == mpmath.nstr(true, 5)  # 709.78


ADAM = (ROOT / "output" / "md" / "adam.md").read_text()


def test_the_adam_idle_jump_is_the_true_value():
    # Every multiple of alpha quoted in the prose is (1 - beta1) / sqrt(1 - beta2), the
    # uncorrected first step, for beta1 = 0.9 and beta2 = 0.999 or 0.95.
    quoted = re.findall(r"([0-9]+\.[0-9]+)\\,\\alpha", ADAM)
    true = {
        mpmath.nstr((1 - mpmath.mpf("0.9")) / mpmath.sqrt(1 - mpmath.mpf(b2)), 3)
        for b2 in ("0.999", "0.95")
    }
    assert true == {"3.16", "0.447"}
    assert len(quoted) == 5
    for q in quoted:
        assert any(abs(float(q) - float(t)) < 5e-3 for t in true), q
    assert {q for q in quoted} == {"3.16", "0.45"}
