"""Note 9 (decoding): every step verifies, wrong variants fail, prose numbers and figure data
are pinned against independent computations (mpmath sums, plain NumPy top-k/top-p)."""

from __future__ import annotations

import re
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from note_support import NoteUnderTest

from engine.notes import Step

UNDER_TEST = NoteUnderTest("decoding")
dec = UNDER_TEST.module
NOTE = UNDER_TEST.note
ENV = UNDER_TEST.env
STEPS = UNDER_TEST.steps
check = UNDER_TEST.check
labelled = UNDER_TEST.labelled
ROOT = Path(__file__).resolve().parent.parent


def test_note_is_well_formed():
    assert NOTE.problems() == []
    assert len(STEPS) == 7
    assert [f.name for f in NOTE.figures()] == ["truncation", "tail"]


@pytest.mark.parametrize("step", STEPS, ids=[s.label or str(k) for k, s in enumerate(STEPS)])
def test_every_step_verifies(step):
    result = check(step)
    assert result.passed, result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]


WRONG = {
    # renormalizing by the dropped mass instead of the kept one
    "trunc-softmax": "p_K / (1 - M) == softmax(z_K)",
    # total variation without the factor 1/2 counted on both sides
    "tv": "(sum(abs(p_K - q)) + sum(p_D)) / 2 == (1 - M) / 2",
    # KL with the wrong sign
    "kl-trunc": "sum(q * log(q / p_K)) == log(M)",
    # the grouping rule without the entropy of the coin
    "entropy-split": "H_p == M * entropy(q) + (1 - M) * entropy(q_D)",
    # the rate with T^3 (the entropy's rate has T^3, the mass's has T^2)
    "tail-dt": "grad(1 - M_T, T) == M_T * (1 - M_T) * (mu_K - mu_D) / T**3",
    # an off-by-one in the length
    "avoid": (dec.avoid_probability, (1 - dec.b) ** (dec.L + 1)),
}


@pytest.mark.parametrize("label", sorted(WRONG))
def test_wrong_variant_of_a_key_step_fails(label):
    wrong = check(Step(WRONG[label], "deliberately wrong", label=label))
    assert wrong.verdict == "fail", wrong.report()


# ---------------------------------------------------------------- by hand / independent routes


def test_avoid_probability_by_hand():
    half = sympy.Rational(1, 2)
    assert dec.avoid_probability({"L": 1, "b": half}) == half
    # L = 2 through the previous-token dependence: start (1/3, 1/6, ...), then rows summing
    # to 1/2 of good mass after either good token: 1/3 * 1/2 + 1/6 * 1/2 = 1/4
    assert dec.avoid_probability({"L": 2, "b": half}) == sympy.Rational(1, 4)
    # the sampler really depends on the previous token
    assert dec.next_token_probs(0, half) != dec.next_token_probs(1, half)
    for prev in (None, 0, 1):
        row = dec.next_token_probs(prev, sympy.Rational(1, 7))
        assert sum(row) == 1
        assert sum(row[i] for i in dec.LOW) == sympy.Rational(1, 7)


def _top_k_numpy(p: np.ndarray, k: int) -> np.ndarray:
    """Top-k by sorting and masking, written without the note's formulas."""
    order = np.argsort(-p, kind="stable")
    q = np.zeros_like(p)
    q[order[:k]] = p[order[:k]]
    return q / q.sum()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(3, 30), st.data())
def test_tv_and_kl_of_top_k_by_sorting(seed, n, data):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(n, 0.5))
    p = np.maximum(p, 1e-12)
    p /= p.sum()
    k = data.draw(st.integers(1, n - 1))
    q = _top_k_numpy(p, k)
    kept = np.sort(p)[::-1][:k].sum()
    assert 0.5 * np.abs(p - q).sum() == pytest.approx(1 - kept, abs=1e-12)
    on = q > 0
    assert np.sum(q[on] * np.log(q[on] / p[on])) == pytest.approx(-np.log(kept), abs=1e-10)
    # and the note's formulas on the sorted blocks agree
    z = np.sort(np.log(p))[::-1]
    assert dec.kept_mass(z, k) == pytest.approx(kept, rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 12))
def test_tail_mass_never_decreases_with_temperature(seed, n):
    rng = np.random.default_rng(seed)
    z = np.sort(rng.normal(0, 3, n))[::-1]
    temps = np.geomspace(0.05, 50, 200)
    for k in range(1, n):
        tail = []
        for t in temps:
            w = np.exp((z - z.max()) / t)
            tail.append(w[k:].sum() / w.sum())
        assert np.all(np.diff(tail) >= -1e-15)


_figure_context = UNDER_TEST.figure_context


def test_tail_rate_matches_finite_differences_and_is_positive():
    ctx = _figure_context()
    _, rate = ctx.step("tail-dt")
    z = dec.ZIPF_Z["flat"]
    vals = {"z_K": z[: dec.TOP_K], "z_D": z[dec.TOP_K :]}
    for t in (0.3, 1.0, 2.5):
        h = 1e-5
        up = 1 - float(ctx.evaluate("M_T", {**vals, "T": t + h}))
        down = 1 - float(ctx.evaluate("M_T", {**vals, "T": t - h}))
        analytic = float(ctx.evaluate(rate, {**vals, "T": t}))
        assert analytic > 0
        assert analytic == pytest.approx((up - down) / (2 * h), rel=1e-6)


# ---------------------------------------------------------------- numbers in the prose

mpmath.mp.dps = 30


def _zipf_mp(s: float, n: int = 1000) -> list:
    w = [mpmath.mpf(i) ** -mpmath.mpf(s) for i in range(1, n + 1)]
    total = mpmath.fsum(w)
    return [x / total for x in w]


def _entropy_mp(p) -> mpmath.mpf:
    return -mpmath.fsum(x * mpmath.log(x) for x in p)


@pytest.mark.parametrize("name", ["peaked", "flat"])
def test_zipf_numbers_against_mpmath(name):
    p = _zipf_mp(dec.ZIPF[name])
    kept = mpmath.fsum(p[: dec.TOP_K])
    assert float(kept) == pytest.approx(dec.TOPK_MASS[name], rel=1e-12)
    cum, k = mpmath.mpf(0), 0
    while cum < dec.TOP_P:
        cum += p[k]
        k += 1
    assert k == dec.TOPP_SIZE[name]
    assert float(_entropy_mp(p)) == pytest.approx(dec.FULL_H[name], rel=1e-12)
    q = [x / cum for x in p[:k]]
    assert float(_entropy_mp(q)) == pytest.approx(dec.TOPP_H[name], rel=1e-12)


def test_prose_quotes_the_computed_numbers():
    md = (ROOT / "output" / "md" / "decoding.md").read_text()
    peaked, flat = _zipf_mp(dec.ZIPF["peaked"]), _zipf_mp(dec.ZIPF["flat"])
    m = re.search(r"Top-(\d+) keeps ([0-9.]+) of the mass .*? only ([0-9.]+) in the flat", md)
    assert m and int(m.group(1)) == dec.TOP_K
    assert m.group(2) == mpmath.nstr(mpmath.fsum(peaked[: dec.TOP_K]), 2)
    assert m.group(3) == mpmath.nstr(mpmath.fsum(flat[: dec.TOP_K]), 2)
    avoid = (1 - mpmath.mpf(dec.AVOID_B)) ** dec.AVOID_L
    mant, exp = mpmath.nstr(avoid, 2, min_fixed=1, max_fixed=0).split("e")
    assert f"{mant} \\times 10^{{{int(exp)}}}" in md
    assert f"{float(-mpmath.log(dec.TOP_P)):.3f}" in md


def test_every_decimal_in_the_prose_is_computed():
    from prose_decimals import prose_decimals

    md = (ROOT / "output" / "md" / "decoding.md").read_text()
    computed = {f"{dec.AVOID_B:g}", f"{dec.TOP_P:g}", f"{-np.log(dec.TOP_P):.3f}"}
    computed |= {f"{s:g}" for s in dec.ZIPF.values()}
    for name in dec.ZIPF:
        computed |= {f"{dec.TOPK_MASS[name]:.2f}", f"{dec.TOPP_H[name]:.2f}"}
        computed.add(f"{dec.FULL_H[name]:.2f}")
    computed.add(f"{dec.AVOID_P:.1e}".split("e")[0])
    assert prose_decimals(md) <= computed, prose_decimals(md) - computed
