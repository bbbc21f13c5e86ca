"""Tests of the verifier: true claims pass; each route alone catches a planted 1e-6 error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import build_environment, parse_equation, verify, verify_sides
from engine.verify import exact_size_assignments

CE = {"z": "real[n]", "y": "simplex[n]", "e": "onehot[n]"}
ATTENTION = {
    "Q": "real[m, d]",
    "K": "real[m, d]",
    "V": "real[m, d]",
    "O": "real[m, d]",
    "e": "onehot[m]",
    "f": "onehot[d]",
}
P = "softmax(Q @ K.T / sqrt(d))"
SMALL = {"m": 6, "d": 4}  # numeric sizes that keep the attention cases fast


def check(equation: str, vars_: dict, defs=None, **kwargs):
    env = build_environment(vars_, defs)
    lhs, rhs = parse_equation(equation, env)
    return verify_sides(lhs, rhs, env, name="c", **kwargs)


# ---------------------------------------------------------------- true claims pass


@pytest.mark.parametrize(
    "equation, vars_",
    [
        ("sum(softmax(z)) == 1", CE),
        ("grad(cross_entropy(softmax(z), y), z) == softmax(z) - y", CE),
        ("grad(cross_entropy(softmax(z), e), z) == softmax(z) - e", CE),
        ("jacobian(softmax(z), z) == diag(softmax(z)) - outer(softmax(z), softmax(z))", CE),
        ("cross_entropy(softmax(z), y) == entropy(y) + kl(y, softmax(z))", CE),
        ("log_softmax(z) == z - logsumexp(z)", CE),
        ("var(z) == mean(z ** 2) - mean(z) ** 2", CE),
        (f"grad(sum(O * ({P} @ V)), V) == {P}.T @ O", ATTENTION),
        ("(Q @ K.T).T == K @ Q.T", ATTENTION),
        ("trace(Q.T @ K) == sum(Q * K)", ATTENTION),
        ("sum(ones(m, d)) == m * d", ATTENTION),
    ],
)
def test_true_claims_pass_both_routes(equation, vars_):
    result = check(equation, vars_, numeric_sizes=SMALL)
    assert result.verdict == "pass", result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]
    assert all(c.passed for c in result.checks)
    assert result.counterexample is None and result.message == "verified"


def test_summary_says_how_it_was_verified():
    result = check("grad(cross_entropy(softmax(z), y), z) == softmax(z) - y", CE)
    exact, numeric = result.summary().split("; ")
    # three size assignments (one with every size >= 4), and the input scales beyond unit ones
    assert exact == "exact at n=2 and n=3 and n=4 (scales 1e-3..4)"
    assert numeric.startswith("numeric at n=64, complex-step, max rel. err ")
    assert float(numeric.split("max rel. err ")[1].split(" ")[0]) < 1e-9
    assert numeric.endswith("(scales 1e-3..4)")
    assert result.report().startswith("PASS c  [exact at n=2 and n=3 and n=4 (scales")


# ---------------------------------------------------------------- planted errors

# The right-hand side times (1 + 1e-6 * e) for a one-hot e: a relative error of 1e-6 in exactly
# one entry, at a position that changes with the sample; the counterexample must point at it.
PLANTED = [
    ("grad(cross_entropy(softmax(z), y), z)", "(softmax(z) - y) * (1 + 1e-6 * e)", CE),
    (f"grad(sum(O * ({P} @ V)), V)", f"{P}.T @ O * (1 + 1e-6 * outer(e, f))", ATTENTION),
]


def one_position(cx, names) -> tuple[int, ...]:
    """Where the one-hot inputs put their 1 (for the exact route they are rational strings)."""
    return tuple([float(v) for v in cx.inputs[name]].index(1.0) for name in names)


@pytest.mark.parametrize("lhs, rhs, vars_", PLANTED)
def test_exact_route_alone_catches_a_planted_1e6_error_in_one_entry(lhs, rhs, vars_):
    result = check(f"{lhs} == {rhs}", vars_, numeric=False)
    assert result.verdict == "fail"
    assert [c.method for c in result.checks] == ["exact"]
    assert result.message == "the two sides differ (exact check)"
    cx = result.counterexample
    assert cx.check == "exact" and cx.profile is None
    onehots = [name for name in ("e", "f") if name in vars_]
    assert cx.entry == one_position(cx, onehots)
    assert cx.difference == pytest.approx(cx.lhs - cx.rhs, rel=1e-9)
    assert abs(cx.difference) == pytest.approx(1e-6 * abs(cx.rhs), rel=1e-3)
    # and the unplanted claim passes the same route
    correct = check(f"{lhs} == {rhs.replace('1e-6', '0')}", vars_, numeric=False)
    assert correct.verdict == "pass", correct.report()


@pytest.mark.parametrize("lhs, rhs, vars_", PLANTED)
def test_numeric_route_alone_catches_a_planted_1e6_error_in_one_entry(lhs, rhs, vars_):
    result = check(f"{lhs} == {rhs}", vars_, exact=False, numeric_sizes=SMALL)
    assert result.verdict == "fail"
    assert [c.method for c in result.checks] == ["numeric"]
    cx = result.counterexample
    assert cx.check == "numeric" and cx.profile in ("unit", "wide", "peaked")
    onehots = [name for name in ("e", "f") if name in vars_]
    assert cx.entry == one_position(cx, onehots)
    assert abs(cx.difference) == pytest.approx(1e-6 * abs(cx.rhs), rel=1e-3)
    correct = check(f"{lhs} == {rhs.replace('1e-6', '0')}", vars_, exact=False)
    assert correct.verdict == "pass", correct.report()


def test_planted_error_in_one_jacobian_entry_is_caught_by_each_route():
    lhs = "jacobian(softmax(z), z)"
    rhs = "(diag(softmax(z)) - outer(softmax(z), softmax(z))) * (1 + 1e-6 * outer(e, t))"
    vars_ = {**CE, "t": "onehot[n]"}
    for route in ({"numeric": False}, {"exact": False}):
        result = check(f"{lhs} == {rhs}", vars_, **route)
        assert result.verdict == "fail", route
        assert result.counterexample.entry == one_position(result.counterexample, ["e", "t"])


def test_numeric_probes_catch_and_localize_a_planted_error_at_large_n():
    # 5000 coordinates is above FULL_LIMIT: the gradient is checked by directional probes.
    equation = "grad(sum(z ** 3), z) == 3 * z ** 2 * (1 + 1e-6 * e)"
    result = check(equation, CE, exact=False, numeric_sizes={"n": 5000})
    assert result.verdict == "fail"
    assert "probes" in result.checks[0].detail
    assert result.counterexample.entry == one_position(result.counterexample, ["e"])
    good = check(equation.replace("1e-6", "0"), CE, exact=False, numeric_sizes={"n": 5000})
    assert good.verdict == "pass", good.report()


def test_exact_route_sees_errors_far_below_float_precision():
    equation = "grad(cross_entropy(softmax(z), y), z) == (softmax(z) - y) * (1 + 1e-12 * e)"
    assert check(equation, CE, numeric=False).verdict == "fail"
    assert check(equation, CE, exact=False).verdict == "pass"  # 1e-12 is below NUMERIC_RTOL


def test_numeric_route_sees_errors_only_present_at_larger_sizes():
    # (n - 2) * (n - 3) * (n - 4) vanishes at every exact size n = 2, 3, 4, not at n = 64.
    equation = "(n - 2) * (n - 3) * (n - 4) * z == 0 * z"
    assert check(equation, CE, numeric=False).verdict == "pass"
    result = check(equation, CE)
    assert result.verdict == "fail"
    assert result.message == (
        "the two sides differ (numeric check); the exact check passed, so the two routes disagree"
    )


def test_errors_that_vanish_for_sizes_below_four_are_caught_by_the_exact_route():
    # a term that needs four distinct coordinates: zero at n = 2 and n = 3
    result = check("(n - 2) * (n - 3) * z == 0 * z", CE, numeric=False)
    assert result.verdict == "fail" and result.counterexample.sizes == {"n": 4}


def test_transposition_errors_are_caught_because_exact_sizes_differ():
    assert exact_size_assignments(["m", "d"]) == [
        {"m": 2, "d": 3},
        {"m": 3, "d": 2},
        {"m": 4, "d": 5},
    ]
    result = check("(Q @ K.T).T == Q @ K.T", ATTENTION, numeric=False)
    assert result.verdict == "fail"


def test_exact_size_assignments_are_distinct_and_at_least_two():
    assert exact_size_assignments([]) == [{}]
    assert exact_size_assignments(["n"]) == [{"n": 2}, {"n": 3}, {"n": 4}]
    for k in range(2, 6):
        names = [f"s{i}" for i in range(k)]
        for sizes in exact_size_assignments(names):
            assert len(set(sizes.values())) == k and min(sizes.values()) >= 2


# ---------------------------------------------------------------- failures and their reports


def test_shape_mismatch_is_a_fail_naming_both_shapes():
    result = verify("softmax(z) == sum(z)", CE, name="shapes")
    assert result.verdict == "fail"
    assert result.message == "the two sides have different shapes: (n,) and scalar"
    assert result.counterexample is None
    result = verify("Q @ K.T == Q.T @ K", ATTENTION)
    assert result.message == "the two sides have different shapes: (m, m) and (d, d)"


def test_counterexample_fields_of_a_wrong_sign():
    result = verify("grad(cross_entropy(softmax(z), y), z) == y - softmax(z)", CE, name="sign")
    assert result.verdict == "fail"
    cx = result.counterexample
    assert cx.check == "exact"
    assert cx.sizes == {"n": 2}
    assert set(cx.inputs) == {"z", "y"}
    assert len(cx.inputs["z"]) == 2 and all(isinstance(v, str) for v in cx.inputs["z"])
    assert len(cx.entry) == 1 and 0 <= cx.entry[0] < 2
    assert cx.lhs == pytest.approx(-cx.rhs)  # the wrong sign, visible in the numbers
    assert cx.difference == pytest.approx(2 * cx.lhs)
    text = result.report().splitlines()
    assert text[0] == "FAIL sign"
    assert text[1] == "  the two sides differ (exact and numeric check)"
    assert text[2].startswith("  exact check at n=2: entry [")
    assert text[3].startswith("  z = [") and text[4].startswith("  y = [")


def test_json_form_of_a_result():
    result = verify("sum(softmax(z)) == 2", CE, name="j")
    data = result.to_json()
    assert data["name"] == "j" and data["verdict"] == "fail"
    assert data["counterexample"]["check"] == "exact"
    assert data["counterexample"]["lhs"] == pytest.approx(1.0)
    assert data["counterexample"]["rhs"] == 2.0
    assert data["counterexample"]["entry"] == ()
    assert {c["method"] for c in data["checks"]} == {"exact", "numeric"}


@pytest.mark.parametrize(
    "equation, vars_, message",
    [
        ("log(z) == z", CE, "the left side is not real at the sampled inputs"),
        ("z == sqrt(z)", CE, "the right side is not real at the sampled inputs"),
        ("1 / (z - z) == z", CE, "the left side is not finite at the sampled inputs"),
        ("exp(exp(exp(1000))) == 1", CE, "cannot evaluate the claim"),
        ("sum(x) == 1", {"x": "real[40, 40]"}, "too many input entries (1600) for the exact check"),
        ("grad(z, z) == z", CE, "grad() needs a scalar function, got shape (n,)"),
        ("z == w", {"z": "real[n]", "w": "complex[n]"}, "unknown type 'complex'"),
        ("z = z", CE, "syntax error"),
        ("z == unknown(z)", CE, "unknown function 'unknown'"),
        ("z ** 100 == z", CE, "exponent is too large"),
        # regressions: these crashed with ValueError instead of a clean error
        ("relu(log(z)) == 0 * z", CE, "not real at the sampled inputs"),
    ],
)
def test_bad_claims_are_clean_one_line_errors(equation, vars_, message):
    result = verify(equation, vars_, name="bad")
    assert result.verdict == "error"
    assert message in result.message
    assert result.report() == f"ERROR bad: {result.message}"
    assert "\n" not in result.report() and "Traceback" not in result.report()
    assert result.counterexample is None


def test_domain_error_is_also_clean_on_the_numeric_route_alone():
    result = check("log(z) == z", CE, exact=False)
    assert result.verdict == "error"
    assert "not finite" in result.message
    # relu and step used to turn the NaN of log(-1) into 0, so this passed the numeric route
    result = check("relu(log(z)) == 0 * z", CE, exact=False)
    assert result.verdict == "error" and "not finite" in result.message


# ---------------------------------------------------------------- random claims

LEAVES = ["z", "u", "y", "e", "r", "s", "n", "2", "0.5", "pi"]
ELEMENTWISE = "exp log sqrt abs tanh sigmoid sin cos relu softplus silu gelu gelu_tanh sign step"
ELEMENTWISE = ELEMENTWISE.split()
RANDOM_VARS = {**CE, "u": "positive[n]", "r": "unit[n]", "s": "real"}


def formulas(depth: int = 3):
    leaf = st.sampled_from(LEAVES)

    def extend(inner):
        elementwise = st.sampled_from(ELEMENTWISE)
        unary = st.sampled_from("sum mean var logsumexp softmax log_softmax entropy diag".split())
        return st.one_of(
            st.builds("{}({})".format, elementwise, inner),
            st.builds("{}({})".format, unary, inner),
            st.builds(
                "({} {} {})".format, inner, st.sampled_from(["+", "-", "*", "/", "**", "@"]), inner
            ),
            st.builds("{}({}, {})".format, st.sampled_from(["cross_entropy", "kl"]), inner, inner),
            st.builds("grad(sum({}), {})".format, inner, st.sampled_from(["z", "u", "s"])),
        )

    return st.recursive(leaf, extend, max_leaves=depth * 2)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(formulas(), formulas())
def test_random_claims_get_a_verdict_never_an_exception(left, right):
    result = verify(f"{left} == {right}", RANDOM_VARS, numeric_sizes={"n": 5})
    assert result.verdict in ("pass", "fail", "error")
    assert "\n" not in result.report() or result.verdict == "fail"
    if left == right and result.verdict != "error":
        assert result.verdict == "pass", result.report()


def test_a_negative_seed_is_a_clean_error():
    result = verify("sum(softmax(z)) == 1", CE, seed=-1)
    assert result.verdict == "error"
    assert result.message == "the seed must be a non-negative integer, got -1"


def test_definitions_are_used():
    result = verify("grad(cross_entropy(p, y), z) == p - y", CE, {"p": "softmax(z)"})
    assert result.verdict == "pass"
    result = verify("p == z", CE, {"p": "softmax(q)"})
    assert result.verdict == "error" and result.message.startswith("definition 'p'")


# ---------------------------------------------------------------- determinism


def test_same_seed_same_result_and_other_seeds_other_points():
    equation = "grad(cross_entropy(softmax(z), y), z) == softmax(z) - y + 1e-3 * e"
    first = verify(equation, CE, seed=3).to_json()
    assert verify(equation, CE, seed=3).to_json() == first
    other = verify(equation, CE, seed=4).to_json()
    assert other["verdict"] == first["verdict"] == "fail"
    assert other["counterexample"]["inputs"] != first["counterexample"]["inputs"]


def test_log_of_a_real_variable_is_a_domain_error_not_a_false_verdict():
    # Complex-step through NumPy's complex log would read log(-2 + ih) = log 2 + i*pi as a
    # derivative of ~1e20; the exact route alone sees 1/z on both sides and passes. Before the
    # fix the two routes disagreed and the claim was reported FAIL; it is a domain error.
    r = verify("grad(sum(log(z)), z) == 1 / z", {"z": "real[n]"})
    assert r.verdict == "error"
    assert "not finite" in r.message or "not real" in r.message
    assert verify("grad(sum(log(z)), z) == 1 / z", {"z": "positive[n]"}).passed


def test_fractional_power_of_a_negative_base_is_a_domain_error():
    r = verify("grad(sum(x ** 1.5), x) == 1.5 * x ** 0.5", {"x": "real[n]"})
    assert r.verdict == "error"


def test_kinked_functions_of_arguments_sympy_cannot_prove_real():
    # SymPy leaves d/ds sign(s / (2 + sin(s))) unevaluated (it cannot show 2 + sin(s) != 0);
    # the exact route resolves it as 0 away from the kink, abs as sign(u) u', step as 0.
    env_vars = {"s": "real"}
    u = "s / (2 + sin(s))"
    assert verify(f"grad(sign({u}) * {u}, s) == sign({u}) * grad({u}, s)", env_vars).passed
    assert verify(f"grad(abs({u}), s) == sign({u}) * grad({u}, s)", env_vars).passed
    assert verify(f"grad(step({u}) * {u}, s) == step({u}) * grad({u}, s)", env_vars).passed
    wrong = verify(f"grad(abs({u}), s) == grad({u}, s)", env_vars, seed=1)
    assert wrong.verdict == "fail"


def test_an_overflowing_input_scale_is_skipped_and_said():
    # x * (W @ x) at the wide scale gives logits in the thousands: softmax underflows and the
    # cross-entropy is inf in float64. The other scales still check the claim, and the detail
    # says which scale was left out.
    declared = {"x": "real[n]", "W": "real[n, n]", "q": "simplex[n]"}
    p = "softmax(x * (W @ x))"
    right = f"grad(cross_entropy({p}, q), x) == ({p} - q) * (W @ x) + W.T @ (({p} - q) * x)"
    r = verify(right, declared)
    assert r.passed, r.report()
    assert "wide inputs overflowed float64, skipped" in r.summary()
    # The scales that remain still catch a missing transpose, by the numeric route alone.
    env = build_environment(declared)
    lhs, rhs = parse_equation(right.replace("W.T @", "W @"), env)
    wrong = verify_sides(lhs, rhs, env, exact=False)
    assert wrong.verdict == "fail"
    assert wrong.counterexample.profile in ("unit", "peaked")


def test_gradients_of_literal_sized_matrices_are_decided_by_the_reverse_sweep():
    # sympy.diff once per coordinate of a 16 x 16 literal took 21 s and was refused; the exact
    # route's reverse sweep decides it (true and false) in about a second
    vars_ = {"A": "real[16, 16]"}
    assert verify("grad(sum(A @ A), A) == A", vars_).verdict == "fail"
    ok = verify("grad(sum(A @ A), A) == A.T @ ones(16, 16) + ones(16, 16) @ A.T", vars_)
    assert ok.passed, ok.report()


CHAIN = " @ ".join(["A"] * 20)


def test_long_chains_of_products_are_checked_exactly():
    """The SymPy tree of A^20 grows exponentially (this claim once ran for hours, then was
    refused as too large); the exact route evaluates the DAG of distinct subexpressions."""
    wrong = verify(f"{CHAIN} == A", {"A": "real[n, n]"})
    assert wrong.verdict == "fail" and wrong.counterexample.check == "exact", wrong.report()
    half = " @ ".join(["A"] * 10)
    right = verify(f"{CHAIN} == ({half}) @ ({half})", {"A": "real[n, n]"})
    assert right.verdict == "pass", right.report()
    assert "exact at n=2 and n=3" in right.summary()


def test_claims_past_the_dag_limit_are_a_clean_one_line_error(monkeypatch):
    import importlib

    monkeypatch.setattr(importlib.import_module("engine.verify.exact"), "MAX_DAG_SIZE", 10_000)
    result = verify(f"{CHAIN} == A", {"A": "real[20, 20]"}, name="bad")
    assert result.verdict == "error"
    assert "too large for the exact check" in result.message
    assert "10000 distinct subexpressions" in result.message
    assert result.report() == f"ERROR bad: {result.message}"


def test_a_jump_within_rounding_of_zero_is_decided_exactly():
    """step(sqrt(2) * sqrt(2) - 2) is step(0) = 0, but 70 digits cannot prove the argument an
    exact zero: SymPy decides it at the point (engine/verify/kinks.py), never a guess."""
    r = verify("(1 + sign(s - s)) * step(sqrt(2) * sqrt(2) - 2) == 0 * s", {"s": "real"})
    assert r.verdict == "pass", r.report()
    r = verify("(1 + sign(s - s)) * step(sqrt(2) * sqrt(2) - 2) == 1 + 0 * s", {"s": "real"})
    assert r.verdict == "fail", r.report()
    # a clear side of the jump is decided: sign(sqrt(2) - 1) = 1
    r = verify("(1 + sign(s - s)) * sign(sqrt(2) - 1) == 1 + 0 * s", {"s": "real"})
    assert r.verdict == "pass", r.report()
