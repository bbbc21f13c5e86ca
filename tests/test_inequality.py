"""Inequality claims: parsing, both routes, equality points, the worst violation, CLI and API."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.claims import load_claims
from engine.parser import ParseError, build_environment, parse_claim, parse_formula
from engine.verify import verify, verify_sides
from engine.verify.sampling import coincidence_points

P = {"p": "simplex[n]", "q": "simplex[n]"}
Z = {"z": "real[n]", "Z": "real[n, m]", "w": "real[m]"}


@pytest.mark.parametrize("rel", ["==", "<=", ">=", "<", ">"])
def test_the_claim_parser_returns_the_relation(rel):
    lhs, got, rhs = parse_claim(f"kl(p, q) {rel} 0", build_environment(P))
    assert got == rel and lhs.shape == () and rhs.shape == ()


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 <= kl(p, q) <= 1", "exactly one relation"),
        ("kl(p, q) != 0", "must be one of"),
        ("kl(p, q) is 0", "must be one of"),
        ("kl(p, q)", "exactly one relation"),
        ("kl(p, q) >= (p < q)", "comparisons inside an expression"),
    ],
)
def test_malformed_claims_are_one_line_errors(text, message):
    with pytest.raises(ParseError, match=message) as info:
        parse_claim(text, build_environment(P))
    assert "\n" not in str(info.value)


def test_a_formula_still_refuses_comparisons():
    with pytest.raises(ParseError, match="comparisons"):
        parse_formula("kl(p, q) >= 0", build_environment(P))


def test_inequality_true_at_equality_points_passes_both_routes():
    """KL(p || q) >= 0 is an equality at p = q; neither route may fail it on rounding there."""
    result = verify("kl(p, q) >= 0", P)
    assert result.passed and result.relation == ">=", result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]
    assert "coincidences" in result.checks[0].detail


def test_rounding_at_an_equality_is_not_a_violation():
    """H(p, p) and H(p) are computed by different formulas: in float64 they differ by rounding
    in either direction, and the claim holds with equality everywhere."""
    env = build_environment(P)
    lhs, rel, rhs = parse_claim("cross_entropy(p, p) >= entropy(p)", env)
    for exact, numeric in ((True, False), (False, True)):
        r = verify_sides(lhs, rhs, env, exact=exact, numeric=numeric, relation=rel)
        assert r.passed, r.report()
    # and a violation of one part in a million is not rounding
    assert verify("cross_entropy(p, p) >= entropy(p) + 0.000001", P).verdict == "fail"


@pytest.mark.parametrize(
    "claim, vars",
    [
        ("kl(p, q) > 0", P),  # equality at p = q
        ("entropy(p) < log(n)", P),  # at the uniform distribution
        ("abs(z @ z) < norm(z) * norm(z)", Z),  # Cauchy-Schwarz at k = q
        ("norm(z) > 0", Z),  # at z = 0
        ("mean(exp(z)) > exp(mean(z))", Z),  # Jensen at constant z
    ],
)
def test_strict_inequalities_fail_where_equality_is_reached(claim, vars):
    result = verify(claim, vars)
    assert result.verdict == "fail", result.report()
    exact, numeric = result.checks
    assert not exact.passed and numeric.passed  # float64 judges strict as non-strict
    assert "judges a strict inequality as non-strict" in result.message
    assert result.counterexample.lhs == pytest.approx(result.counterexample.rhs, abs=1e-12)


@pytest.mark.parametrize(
    "claim, vars",
    [
        ("kl(p, q) <= 0", P),
        ("entropy(p) >= log(n)", P),
        ("logsumexp(z) <= mean(z) + log(n)", Z),
        ("softmax(Z) <= 0.5", Z),
        ("norm(z + z) >= 3 * norm(z)", Z),
    ],
)
def test_reversed_inequalities_fail_in_both_routes(claim, vars):
    result = verify(claim, vars)
    assert result.verdict == "fail"
    assert [c.passed for c in result.checks] == [False, False], result.report()
    assert "violates lhs" in result.report()


def test_the_counterexample_is_the_worst_entry():
    result = verify("z <= 1", Z)
    cx = result.counterexample
    assert result.verdict == "fail" and cx.relation == "<="
    values = [float(Fraction(v)) for v in cx.inputs["z"]]
    assert cx.lhs == pytest.approx(max(values)) and cx.entry == (int(np.argmax(values)),)
    # and the worst point: inputs reach beyond 1 at the "beyond" scale (4)
    assert cx.lhs > 2


def test_sides_broadcast_entry_by_entry():
    assert verify("softmax(Z) <= 1", Z).passed
    assert verify("Z @ w <= norm(Z, axis=1) * norm(w)", Z).passed
    bad = verify("Z <= z", Z)
    assert bad.verdict == "fail" and "do not broadcast" in bad.message


def test_coincidence_points_tie_flatten_and_zero():
    env = build_environment({**P, "z": "real[n]", "X": "spd[n, n]"})
    used = env.vars
    rng = np.random.default_rng(0)
    for exact in (True, False):
        tied, flat, both, zero = coincidence_points(used, {"n": 3}, rng, exact)
        assert np.array_equal(tied["p"], tied["q"])
        assert all(v == flat["p"][0] for v in flat["p"]) and all(
            v == flat["z"][0] for v in flat["z"]
        )
        assert np.array_equal(np.asarray(flat["X"], float), np.eye(3))
        assert np.array_equal(both["p"], both["q"])
        assert not np.any(np.asarray(zero["z"], float))


@settings(max_examples=8, deadline=None)
@given(st.fractions(min_value=-3, max_value=3, max_denominator=4))
def test_verdicts_match_the_mathematics(c):
    """z^2 + c >= 0 for all z iff c >= 0, and z^2 + c > 0 iff c > 0 (equality at z = 0)."""
    vars = {"z": "real[n]"}
    text = f"({c.numerator}) / ({c.denominator})"
    assert verify(f"z * z + {text} >= 0", vars).passed == (c >= 0)
    assert verify(f"z * z + {text} > 0", vars).passed == (c > 0)


def test_result_carries_the_relation_in_json_and_display():
    result = engine.verify("kl(p, q) > 0", P)
    data = result.to_json()
    assert data["relation"] == ">" and data["counterexample"]["relation"] == ">"
    md = result._repr_markdown_()
    assert r"\operatorname{KL}" in md or "kl" in md.lower()
    assert "> 0" in md and "| violates | lhs &gt; rhs |" in md
    assert engine.verify("kl(p, q) >= 0", P).latex.endswith(r"\ge 0")
    assert verify("kl(p, q) == kl(p, q)", P).relation == "=="
    with pytest.raises(AssertionError, match="violates lhs > rhs"):
        engine.assert_claim("kl(p, q) > 0", P)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_one_liner_and_claims_file(tmp_path):
    ok = _cli("verify", "--var", "p=simplex[n]", "--var", "q=simplex[n]", "kl(p, q) >= 0")
    assert ok.returncode == 0 and ok.stdout.startswith("PASS"), ok.stdout + ok.stderr
    bad = _cli("verify", "--json", "--var", "z=real[n]", "logsumexp(z) < mean(z) + log(n)")
    assert bad.returncode == 1
    (data,) = json.loads(bad.stdout)
    assert data["relation"] == "<" and data["verdict"] == "fail"
    path = tmp_path / "claims.toml"
    path.write_text(
        '[vars]\np = "simplex[n]"\n\n[[claim]]\nname = "entropy-bound"\n'
        'equation = "entropy(p) <= log(n)"\n\n[[claim]]\nname = "strict"\n'
        'equation = "entropy(p) < log(n)"\nexpect = "fail"\n'
    )
    claims = load_claims(path)
    assert [c.check().verdict for c in claims] == ["pass", "fail"]
    run = _cli("verify", str(path))
    assert run.returncode == 1 and "PASS entropy-bound" in run.stdout
    assert "FAIL strict" in run.stdout and "violates lhs < rhs" in run.stdout


def test_rounding_bound_of_a_square_root_of_exact_zero_is_zero():
    """norm(x) at x = 0 is sqrt(0): its rounding bound was 0 * log(0) = NaN, and a NaN bound makes
    every comparison false, so `norm(x) > 0` passed. Exactly 0 ** p has no rounding error."""
    from engine.backends import sympy_backend
    from engine.verify.exact import Sides

    env = build_environment({"x": "real[n]"})
    side = parse_formula("norm(x)", env)
    symbols = sympy_backend.symbol_arrays(env.vars, {"n": 2})
    sides = Sides.build(side, side, symbols, {"n": 2})
    lv, le, _, _ = sides.values({s: sympy.Integer(0) for s in symbols["x"].flat})
    assert lv[()] == 0 and le[()] == 0
