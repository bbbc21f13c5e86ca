"""Every rewrite rule of the simplifier is a verified identity: each example of a rule, and random
instances of it (its variables replaced by random expressions of the same shape and sign), becomes
the claim `node == rule(node)`, checked by the verifier's two routes."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.derive.simplify import EXAMPLE_DEFS, EXAMPLE_VARS, RULES, Rewriter, Rule
from engine.expr import Expr
from engine.parser import build_environment, parse_formula
from engine.verify import verify_sides

ENV = build_environment(EXAMPLE_VARS, EXAMPLE_DEFS)
REWRITER = Rewriter(ENV.defs)

# Replacements of a variable by an expression of the same shape and (for positive variables)
# sign: a rule's pattern must hold whatever stands in its leaves.
STAND_INS = {
    "x": ["x", "y", "exp(y) - x", "3 * sigmoid(x)", "x * y + 1", "tanh(y) - 2 * x"],
    "y": ["y", "x", "y * y - 1", "softplus(x) - y"],
    "s": ["s", "exp(s)", "s * s - 1", "sigmoid(s) - 0.5", "sum(x)"],
    "a": ["a", "exp(s)", "a * a + 1", "sum(v)"],
    "v": ["v", "exp(x)", "v + 1", "v * a"],
    "A": ["A", "B", "A @ B", "A.T", "A - B", "tanh(A)"],
    "B": ["B", "A", "B * B - A", "exp(A)"],
    "X": ["X", "tanh(X)", "2 * X - 1", "A @ X"],
    "w": ["w", "exp(w)", "w * w - 1"],
    "Z": ["Z", "tanh(Z)", "Z * 2 - 1"],
    "u": ["u", "sigmoid(s)", "u * u"],
    # tensors of any rank (issue 8, rank >= 3 residue rules)
    "T3": ["T3", "tanh(T3)", "2 * T3 - 1", "exp(T3) * T3"],
    "R3": ["R3", "sigmoid(R3)", "R3 * R3 - 1"],
}


def _substitute(text: str, choice: dict[str, str]) -> str:
    """`text` with each variable replaced by its stand-in (parameters like axis= untouched)."""
    return re.sub(
        r"\b([A-Za-z_]\w*)\b(?!\s*=)",
        lambda m: f"({choice[m.group(1)]})" if m.group(1) in choice else m.group(1),
        text,
    )


def _node(example: str | Callable[[], Expr]) -> Expr:
    return parse_formula(example, ENV) if isinstance(example, str) else example()


def _check(
    rule: Rule, text: str | Callable[[], Expr], require: bool, singular_ok: bool = False
) -> bool:
    """Apply `rule` to the root of `text`; verify node == rewrite (True if the rule fired).

    With `singular_ok`, an instance whose left side is not finite where the verifier samples
    (a stand-in such as s * s - 1 in a denominator, at s = 1) says nothing about the rule:
    False, as for a node the rule does not rewrite."""
    node = _node(text)
    out = rule.apply(node, REWRITER)
    if out is None:
        assert not require, f"rule {rule.name} does not rewrite its own example {text!r}"
        return False
    assert out.shape == node.shape, f"{rule.name} changed the shape of {text!r}"
    result = verify_sides(node, out, ENV, name=f"{rule.name}: {text}")
    if singular_ok and result.verdict == "error" and "left side is not finite" in result.message:
        return False
    assert result.passed, f"rule {rule.name} ({rule.doc}) is not an identity:\n{result.report()}"
    return True


CASES = [(r, ex) for r in RULES for ex in r.examples]
IDS = [f"{r.name}:{ex if isinstance(ex, str) else 'built'}" for r, ex in CASES]


def test_every_rule_is_named_documented_and_has_examples():
    names = [r.name for r in RULES]
    assert len(names) == len(set(names)), "two rules share a name"
    for r in RULES:
        assert r.doc and "=" in r.doc, f"rule {r.name}: its docstring must state its identity"
        assert r.examples, f"rule {r.name} has no example to verify it on"
        assert r.fns


@pytest.mark.parametrize("rule,text", CASES, ids=IDS)
def test_rule_example_is_a_verified_identity(rule: Rule, text: str | Callable[[], Expr]):
    node = _node(text)
    assert node.fn in rule.fns, f"{text!r} is not a node the rule {rule.name} rewrites"
    _check(rule, text, require=True)


TEXT_RULES = [r for r in RULES if any(isinstance(ex, str) for ex in r.examples)]


@pytest.mark.parametrize("rule", TEXT_RULES, ids=[r.name for r in TEXT_RULES])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_rule_random_instance_is_a_verified_identity(rule: Rule, data):
    text = data.draw(st.sampled_from([ex for ex in rule.examples if isinstance(ex, str)]))
    used = [name for name in STAND_INS if re.search(rf"\b{name}\b(?!\s*=)", text)]
    choice = {name: data.draw(st.sampled_from(STAND_INS[name]), label=name) for name in used}
    # an instance the rule does not rewrite says nothing: hypothesis draws another
    assume(_check(rule, _substitute(text, choice), require=False, singular_ok=True))


def test_a_false_rule_would_be_caught():
    """The check is not vacuous: a rule stating a wrong identity fails it."""

    def wrong(n):
        """x - y = y - x."""
        a, b = n.args
        return b - a

    with pytest.raises(AssertionError, match="not an identity"):
        _check(Rule("wrong", ("sub",), wrong, ("x - y",)), "x - y", require=True)
