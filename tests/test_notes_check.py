"""The step checker: index notation by instantiation, identities in parameters, the cache."""

from __future__ import annotations

import importlib
from fractions import Fraction

import numpy as np
import pytest
import sympy

import engine.notes.check as check_mod
from engine.notes import Note, Section, Step
from engine.notes.check import ResultCache, check_note, check_step, environment, step_key
from engine.notes.symbols import Named, array, delta, indices, param, size, total

n = size("n")
z = array("z")
i, j, k, r = indices("i j k r")
beta, t = param("beta", "unit"), param("t", "integer")


def p(a):
    return Named("p", sympy.exp(z[a]) / total(sympy.exp(z[k]), k, n), a)


def note_with(*steps: Step) -> Note:
    return Note(
        name="t",
        order=1,
        title="T",
        summary="s",
        sections=(Section("S", *steps),),
        vars={"z": "real[n]"},
        defs={"p": "softmax(z)"},
        arrays={"z": "real[n]"},
        indices={"i": "n", "j": "n"},
        params={"beta": "unit", "t": "integer"},
    )


def run(step: Step):
    note = note_with(step)
    return check_step(note, step, environment(note), "test")


JACOBIAN = Step((sympy.Derivative(p(i), z[j]), p(i) * (delta(i, j) - p(j))), "quotient rule")
WRONG_JACOBIAN = Step((sympy.Derivative(p(i), z[j]), p(i) * (delta(i, j) + p(j))), "wrong")


def test_index_step_passes_with_both_routes():
    result = run(JACOBIAN)
    assert result.verdict == "pass", result.report()
    exact, numeric = result.checks
    assert exact.detail == "exact at n=2, 3, 4, every i, j"
    assert exact.max_error < 1e-40
    assert numeric.detail.startswith("numeric at n=9, float64, complex-step")
    assert numeric.max_error < 1e-12


def _softmax_jacobian(zv: np.ndarray) -> np.ndarray:
    e = np.exp(zv - zv.max())
    pv = e / e.sum()
    return np.diag(pv) - np.outer(pv, pv)


def test_wrong_index_step_fails_with_a_counterexample_that_checks_out_by_hand():
    result = run(WRONG_JACOBIAN)
    assert result.verdict == "fail"
    cx = result.counterexample
    assert cx.check == "exact"
    assert set(cx.inputs) == {"i", "j", "z"}
    zv = np.array([float(Fraction(x)) for x in cx.inputs["z"]])
    assert len(zv) == cx.sizes["n"]
    a, b = cx.inputs["i"], cx.inputs["j"]
    # lhs is the true derivative; rhs is p_i (delta_ij + p_j).
    e = np.exp(zv - zv.max())
    pv = e / e.sum()
    assert cx.lhs == pytest.approx(_softmax_jacobian(zv)[a, b], rel=1e-12)
    assert cx.rhs == pytest.approx(pv[a] * ((a == b) + pv[b]), rel=1e-12)


def test_numeric_route_catches_what_small_sizes_hide():
    # The extra term vanishes at n = 2, 3, 4 (the exact sizes) but not at n = 9.
    hidden = (n - 2) * (n - 3) * (n - 4) * z[0]
    step = Step((total(z[k], k, n), total(z[k], k, n) + hidden), "planted")
    result = run(step)
    assert result.verdict == "fail"
    assert [c.passed for c in result.checks] == [True, False]
    cx = result.counterexample
    assert cx.check == "numeric" and cx.sizes == {"n": 9}
    assert cx.rhs - cx.lhs == pytest.approx(7 * 6 * 5 * cx.inputs["z"][0], rel=1e-9)


def test_numeric_route_differentiates_by_complex_step():
    # Wrong only at n = 9, inside a derivative step: the exact route passes, and the numeric
    # route (complex-step derivative of the unfolded p_i) reports the planted difference.
    planted = (n - 2) * (n - 3) * (n - 4) * p(i) / 1000
    step = Step((sympy.Derivative(p(i), z[j]), p(i) * (delta(i, j) - p(j)) + planted), "x")
    result = run(step)
    assert result.verdict == "fail"
    assert [c.passed for c in result.checks] == [True, False]
    assert "complex-step" in result.checks[1].detail
    cx = result.counterexample
    zv = np.array(cx.inputs["z"])
    a, b = cx.inputs["i"], cx.inputs["j"]
    e = np.exp(zv - zv.max())
    pv = e / e.sum()
    assert cx.lhs == pytest.approx(_softmax_jacobian(zv)[a, b], rel=1e-9, abs=1e-15)
    assert cx.rhs - cx.lhs == pytest.approx(210 * pv[a] / 1000, rel=1e-6)


def test_a_sum_of_derivatives_that_cancels_compares_at_the_derivatives_size():
    step = Step((total(sympy.Derivative(p(i), z[j]), i, n), sympy.Integer(0)), "zero sum")
    result = run(step)
    assert result.verdict == "pass", result.report()
    assert result.checks[1].max_error < 1e-14


def test_identity_geometric_series():
    result = run(Step((total(beta**r, r, t), (1 - beta**t) / (1 - beta)), "geometric series"))
    assert result.verdict == "pass", result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]


def test_an_identity_step_mark_says_its_second_check_is_not_independent():
    # issue 11: the float64 pass re-evaluates the same SymPy expressions; the mark says so, and
    # the index and formula steps' numeric routes (independent NumPy code) do not
    identity = run(Step((total(beta**r, r, t), (1 - beta**t) / (1 - beta)), "geometric series"))
    assert "not an independent route" in identity.checks[1].detail
    assert "re-evaluation of the same expressions" in identity.checks[1].detail
    index = run(Step((total(p(i), i, n), sympy.Integer(1)), "probabilities sum to one"))
    assert index.passed, index.report()
    assert "independent" not in index.checks[1].detail


def test_wrong_identity_fails_and_the_counterexample_checks_out():
    result = run(Step((total(beta**r, r, t), (1 - beta ** (t + 1)) / (1 - beta)), "off by one"))
    assert result.verdict == "fail"
    cx = result.counterexample
    b, tt = Fraction(cx.inputs["beta"]), int(cx.inputs["t"])
    assert cx.lhs == pytest.approx(float(sum(b**m for m in range(tt))), rel=1e-12)
    assert cx.rhs == pytest.approx(float((1 - b ** (tt + 1)) / (1 - b)), rel=1e-12)


def test_identity_side_may_be_a_function_of_the_parameter_values():
    def partial_sum(values):
        return sum(values["beta"] ** m for m in range(int(values["t"])))

    assert run(Step(((1 - beta**t) / (1 - beta), partial_sum), "by summing")).passed
    assert not run(Step(((1 - beta**t) / (1 - beta) + beta / 10**6, partial_sum), "x")).passed


def test_formula_steps_go_to_the_verifier():
    assert run(Step("grad(logsumexp(z), z) == p", "softmax is the gradient")).passed
    assert run(Step("grad(logsumexp(z), z) == 2 * p", "wrong")).verdict == "fail"


def test_undeclared_parameter_is_an_error_not_a_pass():
    x = param("x")
    result = run(Step((x, x), "x"))
    assert result.verdict == "error"
    assert "undeclared parameter" in result.message


def test_the_checker_never_calls_simplify(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("simplify called")

    monkeypatch.setattr(sympy, "simplify", boom)
    monkeypatch.setattr(importlib.import_module("sympy.simplify.simplify"), "simplify", boom)
    assert run(JACOBIAN).passed
    assert run(Step((total(beta**r, r, t), (1 - beta**t) / (1 - beta)), "series")).passed


# ---------------------------------------------------------------- the cache


def test_cache_stores_passes_only_and_is_used(tmp_path, monkeypatch):
    good = Step("sum(p) == 1", "sums to one")
    bad = Step("sum(p) == 2", "wrong")
    note = note_with(good, bad)
    cache = ResultCache(tmp_path)
    first = check_note(note, cache, "fp")
    assert [sr.result.verdict for sr in first] == ["pass", "fail"]
    assert [sr.cached for sr in first] == [False, False]
    assert len(list(tmp_path.glob("*.json"))) == 1  # the failure is not stored

    calls = []
    real = check_mod.check_step

    def counting(note_, step, env, name):
        calls.append(step.claim)
        return real(note_, step, env, name)

    monkeypatch.setattr(check_mod, "check_step", counting)
    second = check_note(note, cache, "fp")
    assert [sr.cached for sr in second] == [True, False]
    assert calls == ["sum(p) == 2"]  # only the failing step is checked again
    assert second[0].result.summary() == first[0].result.summary()


def test_step_key_depends_on_claim_declarations_and_engine():
    step = Step("sum(p) == 1", "sums to one")
    note = note_with(step)
    base = step_key(note, step, "fp")
    assert step_key(note, step, "fp") == base
    assert step_key(note, Step("sum(p) == 1", "another reason"), "fp") == base
    assert step_key(note, Step("1 == sum(p)", "x"), "fp") != base
    assert step_key(note, step, "other engine") != base
    other = Note(**{**note.__dict__, "vars": {"z": "positive[n]"}})
    assert step_key(other, step, "fp") != base


def test_reported_errors_do_not_depend_on_earlier_sympy_state():
    first = run(JACOBIAN)
    _ = [sympy.Dummy() for _ in range(2000)]  # shifts every later Dummy's sort key
    second = run(JACOBIAN)
    assert first.checks == second.checks


def test_cache_fingerprint_covers_the_checker_and_nothing_unrelated():
    from engine.notes.check import checker_sources

    names = {"/".join(p.parts[-2:]) for p in checker_sources()}
    for needed in (
        "verify/core.py",
        "verify/exact.py",
        "verify/numeric.py",
        "verify/sampling.py",
        "verify/precision.py",
        "verify/adjoint.py",
        "engine/parser.py",
        "engine/types.py",
        "functions/ops.py",
        "functions/calculus.py",
        "backends/sympy_backend.py",
        "backends/numpy_backend.py",
        "notes/check.py",
        "notes/symbols.py",
    ):
        assert needed in names
    for unrelated in ("engine/cli.py", "notes/render.py", "notes/build.py", "notes/markup.py"):
        assert unrelated not in names
    assert not any(n.startswith(("derive/", "export/")) for n in names)
