"""No numbered ✓ step is a near-tautology (issue 11: trivial steps dilute the marks): no step is
true by its note's definitions alone, and no row of a chain is the previous row regrouped."""

from __future__ import annotations

import pytest
import sympy

from engine.backends.sympy_backend import to_sympy
from engine.expr import Call, Expr, Ref, size_names
from engine.notes.build import load_notes
from engine.notes.check import environment
from engine.notes.model import Chain, Note
from engine.notes.symbols import array, indices
from engine.parser import parse_formula

NOTES = {x.note.name: x.note for x in load_notes()}


def _unfold(e: Expr) -> Expr:
    """The expression with every definition replaced by its body."""
    if isinstance(e, Ref):
        return _unfold(e.body)
    if isinstance(e, Call):
        return Call(e.fn, tuple(_unfold(a) for a in e.args), e.params, e.shape)
    return e


REARRANGING = ("reshape", "swapaxes", "transpose", "concat", "stack", "split", "getitem", "pad")


def _rearranged(e: Expr) -> list[str]:
    """The functions written in `e` (not inside its definitions) that move entries around."""
    found, stack = [], [e]
    while stack:
        node = stack.pop()
        if isinstance(node, Call):
            if node.fn in REARRANGING:
                found.append(node.fn)
            stack.extend(node.args)
    return sorted(found)


def _by_definitions(note: Note, lhs: str, rhs: str) -> bool:
    """True when the sides of a formula step agree by unfolding definitions and SymPy's automatic
    evaluation at small sizes (no simplification, no differentiation: steps with a grad or a
    jacobian are left out, their content is the derivative)."""
    env = environment(note)
    left, right = parse_formula(lhs, env), parse_formula(rhs, env)
    if _unfold(left) == _unfold(right):
        return True
    if _rearranged(left) != _rearranged(right):
        # the same entries in two arrangements (heads split by reshape vs by the weight's column
        # blocks; concatenated heads times W_O vs a sum over heads): SymPy's entries agree at
        # once, and that agreement is the step's content, a block-matrix identity
        return False
    if any(
        isinstance(n, Call) and n.fn in ("grad", "jacobian")
        for side in (left, right)
        for n in side.walk()
    ):
        return False
    sizes = {s: 2 for s in size_names(left) | size_names(right)}
    a, b = to_sympy(left, sizes), to_sympy(right, sizes)
    return a == b


def _regrouped(a: sympy.Basic, b: sympy.Basic) -> bool:
    """Two chain rows that are the same polynomial in their symbols and entries."""
    return sympy.expand(a - b) == 0


def _justified_as_a_definition(why: str) -> bool:
    """A step whose justification is "definition of ...": it should be a Definition (:=)."""
    return why.strip().lower().startswith(("definition", "by definition"))


def trivial_steps(note: Note) -> list[str]:
    found = []
    for k, step in enumerate(note.steps(), 1):
        lhs, rhs = step.sides()
        if _justified_as_a_definition(step.why):
            found.append(f"({k}) {lhs} == {rhs}: a checked definition ({step.why})")
        if step.resolved_kind == "formula" and _by_definitions(note, str(lhs), str(rhs)):
            found.append(f"({k}) {lhs} == {rhs}: true by the definitions")
    for section in note.sections:
        for item in section.items:
            if isinstance(item, Chain) and not isinstance(item.lhs, str):
                rows = [r.rhs for r in item.rows() if isinstance(r.rhs, sympy.Basic)]
                for a, b in zip(rows, rows[1:], strict=False):
                    if _regrouped(a, b):
                        found.append(f"{b}: the previous row regrouped")
    return found


@pytest.mark.parametrize("name", sorted(NOTES))
def test_no_step_is_true_by_definition_or_a_regrouping_of_the_previous_row(name):
    assert trivial_steps(NOTES[name]) == []


def test_the_detector_finds_the_trivial_steps_the_review_removed():
    adam = NOTES["adam"]
    # Adam's first step at t = 1: "mhat1 == g" is its definition m1 / (1 - beta1) unfolded
    assert _by_definitions(adam, "mhat1", "g")
    assert _by_definitions(adam, "vhat1", "g ** 2")
    assert not _by_definitions(
        adam, "alpha * mhat1 / (sqrt(vhat1) + eps)", "alpha * g / (abs(g) + eps)"
    )
    # the cross-entropy's definition, once a checked step
    assert _justified_as_a_definition("definition of $\\mathrm{CE}$")
    assert not _justified_as_a_definition("quotient rule with the definition of $p$")
    # the softmax Jacobian's "factor p_i" row
    p = array("p")
    i, j = indices("i j")
    row = p[i] * sympy.KroneckerDelta(i, j) - p[i] * p[j]
    assert _regrouped(row, p[i] * (sympy.KroneckerDelta(i, j) - p[j]))
    assert not _regrouped(row, p[i] * (sympy.KroneckerDelta(i, j) + p[j]))
    # a block-matrix identity between two arrangements is content, not a tautology
    transformer = NOTES["transformer"]
    assert not _by_definitions(transformer, "Q", "H1 @ swapaxes(reshape(Wq, (d, h, dh)), 0, 1)")
    assert _by_definitions(transformer, "P * (1 - tril(n))", "0 * P")
