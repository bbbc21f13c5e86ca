"""Note 10 (hallucination): every step verifies, wrong variants fail, and the bounds and prose
numbers are pinned against small exact enumerations (fractions) and mpmath."""

from __future__ import annotations

import itertools
import re
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from note_support import NoteUnderTest

from engine.notes import Step

UNDER_TEST = NoteUnderTest("hallucination")
hal = UNDER_TEST.module
NOTE = UNDER_TEST.note
STEPS = UNDER_TEST.steps
check = UNDER_TEST.check
ROOT = Path(__file__).resolve().parent.parent
MD = ROOT / "output" / "md" / "hallucination.md"


def test_note_is_well_formed():
    assert NOTE.problems() == []
    assert len(STEPS) == 8
    assert [f.name for f in NOTE.figures()] == ["accumulation"]


@pytest.mark.parametrize("step", STEPS, ids=[s.label or str(k) for k, s in enumerate(STEPS)])
def test_every_step_verifies(step):
    result = check(step)
    assert result.passed, result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]


c, t, eps, L = hal.c, hal.t, hal.eps, hal.L
WRONG = {
    # the KL terms without the -1 (the sum of p - f is what makes it an identity)
    "kl-terms": "sum(f * log(f)) - sum(f * log(p)) == sum(f * (p / f - log(p / f)))",
    # the missing mass with N - 1 (that is the singleton fraction)
    "gt-missing": (hal.expected_missing_mass, hal._closed(1, 1)),
    # the singleton fraction with exponent N (that is the missing mass)
    "gt-singletons": (hal.expected_singleton_fraction, hal._closed(0, 1)),
    # the bias with pi instead of pi^2
    "gt-bias": (hal.good_turing_bias, hal._closed(1, 1)),
    # the penalty t instead of t / (1 - t)
    "score": (
        lambda v: v["c"] - (1 - v["c"]) * v["t"],
        (c - t) / (1 - t),
    ),
    # the remainder from j = 1
    "expansion": (
        (1 - eps) ** L - (1 - L * eps),
        sympy.Sum(sympy.binomial(L, hal.j) * (-eps) ** hal.j, (hal.j, 1, L)),
    ),
    # m rivals counted as one
    "eps-sigmoid": "eps == sigmoid(-Delta / T)",
    # the rate with the wrong power of T
    "deps-dt": "grad(eps, T) == eps * (1 - eps) * Delta / T",
}


@pytest.mark.parametrize("label", sorted(WRONG))
def test_wrong_variant_of_a_key_step_fails(label):
    wrong = check(Step(WRONG[label], "deliberately wrong", label=label))
    assert wrong.verdict == "fail", wrong.report()


# ---------------------------------------------------------------- Good-Turing, exactly


def _fractions_gt(pi: tuple[Fraction, ...], n_draws: int) -> tuple[Fraction, Fraction]:
    """E[M_0] and E[N_1 / N] by enumeration with Python fractions (no SymPy)."""
    missing = singles = Fraction(0)
    for seq in itertools.product(range(len(pi)), repeat=n_draws):
        prob = Fraction(1)
        for x in seq:
            prob *= pi[x]
        missing += prob * sum(pi[x] for x in range(len(pi)) if x not in seq)
        singles += prob * Fraction(sum(1 for x in set(seq) if seq.count(x) == 1), n_draws)
    return missing, singles


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.integers(1, 9), min_size=2, max_size=4),
    st.integers(1, 6),
)
def test_good_turing_bias_is_between_0_and_1_over_n(weights, n_draws):
    pi = tuple(Fraction(w, sum(weights)) for w in weights)
    missing, singles = _fractions_gt(pi, n_draws)
    assert missing == sum(p * (1 - p) ** n_draws for p in pi)
    assert singles == sum(p * (1 - p) ** (n_draws - 1) for p in pi)
    assert 0 <= singles - missing <= Fraction(1, n_draws)


def test_note_enumeration_agrees_with_fractions():
    a, b = sympy.Rational(1, 3), sympy.Rational(2, 5)
    values = {"a": a, "b": b, "N": sympy.Integer(4)}
    pi = tuple(Fraction(int(x.p), int(x.q)) for x in hal.fact_distribution(values))
    missing, singles = _fractions_gt(pi, 4)
    assert hal.expected_missing_mass(values) == sympy.Rational(
        missing.numerator, missing.denominator
    )
    assert hal.expected_singleton_fraction(values) == sympy.Rational(
        singles.numerator, singles.denominator
    )


# ---------------------------------------------------------------- grading


def test_answering_beats_abstaining_exactly_above_the_threshold():
    grid = [Fraction(k, 20) for k in range(1, 20)]
    for conf, thr in itertools.product(grid, grid):
        score = conf * 1 + (1 - conf) * (-thr / (1 - thr))
        assert (score > 0) == (conf > thr)
        assert (score == 0) == (conf == thr)
    # binary grading (t = 0): every guess has positive expected score
    assert all(conf * 1 + (1 - conf) * 0 > 0 for conf in grid)


# ---------------------------------------------------------------- likelihood


def test_maximum_likelihood_matches_the_corpus_frequencies():
    f = hal.CORPUS
    grid = np.linspace(0.001, 0.999, 999)
    ce = [-(f[0] * np.log(x) + f[1] * np.log(1 - x)) for x in grid]
    best = grid[int(np.argmin(ce))]
    assert best == pytest.approx(f[0], abs=1e-3)
    assert min(ce) == pytest.approx(hal.CE_ML, abs=1e-6)
    assert hal.CE_TRUTHFUL > hal.CE_ML


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 8))
def test_kl_terms_are_never_negative(seed, n):
    rng = np.random.default_rng(seed)
    f, p = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(n))
    x = p / f
    assert np.all(x - 1 - np.log(x) >= -1e-15)


# ---------------------------------------------------------------- accumulation


def test_first_order_bounds_on_the_no_error_probability():
    for k in range(1, 100):
        e = mpmath.mpf(k) / 100
        for length in (1, 2, 5, 20, 200):
            value = (1 - e) ** length
            assert 1 - length * e <= value <= mpmath.exp(-length * e)


def test_prose_numbers():
    md = MD.read_text()
    mpmath.mp.dps = 30
    f = [mpmath.mpf(7) / 10, mpmath.mpf(3) / 10]
    ce_ml = -sum(x * mpmath.log(x) for x in f)
    ce_truth = -(f[0] * mpmath.log(mpmath.mpf(99) / 100) + f[1] * mpmath.log(mpmath.mpf(1) / 100))
    assert f"cross-entropy of {mpmath.nstr(ce_ml, 3)} nats" in md
    assert f"higher cross-entropy {mpmath.nstr(ce_truth, 4)}" in md
    m, gap = mpmath.mpf(hal.RIVALS), mpmath.mpf(hal.GAP)
    for temp in hal.TEMPS:
        x = m * mpmath.exp(-gap / temp) / (1 + m * mpmath.exp(-gap / temp))
        assert float(x) == pytest.approx(hal.EPS_AT[temp], rel=1e-12)
        no_error = (1 - x) ** hal.LENGTH
        assert float(no_error) == pytest.approx(hal.NO_ERROR_AT[temp], rel=1e-10)
    quoted = re.search(r"tokens the chance of no error is then ([0-9., e-]+) \(", md)
    assert quoted
    assert quoted.group(1).split(", ") == [f"{hal.NO_ERROR_AT[x]:.2g}" for x in hal.TEMPS]
    # the smallest eps is printed as a power of ten: its mantissa and exponent from mpmath
    low = min(hal.TEMPS)
    e_low = m * mpmath.exp(-gap / low) / (1 + m * mpmath.exp(-gap / low))
    mantissa, exponent = mpmath.nstr(e_low, 2, min_fixed=1, max_fixed=0).split("e")
    assert f"{mantissa} \\times 10^{{{int(exponent)}}}" in md


def test_every_decimal_in_the_prose_is_computed_or_quoted():
    from prose_decimals import prose_decimals

    computed = {f"{hal.CE_ML:.3f}", f"{hal.CE_TRUTHFUL:.3f}"}
    computed |= {f"{x:g}" for x in hal.TEMPS}
    computed |= {f"{x:.2g}" for x in hal.NO_ERROR_AT.values()}
    for e in hal.EPS_AT.values():
        computed.add(f"{e:.2g}" if e >= 0.01 else f"{e:.1e}".split("e")[0])
    computed.add(f"{hal.KV_ROOT:.2g}")
    quoted = {"0.99"}  # Kalai & Vempala's confidence level, marked as a quotation
    assert "The paper's introduction quotes the" in MD.read_text()
    assert "is quoted here with its error terms" in MD.read_text()
    found = prose_decimals(MD.read_text())
    assert found <= computed | quoted, found - computed - quoted


def test_the_quoted_introduction_form_is_theorem_1_at_delta_one_hundredth():
    # Theorem 1's terms 3 e^{-m} / delta and sqrt(6 ln(6 / delta) / N) at delta = 1/100 give the
    # introduction's 300 |facts| / |possible hallucinations| and (at most) 7 / sqrt(N)
    delta = sympy.Rational(1, 100)
    assert 3 / delta == 300
    root = sympy.sqrt(6 * sympy.log(6 / delta))
    assert root < 7 and abs(float(root) - hal.KV_ROOT) < 1e-12
    assert f"{hal.KV_ROOT:.2g}" in MD.read_text()
