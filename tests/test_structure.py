"""Structure: slicing and indexing with NumPy semantics, reshape, concat, stack, split, size
relations (engine/sizes.py), their simplifier rules and a derivation through them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from test_export_programs import load_module

from engine.api import assert_claim, derive, verify
from engine.backends import numpy_backend
from engine.claims import load_claims
from engine.cli import cli
from engine.derive.structure_rules import STRUCTURE_RULES
from engine.export import to_module
from engine.expr import Call, EngineError
from engine.parser import ParseError, build_environment, parse_formula
from engine.printing import to_text
from engine.verify import verify_sides

HEADS = {"d": "h * dh"}
ATTN = {"X": "real[n, d]", "W": "real[dh, dh]"}

# ---------------------------------------------------------------- size relations


def test_relation_substitutes_into_shapes_and_the_verifier_picks_consistent_sizes():
    env = build_environment({"X": "real[n, d]"}, sizes=HEADS)
    X = env.vars["X"]
    assert str(X.shape[1]) == "dh*h"
    r = verify("reshape(X, (n, h, dh))[:, 0] == X[:, :dh]", {"X": "real[n, d]"}, sizes=HEADS)
    assert r.passed, r.report()
    exact, numeric = r.checks
    assert "h=2, dh=3" in exact.detail and "d=" not in exact.detail
    assert "h=4, dh=6" in numeric.detail  # d = 24, next to the other numeric sizes
    assert "d = h*dh" not in r.report()


def test_size_as_a_scalar_is_its_expression():
    r = verify("sum(ones(d)) == h * dh", {"x": "real[d]"}, sizes=HEADS)
    assert r.passed, r.report()
    r = verify("sqrt(d) ** 2 == d", {"x": "real[d]"}, sizes=HEADS)
    assert r.passed, r.report()


def test_relations_chain_and_may_subtract():
    sizes = {"d": "h * dh", "n1": "n - 1"}
    vars_ = {"X": "real[n, d]", "Z": "real[n1, d]"}
    assert_claim("X[1:] - X[:-1] + Z == Z + X[1:] - X[:n1]", vars_, sizes=sizes)


def test_api_assert_claim_and_derive_take_sizes():
    assert_claim("split(X, h, axis=1)[0] == X[:, :dh]", {"X": "real[n, d]"}, sizes=HEADS)
    with pytest.raises(AssertionError):
        assert_claim("split(X, h, axis=1)[1] == X[:, :dh]", {"X": "real[n, d]"}, sizes=HEADS)
    program = derive("sum(X[:, :dh] ** 2)", "X", {"X": "real[n, d]"}, sizes=HEADS)
    assert program.verified


@pytest.mark.parametrize(
    "sizes, message",
    [
        ({"d": "d * 2"}, "a size cannot be defined by itself"),
        ({"d": "h ** 2"}, "only sizes, integers, +, - and * are allowed"),
        ({"d": "h / 2"}, "only sizes, integers, +, - and * are allowed"),
        ({"d": "-h"}, "a size must be positive"),
        ({"d": "0"}, "a size must be positive"),
        ({"d": "h *"}, "cannot read 'h *'"),
        ({"d": "__import__('os')"}, "only sizes, integers, +, - and * are allowed"),
        ({"d": "x * 2"}, "variable 'x' is already a size symbol"),
        ({"a": "d * 2", "d": "h * dh"}, "'d' is already a size"),
        ({"softmax": "h"}, "size name 'softmax' is reserved"),
        ({"d": "h" * 300}, "too long"),
        ({"d": "100000 * h"}, "integer 100000 is too large (limit 64)"),
        ({"d": "h * h * h * h * h"}, "grows too fast (32768 when every size is 8"),
        (["d=h*dh"], "sizes must be a table"),
    ],
)
def test_bad_relations_are_one_line_errors(sizes, message):
    with pytest.raises(ParseError) as info:
        build_environment({"x": "real[n]"}, sizes=sizes)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_variable_cannot_take_a_relation_name():
    with pytest.raises(ParseError, match="variable 'd' is already a size symbol"):
        build_environment({"d": "real"}, sizes=HEADS)


def test_reshape_needs_the_relation():
    with pytest.raises(EngineError) as info:
        parse_formula(
            "reshape(X, (n, h, dh))", build_environment({"X": "real[n, d]", "a": "real[h, dh]"})
        )
    assert "declare a size relation such as d = h * dh" in str(info.value)


def test_toml_sizes_table(tmp_path):
    path = tmp_path / "heads.toml"
    path.write_text(
        '[sizes]\nd = "h * dh"\n[vars]\nX = "real[n, d]"\n'
        '[[claim]]\nname = "head"\nequation = "reshape(X, (n, h, dh))[:, -1] == X[:, d - dh:]"\n'
        '[[claim]]\nname = "bug"\nequation = "reshape(X, (n, h, dh))[:, 0] == X[:, 1:dh + 1]"\n'
        'expect = "fail"\n'
    )
    for claim in load_claims(path):
        assert claim.check().verdict == claim.expect
    path.write_text('[sizes]\nd = 3\n[[claim]]\nequation = "1 == 1"\n')
    with pytest.raises(EngineError, match=r"\[sizes\]: d must be a string"):
        load_claims(path)


def test_cli_size_rel():
    runner = CliRunner()
    args = ["verify", "--var", "X=real[n, d]", "--size-rel", "d=h*dh"]
    ok = runner.invoke(cli, [*args, "split(X, h, axis=-1)[1] == X[:, dh:2*dh]"])
    assert ok.exit_code == 0 and ok.stdout.startswith("PASS claim"), ok.output
    bad = runner.invoke(cli, [*args, "split(X, h, axis=-1)[1] == X[:, :dh]"])
    assert bad.exit_code == 1 and bad.stdout.startswith("FAIL claim")
    err = runner.invoke(cli, ["verify", "--var", "X=real[n, d]", "--size-rel", "d", "X == X"])
    assert err.exit_code == 2 and "is not NAME=VALUE" in err.output
    derived = runner.invoke(
        cli,
        [
            "derive",
            "sum(X[:, :dh] ** 2)",
            "--wrt",
            "X",
            "--var",
            "X=real[n, d]",
            "--size-rel",
            "d=h*dh",
        ],
    )
    assert derived.exit_code == 0, derived.output
    assert "dX = concat([2 * X[:, :dh], 0 * ones(n, dh*h - dh)], axis=1)" in derived.stdout


# ---------------------------------------------------------------- NumPy semantics


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 5),
    cols=st.integers(1, 5),
    a=st.integers(-6, 6),
    b=st.integers(-6, 6),
    i=st.integers(-6, 6),
)
def test_slices_and_indices_follow_numpy_or_are_refused(rows, cols, a, b, i):
    """X[a:b, i] at literal sizes: NumPy's value when the slice is inside the axis and not
    empty and i is a valid position; otherwise a one-line error (NumPy would clip silently)."""
    env = build_environment({"X": f"real[{rows}, {cols}]"})
    text = f"X[{a}:{b}, {i}]"
    a2, b2 = (a + rows if a < 0 else a), (b + rows if b < 0 else b)
    valid = 0 <= a2 < b2 <= rows and -cols <= i < cols
    if not valid:
        with pytest.raises(EngineError) as info:
            parse_formula(text, env)
        assert "\n" not in str(info.value)
        return
    expr = parse_formula(text, env)
    X = np.arange(rows * cols, dtype=float).reshape(rows, cols)
    np.testing.assert_array_equal(numpy_backend.evaluate(expr, {"X": X}, {}), X[a:b, i])
    assert parse_formula(to_text(expr), env) == expr


def test_bounds_outside_the_axis_at_the_sizes_checked_are_errors():
    r = verify("x[:k] + y == y + x[:k]", {"x": "real[n]", "y": "real[k]"})
    assert r.verdict == "error"
    assert "out of range or empty for an axis of length" in r.message
    assert "(at the sizes checked)" in r.message and "\n" not in r.message
    r = verify("x[k] == x[0]", {"x": "real[n]", "y": "real[k]"})
    assert r.verdict == "error" and "index 3 is out of range for an axis of length 2" in r.message


def test_negative_bounds_count_from_the_end_and_print_as_written():
    env = build_environment({"x": "real[n]", "X": "real[n, d]"}, sizes=HEADS)
    for text in ("x[-1]", "x[-2:]", "X[:, -dh:]", "X[-1, :-dh]", "X[:, (h - 1)*dh:]"):
        expr = parse_formula(text, env)
        assert to_text(expr).replace(" ", "") == text.replace(" ", "").replace(
            "(h-1)*dh", "dh*h-dh"
        )
    r = verify("X[:, -dh:] == X[:, d - dh:]", {"X": "real[n, d]"}, sizes=HEADS)
    assert r.passed, r.report()


# ---------------------------------------------------------------- VJPs and simplifier rules


def test_vjp_of_a_slice_is_zero_padded():
    sizes = {**HEADS, "e": "h * dh + dh"}
    env = build_environment({"X": "real[n, d]", "G": "real[n, dh]", "H": "real[n, e]"}, sizes=sizes)
    node = parse_formula("X[:, dh:2*dh]", env)
    vjp = node.spec.vjp(node, env.vars["G"], 0)
    assert to_text(vjp) == "concat([0 * ones(n, dh), G, 0 * ones(n, dh*h - 2*dh)], axis=1)"
    node = parse_formula("concat([X, G], axis=1)", env)
    assert to_text(node.spec.vjp(node, env.vars["H"], 0)) == "H[:, :dh*h]"
    assert to_text(node.spec.vjp(node, env.vars["H"], 1)) == "H[:, dh*h:]"


RULE_CASES = {
    "blockwise_sum": [
        "concat([A, B], axis=1) + concat([C, D], axis=1)",
        "concat([x, y]) - concat([z, w])",
        "concat([A, 0 * ones(n, k)], axis=1) + concat([0 * ones(n, m), D], axis=1)",
    ],
    "slice_of_concat": [
        "concat([A, B], axis=1)[:, m:]",
        "concat([A, B], axis=1)[:, :m]",
        "concat([x, y, x])[n + m:]",
    ],
    "slice_of_scaled": [
        "(2 * concat([A, B], axis=1))[:, m:]",
        "(A / s)[0]",
        "(-x)[1:]",
        "(A * s)[-1, :1]",
    ],
    "concat_of_slices": [
        "concat([A[:, :1], A[:, 1:]], axis=1)",
        "concat([x[:1], x[1:]])",
        "concat([S[:1], S[1:]], axis=0)",
    ],
}
RULE_VARS = {
    "A": "real[n, m]",
    "B": "real[n, k]",
    "C": "real[n, m]",
    "D": "real[n, k]",
    "S": "real[n, n]",
    "x": "real[n]",
    "y": "real[m]",
    "z": "real[n]",
    "w": "real[m]",
    "s": "positive",
}


def test_every_structure_rule_has_cases():
    assert {r.__name__ for r in STRUCTURE_RULES} == set(RULE_CASES)


@pytest.mark.parametrize(
    "rule, text", [(r, t) for r in STRUCTURE_RULES for t in RULE_CASES[r.__name__]]
)
def test_structure_rules_are_verified_identities(rule, text):
    env = build_environment(RULE_VARS)
    node = parse_formula(text, env)
    assert isinstance(node, Call)
    out = rule(node)
    assert out is not None, f"{rule.__name__} does not apply to {text}"
    assert out.shape == node.shape
    result = verify_sides(node, out, env, name=f"{rule.__name__}: {text}")
    assert result.passed, result.report()


@pytest.mark.parametrize(
    "rule, text",
    [
        (STRUCTURE_RULES[0], "concat([A, B], axis=1) + concat([B, A], axis=1)"),  # other blocks
        (STRUCTURE_RULES[1], "concat([A, B], axis=1)[:, 1:]"),  # not one block
        (STRUCTURE_RULES[1], "concat([A, B], axis=1)[1:, :m]"),  # another axis sliced too
        (STRUCTURE_RULES[2], "(A * C)[0]"),  # no scalar factor
        (STRUCTURE_RULES[2], "(s / A)[0]"),  # the array divides
        (STRUCTURE_RULES[3], "concat([A[:, 1:], A[:, :1]], axis=1)"),  # out of order
        (STRUCTURE_RULES[3], "concat([A[:, :1], C[:, 1:]], axis=1)"),  # two arrays
    ],
)
def test_structure_rules_do_not_fire_where_the_identity_fails(rule, text):
    node = parse_formula(text, build_environment(RULE_VARS))
    assert isinstance(node, Call) and rule(node) is None


# ---------------------------------------------------------------- derive and export


LOSS = "sum(concat([X[:, :dh] @ W, X[:, dh:]], axis=1) ** 2)"


def test_derive_through_a_slice_and_a_concat_reads_as_a_block_program():
    program = derive(LOSS, ["X", "W"], ATTN, sizes=HEADS)
    assert program.verified
    assert program.to_text().splitlines() == [
        "dX = concat([2 * (X[:, :dh] @ W @ W.T), 2 * X[:, dh:]], axis=1)",
        "dW = 2 * (X[:, :dh].T @ (X[:, :dh] @ W))",
    ]
    latex = program.to_latex()
    assert r"\begin{bmatrix} 2 X_{:, 1:dh} W W^\top & 2 X_{:, dh + 1:dh h} \end{bmatrix}" in latex


@pytest.mark.parametrize("target", ["torch", "numpy"])
def test_exported_block_program_matches_torch_autograd(target, tmp_path):
    program = derive(LOSS, ["X", "W"], ATTN, sizes=HEADS)
    module = load_module(to_module(program, target), tmp_path, f"blocks_{target}")
    rng = np.random.default_rng(0)
    X, W = rng.standard_normal((5, 12)), rng.standard_normal((4, 4))  # h = 3 heads of dh = 4
    value, grads = module.value_and_grad(X, W)
    Xt = torch.tensor(X, requires_grad=True)
    Wt = torch.tensor(W, requires_grad=True)
    loss = torch.sum(torch.cat([Xt[:, :4] @ Wt, Xt[:, 4:]], dim=1) ** 2)
    loss.backward()
    np.testing.assert_allclose(np.asarray(value), loss.item(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grads["X"]), Xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(grads["W"]), Wt.grad.numpy(), rtol=1e-12)
    src = to_module(program, target)
    assert "    dh = W.shape[0]\n" in src and "h = " not in src.replace("dh = ", "")


@pytest.mark.parametrize(
    "text, program",
    [
        ("jacobian(concat([x[1:], x[:1]]), x)", "J = concat([eye(n)[n-1:], eye(n)[:n-1]]).T"),
        ("jacobian(reshape(stack([x, x], axis=1), (2 * n,)), x)", None),
        ("jacobian(tanh(x)[-2:] * x[0], x)", None),
    ],
)
def test_jacobians_through_structure_are_derived_and_verified(text, program):
    derived = derive(text, None, {"x": "real[n]"})
    assert derived.verified and derived.kind == "jacobian"
    if program is not None:
        assert derived.to_text() == program
