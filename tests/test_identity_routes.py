"""An identity step's independent numeric route (Step(numeric=...)): the left side computed in
float64 by the note's own code, compared with the right side; its mark names the route, a wrong
route fails, and the notes' routes pass (issue 11: identity steps get an independent route)."""

from __future__ import annotations

from test_notes_check import beta, note_with, r, run, t

from engine.notes import Step
from engine.notes.build import load_notes
from engine.notes.check import check_step, environment
from engine.notes.symbols import total

GEOMETRIC = (total(beta**r, r, t), (1 - beta**t) / (1 - beta))


def by_loop(values) -> float:
    """a float64 loop adding the powers of beta"""
    return sum(values["beta"] ** k for k in range(values["t"]))


def off_by_one(values) -> float:
    """a float64 loop adding one power of beta too many"""
    return sum(values["beta"] ** k for k in range(values["t"] + 1))


def no_docstring(values) -> float:
    return by_loop(values)


def test_a_route_is_named_in_the_mark_and_counts_as_independent():
    result = run(Step(GEOMETRIC, "geometric series", numeric=by_loop))
    assert result.verdict == "pass", result.report()
    assert [c.method for c in result.checks] == ["exact", "numeric"]
    detail = result.checks[1].detail
    assert "by an independent route (a float64 loop adding the powers of beta)" in detail
    assert "not an independent route" not in detail


def test_a_wrong_route_fails_the_numeric_check_although_the_exact_check_passes():
    result = run(Step(GEOMETRIC, "geometric series", numeric=off_by_one))
    assert result.verdict == "fail", result.report()
    assert [c.passed for c in result.checks] == [True, False]
    assert result.counterexample is not None


def test_a_route_must_say_what_it_computes_and_is_for_identity_steps_only():
    result = run(Step(GEOMETRIC, "geometric series", numeric=no_docstring))
    assert result.verdict == "error" and "docstring" in result.message
    note = note_with(Step("sum(p) == 1", "probabilities sum to one", numeric=by_loop))
    assert any("numeric= is for identity steps" in p for p in note.problems())
    assert note_with(Step(GEOMETRIC, "geometric series", numeric=by_loop)).problems() == []


def test_the_notes_routes_pass_and_are_marked_independent():
    routed = [(x.note, s) for x in load_notes() for s in x.note.steps() if s.numeric is not None]
    assert {(note.name, s.label) for note, s in routed} >= {
        ("softmax", "first-error"),
        ("adam", "weights-sum"),
        ("hallucination", "expansion"),
    }
    for note, step in routed:
        result = check_step(note, step, environment(note), step.label or "")
        assert result.passed, result.report()
        assert "by an independent route (" in result.checks[1].detail
