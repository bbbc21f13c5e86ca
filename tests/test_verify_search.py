"""The violation search for inequalities (engine/verify/search.py): wrong claims that fail only
in a limit or in a thin region are found, right strict ones are not failed at its far points,
and its points stay of their types."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from engine.parser import build_environment, parse_formula
from engine.types import TYPES
from engine.verify import inequality as inequality_module
from engine.verify import verify
from engine.verify.search import violation_search

S = {"s": "real"}
T = {"t": "positive"}
X = {"x": "real[n]"}

# (claim, variables): each fails only far out or within a thin region; the ordinary points and
# the claim's constants never reach it.
WRONG = [
    ("sigmoid(s) <= 0.999", S),  # s > 6.9
    ("softplus(s) >= 1e-6", S),  # s < -13.8
    ("log(t) >= -20", T),  # t < 2e-9
    ("t / (1 + t) <= 0.9999", T),  # t > 9999
    ("max(softmax(x)) <= 0.9999", X),  # logits spread past about 10
    ("entropy(softmax(x)) >= 1e-3", X),
    ("log(1 + t) <= 3 * t ** 0.1", T),  # 300 < t < 5e7
    ("silu(s) >= -0.2784", S),  # within 0.02 of s = -1.2785 (silu's minimum is -0.27846)
    ("sin(s) <= 0.99999", S),  # within 0.0045 of pi / 2
    ("grad(softplus(s), s) <= 0.999", S),  # a derivative: searched at few input entries
    ("grad(silu(s), s) >= -0.09", S),  # silu' has its minimum -0.0998 at s = -2.4
    ("grad(cross_entropy(softmax(x), y), x) >= -0.9999", {**X, "y": "onehot[n]"}),
]


@pytest.mark.parametrize("claim,variables", WRONG, ids=[c for c, _ in WRONG])
def test_wrong_in_a_limit_or_a_thin_region_fails(claim, variables):
    result = verify(claim, variables)
    assert result.verdict == "fail", result.report()


@pytest.mark.parametrize("claim,variables", WRONG[:4], ids=[c for c, _ in WRONG[:4]])
def test_without_the_search_they_pass(claim, variables, monkeypatch):
    """The control: these pass with the search turned off, so the tests above test it."""
    monkeypatch.setattr(inequality_module, "violation_search", lambda *a, **k: [])
    assert verify(claim, variables).verdict == "pass"


RIGHT_STRICT = [
    ("tanh(s) < 1", S),
    ("sigmoid(s) > 0", S),
    ("softplus(s) > 0", S),
    ("softplus(s) > relu(s)", S),
    ("log(sigmoid(s)) < 0", S),
    ("t / (1 + t) < 1", T),
    ("entropy(softmax(x)) > 0", X),
    ("silu(s) >= -0.27847", S),
    ("kl(p, q) >= 0", {"p": "simplex[n]", "q": "simplex[n]"}),
    ("grad(tanh(s), s) > 0", S),
    ("grad(softplus(s), s) < 1", S),
]


@pytest.mark.parametrize("claim,variables", RIGHT_STRICT, ids=[c for c, _ in RIGHT_STRICT])
def test_right_claims_pass_at_the_far_points(claim, variables):
    """At s = -1e5 the difference of softplus(s) > 0 is exp(-1e5): evalf gives 0 for it, and
    tanh'(s) is 0 at 70 digits. A searched point judges a strict relation as non-strict, so
    such a tie is no violation."""
    result = verify(claim, variables)
    assert result.verdict == "pass", result.report()


def test_counterexamples_are_plain_numbers():
    """Violated points are rounded to the fewest digits that keep them violated, and given as
    the shortest decimal: s = 200, not 8718257617984415/274877906944."""
    for claim, variables in [("sigmoid(s) <= 0.999", S), ("silu(s) >= -0.2784", S)]:
        result = verify(claim, variables)
        (name, value), *_ = result.counterexample.inputs.items()
        assert sympy.Rational(str(value)).q <= 1000, (claim, value)


@pytest.mark.parametrize(
    "vtype",
    ["real[n]", "positive[n]", "unit[n]", "simplex[n]", "symmetric[n, n]", "spd[n, n]"],
)
def test_search_points_stay_of_their_type(vtype):
    env = build_environment({"v": vtype})
    lhs = parse_formula("sum(v)", env)  # a claim its points make no difference to
    rhs = parse_formula("1e300", env)
    used = {"v": env.vars["v"]}
    rng = np.random.default_rng(0)
    points = violation_search(lhs, rhs, "<=", used, {"n": 3}, rng, [])
    assert points
    for point in points:
        assert TYPES[env.vars["v"].vtype].admits(point["v"]), point
