"""Tensors of any rank: batched @, axes, tuple-axis reductions, einsum, and derive at rank 4."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import derive
from engine.backends import numpy_backend
from engine.derive import tensor_rules
from engine.derive.simplify import simplify
from engine.expr import Call, EngineError, Var, call
from engine.functions.tensor import parse_subscripts
from engine.parser import build_environment, parse_formula
from engine.printing import to_latex, to_text
from engine.verify import verify_sides

VARS = {
    "Q": "real[B, h, n, d]",
    "K": "real[B, h, n, d]",
    "T": "real[b, n, k]",
    "U": "real[b, k, m]",
    "A": "real[n, k]",
    "S": "real[n, n]",
    "x": "real[k]",
    "y": "real[n]",
    "F": "real[b, 1, n, k]",
    "R": "real[h, k, n]",
}
ENV = build_environment(VARS)


def parse(text: str):
    return parse_formula(text, ENV)


def shape_text(e) -> str:
    return ", ".join(str(d) for d in e.shape)


# ---------------------------------------------------------------- shapes (numpy.matmul)


@pytest.mark.parametrize(
    "text, shape",
    [
        ("T @ U", "b, n, m"),
        ("Q @ swapaxes(K, -1, -2)", "B, h, n, n"),
        ("T @ x", "b, n"),
        ("y @ T", "b, k"),
        ("A @ U", "b, n, m"),
        ("F @ U", "b, b, n, m"),  # batch axes (b, 1) and (b,) broadcast to (b, b)
        ("transpose(Q, (0, 2, 1, 3))", "B, n, h, d"),
        ("swapaxes(Q, 0, 3)", "d, h, n, B"),
        ("sum(Q, axis=(0, 2))", "h, d"),
        ("mean(Q, axis=(1, -1), keepdims=True)", "B, 1, n, 1"),
        ("squeeze(F, 1)", "b, n, k"),
        ("squeeze(F)", "b, n, k"),
        ("expand_dims(A, axis=(0, 2))", "1, n, 1, k"),
        ("ones(B, h, n, d)", "B, h, n, d"),
        ('einsum("bhid,bhjd->bhij", Q, K)', "B, h, n, n"),
        ('einsum("ii->", S)', ""),
        ('einsum("bnk,bkm,k->bnm", T, U, x)', "b, n, m"),
    ],
)
def test_shapes_follow_numpy(text, shape):
    assert shape_text(parse(text)) == shape


def test_shapes_match_numpy_at_concrete_sizes():
    sizes = {"B": 2, "h": 3, "n": 4, "d": 5, "b": 3, "k": 2, "m": 6}
    rng = np.random.default_rng(0)
    for text in ("T @ U", "F @ U", "y @ T", "T @ x", "A @ U", "Q @ swapaxes(K, -1, -2)"):
        e = parse(text)
        values = {
            name: rng.standard_normal(
                tuple(sizes[str(s)] if not s.is_Integer else int(s) for s in v.shape)
            )
            for name, v in ENV.vars.items()
        }
        got = numpy_backend.evaluate(e, values, sizes)
        want_shape = tuple(sizes[str(s)] if not s.is_Integer else int(s) for s in e.shape)
        assert got.shape == want_shape, text


@pytest.mark.parametrize(
    "text, message",
    [
        ("Q.T", ".T (transpose without axes) is defined for rank <= 2, got rank 4; use swapaxes"),
        ("transpose(T)", "use swapaxes(x, -1, -2) or transpose(x, axes)"),
        ("T @ T", "@: inner dimensions differ"),
        ("T @ R", "@: batch axes do not broadcast: (b, n, k) @ (h, k, n)"),
        ("transpose(T, (0, 1))", "transpose(): axes must be a tuple of 3 axes"),
        ("transpose(T, (0, 1, 1))", "are not a permutation"),
        ("swapaxes(T, 0)", "swapaxes() needs two axes"),
        ("swapaxes(T, 0, 3)", "swapaxes(): axis 3 is out of range for an array of rank 3"),
        ("sum(T, axis=(0, 0))", "sum(): axis (0, 0) repeats an axis"),
        ("sum(T, axis=(0, 3))", "sum(): axis 3 is out of range"),
        ("softmax(T, axis=(1, 5))", "softmax(): axis 5 is out of range"),
        ("squeeze(T, 1)", "squeeze(): axis 1 has length n, not 1"),
        ("expand_dims(A, axis=(0, 0))", "expand_dims(): axis (0, 0) repeats an axis"),
        ("sum(T, axis=((0, 1),))", "axis entry must be a small integer"),
        ("swapaxes(T, 0, 1, 2)", "swapaxes() takes 1 array argument and at most 2 more"),
        ("swapaxes(T, 0, 1, axis1=0)", "swapaxes(): axis1 is given twice"),
        ("transpose(T, (2, 1, 0), axes=(2, 1, 0))", "transpose(): axes is given twice"),
        ("ones(n, n, n, n, n, n, n, n, n)", "ones() takes 1 to 8 sizes, got 9"),
    ],
)
def test_bad_tensor_formulas_are_one_line_errors(text, message):
    with pytest.raises(EngineError) as info:
        parse(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- einsum's grammar


@pytest.mark.parametrize(
    "text, message",
    [
        ('einsum("bhid,bhjd", Q, K)', "need an explicit '->' and output"),
        ('einsum("...id,...jd->...ij", Q, K)', "ellipsis '...' is not supported"),
        ('einsum("bhid,bhjd->bhiz", Q, K)', "output letter 'z' appears in no input"),
        ('einsum("bhid,bhjd->bhii", Q, K)', "output 'bhii' repeats a letter"),
        ('einsum("ij,jk->ik", A, A)', "letter 'j' has sizes k and n"),
        ('einsum("ijk,jk->i", A, A)', "operand 1 has rank 2 but subscripts 'ijk' name 3 axes"),
        ('einsum("ij,jk->ik", A)', "name 2 operands, got 1"),
        ('einsum("i j->ij", A)', "cannot read subscripts"),
        ('einsum("i1->i", x)', "cannot read subscripts"),
        ('einsum("ij->ji")', "takes 1 to 3 operands, got 0"),
        ('einsum("i,i,i,i->", x, x, x, x)', "takes 1 to 3 operands, got 4"),
        ("einsum(A)", 'takes a subscripts string first, e.g. einsum("ij,jk->ik", A, B)'),
        ('einsum(A, "ij->ji")', "takes a subscripts string first"),
        ('einsum("ij->ji", A, subscripts="ij->ji")', "einsum() has no parameter 'subscripts'"),
        ('sum("ij")', "constant 'ij' is not allowed (only numbers)"),
        ('A + "x"', "constant 'x' is not allowed (only numbers)"),
        ('einsum(f"ij->ji", A)', "takes a subscripts string first"),
        ('einsum("' + "i" * 65 + '->", x)', "subscripts are too long"),
    ],
)
def test_einsum_grammar_is_strict(text, message):
    with pytest.raises(EngineError) as info:
        parse(text)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_subscripts_parse():
    sub = parse_subscripts("bhid,bhjd->bhij", 2)
    assert sub.inputs == ("bhid", "bhjd") and sub.output == "bhij" and sub.summed() == "d"
    assert parse_subscripts("ii->", 1).summed() == "i"
    assert parse_subscripts(",i->i", 2).inputs == ("", "i")  # a scalar operand


# ---------------------------------------------------------------- printing

ROUND_TRIP = [
    "Q @ swapaxes(K, -1, -2)",
    'einsum("bhid,bhjd->bhij", Q, K)',
    'einsum("ii->", S @ S) * 2',
    "transpose(Q, (0, 2, 1, 3))",
    "transpose(A, (1, 0)) @ A.T.T",
    "sum(Q, axis=(0, 2)) + mean(Q, axis=(0, 2))",
    "softmax(Q, axis=(2, 3)) - log_softmax(Q, axis=(-1,))",
    "squeeze(F, 1) + squeeze(F) + squeeze(F, axis=(1,))",
    "expand_dims(A, axis=(0, 2)) * ones(b, n, 1, k)",
    "swapaxes(T @ U, 0, 1)",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_text_round_trip(text):
    tree = parse(text)
    assert parse(to_text(tree)) == tree, to_text(tree)


@pytest.mark.parametrize(
    "text, latex",
    [
        ("Q @ swapaxes(K, -1, -2)", r"Q K^\top"),
        ('einsum("bhid,bhjd->bhij", Q, K)', r"\left[\sum_{d} Q_{bhid} K_{bhjd}\right]_{bhij}"),
        ('einsum("ii->", S @ S)', r"\left(\sum_{i} \left(S S\right)_{ii}\right)"),
        ('einsum("i,j->ij", y, x)', r"\left[y_{i} x_{j}\right]_{ij}"),
        ("swapaxes(Q, 0, 2)", r"\operatorname{swapaxes}_{0,2}\left(Q\right)"),
        ("transpose(Q, (0, 2, 1, 3))", r"Q^{\top_{(0,2,1,3)}}"),
        ("sum(Q, axis=(0, 2))", r"{\textstyle\sum}_{\text{axes}\,0,2}\left(Q\right)"),
        ("sum(Q, axis=(0, 1, 2, 3))", r"{\textstyle\sum}\left(Q\right)"),
        ("softmax(Q, axis=(2, 3))", r"\operatorname{softmax}_{\text{axes}\,2,3}\left(Q\right)"),
        ("squeeze(F, 1)", "F"),
    ],
)
def test_latex_forms(text, latex):
    assert to_latex(parse(text)) == latex


# ---------------------------------------------------------------- the rewrite rules are identities

# One instance of every rule in tensor_rules: (vars, the node it rewrites).
RULE_CASES = {
    "swapaxes_same_axis": ("swapaxes(T, 1, -2)", {}),
    "swapaxes_involution": ("swapaxes(swapaxes(T, 0, 2), -1, 0)", {}),
    "swapaxes_of_matrix": ("swapaxes(A, 1, 0)", {}),
    "swapaxes_of_product": ("swapaxes(T @ U, -1, -2)", {}),
    "swapaxes_of_scaled": ("swapaxes(T / s, 0, 1)", {"s": "positive"}),
    "transpose_identity": ("transpose(T, (0, 1, 2))", {}),
    "transpose_compose": ("transpose(transpose(T, (1, 2, 0)), (2, 0, 1))", {}),
    "einsum_pull_scalar": ('einsum("bnk,bkm->bnm", T, U / s)', {"s": "positive"}),
    "sum_of_sum_keepdims": ("sum(sum(T, axis=0, keepdims=True), axis=(1, -1), keepdims=True)", {}),
    "sum_over_unit_axes": ("sum(F, axis=(1,))", {}),
    "expand_dims_of_reduction": ("expand_dims(mean(T, axis=(0, 2)), axis=(2, 0))", {}),
    "einsum_identity": ('einsum("bnk->bnk", T)', {}),
    "einsum_scalar_operand": ('einsum(",bnk,k->bn", s, T, x)', {"s": "positive"}),
    "squeeze_of_expand_dims": ("squeeze(expand_dims(T, axis=(0, -1)), (0, 4))", {}),
    "expand_dims_of_scalar": ("expand_dims(s, axis=(0, 1))", {"s": "positive"}),
    "transpose_of_matrix": ("transpose(A, (1, 0))", {}),
}


def test_every_rule_has_a_case():
    assert set(RULE_CASES) == {r.__name__ for r in tensor_rules.ALL_RULES}


@pytest.mark.parametrize("rule", tensor_rules.ALL_RULES, ids=lambda r: r.__name__)
def test_rule_is_a_verified_identity(rule):
    text, extra = RULE_CASES[rule.__name__]
    env = build_environment({**VARS, **extra})
    node = parse_formula(text, env)
    out = rule(node)
    assert out is not None, f"{rule.__name__} does not fire on {text}"
    assert out.shape == node.shape
    result = verify_sides(node, out, env, name=rule.__name__)
    assert result.passed, result.report()


def test_reduction_rules_in_their_other_forms():
    cases = {
        "sum(mean(T, axis=2, keepdims=True), axis=0, keepdims=True)": None,  # sum of a mean
        "sum(sum(T, axis=2, keepdims=True), axis=0)": None,  # the outer one drops its axis
        "mean(mean(T, axis=2, keepdims=True), axis=0, keepdims=True)": "sum_of_sum_keepdims",
        "sum(F, axis=1, keepdims=True)": "sum_over_unit_axes",
        "expand_dims(squeeze(F, 1), axis=1)": "expand_dims_of_reduction",
        "expand_dims(logsumexp(T, axis=-1), axis=2)": "expand_dims_of_reduction",
        "expand_dims(sum(T, axis=1), axis=0)": None,  # another position: no rule
    }
    for text, name in cases.items():
        node = parse(text)
        fired = [r.__name__ for r in tensor_rules.ALL_RULES if r(node) is not None]
        assert fired == ([name] if name else []), text
        for rule in tensor_rules.ALL_RULES:
            out = rule(node)
            if out is not None:
                assert verify_sides(node, out, ENV).passed, text


def test_tuple_axis_derivative_reads_as_a_keepdims_sum():
    program = derive(
        "sum(expand_dims(sum(X, axis=(0, 2)), axis=(0, 2)) * X)", ["X"], {"X": "real[a, b, c]"}
    )
    assert program.verified
    assert "expand_dims" not in program.to_text() and "squeeze" not in program.to_text()


def test_scaled_and_negated_operands():
    env = build_environment({**VARS, "s": "real"})
    cases = {
        "swapaxes(-T, 0, 1)": tensor_rules.swapaxes_of_scaled,
        "swapaxes(s * T, 0, 1)": tensor_rules.swapaxes_of_scaled,
        "swapaxes(T * s, 0, 2)": tensor_rules.swapaxes_of_scaled,
        'einsum("bnk,bkm->bnm", -T, U)': tensor_rules.einsum_pull_scalar,
        'einsum("bnk,bkm->bnm", T, s * U)': tensor_rules.einsum_pull_scalar,
        'einsum("bnk,k->bn", T * s, x)': tensor_rules.einsum_pull_scalar,
    }
    for text, rule in cases.items():
        node = parse_formula(text, env)
        out = rule(node)
        assert out is not None and verify_sides(node, out, env).passed, text


def test_simplifier_reaches_textbook_forms():
    env = build_environment({**VARS, "s": "positive"})
    cases = {
        "swapaxes(swapaxes(K, -1, -2), -1, -2)": "K",
        "swapaxes(T @ U / s, -1, -2)": "swapaxes(U, -1, -2) @ swapaxes(T, -1, -2) / s",
        "swapaxes(-(swapaxes(U, 1, 2) @ swapaxes(T, 1, 2)), 1, 2)": "-(T @ U)",
        "transpose(transpose(T, (1, 2, 0)), (2, 0, 1))": "T",
        "swapaxes(A, 0, 1) @ y": "A.T @ y",
    }
    for source, want in cases.items():
        assert to_text(simplify(parse_formula(source, env))) == want, source


# ------------------------------------------------------------- einsum's VJP at random subscripts


@st.composite
def einsum_specs(draw):
    """Random valid subscripts over the letters i, j, k (sizes 2, 3, 4) with 1 to 3 operands."""
    operands = draw(st.integers(1, 3))
    inputs = [
        "".join(draw(st.lists(st.sampled_from("ijk"), min_size=0, max_size=3)))
        for _ in range(operands)
    ]
    used = sorted(set("".join(inputs)))
    output = "".join(draw(st.permutations(used))[: draw(st.integers(0, len(used)))])
    return ",".join(inputs) + "->" + output


LETTER_SIZE = {"i": 2, "j": 3, "k": 4}


@settings(max_examples=40, deadline=None)
@given(einsum_specs(), st.integers(0, 2**32 - 1))
def test_einsum_vjp_against_complex_step(spec, seed):
    """The VJP of every operand of a random einsum against the numeric route's complex-step
    gradient of sum(G * einsum(...)); the SymPy form against the NumPy form at the same point."""
    inputs, output = spec.split("->")
    letters = inputs.split(",")
    vars_ = {
        f"X{p}": f"real[{', '.join(str(LETTER_SIZE[c]) for c in s)}]" if s else "real"
        for p, s in enumerate(letters)
    }
    out_shape = ", ".join(str(LETTER_SIZE[c]) for c in output)
    vars_["G"] = f"real[{out_shape}]" if output else "real"
    env = build_environment(vars_)
    ops = ", ".join(f"X{p}" for p in range(len(letters)))
    node = parse_formula(f'einsum("{spec}", {ops})', env)
    rng = np.random.default_rng(seed)
    values = {k: rng.standard_normal(tuple(int(d) for d in v.shape)) for k, v in env.vars.items()}
    g = env.vars["G"]
    loss = call("sum", g * node)
    want = np.einsum(spec, *(values[f"X{p}"] for p in range(len(letters))))
    np.testing.assert_allclose(
        numpy_backend.evaluate(node, values, {}), want, rtol=1e-12, atol=1e-12
    )
    for i, arg in enumerate(node.args):
        got = numpy_backend.evaluate(node.spec.vjp(node, g, i), values, {})
        ref = numpy_backend.gradient(loss, arg, values, {})
        np.testing.assert_allclose(np.broadcast_to(got, ref.shape), ref, rtol=1e-10, atol=1e-10)
        assert np.shape(got) == ref.shape, spec


def test_einsum_vjp_of_a_diagonal_is_verified():
    env = build_environment({"S": "real[n, n]", "G": "real[n]"})
    node = parse_formula('einsum("ii->i", S)', env)
    g = env.vars["G"]
    lhs = call("grad", call("sum", g * node), env.vars["S"])
    assert verify_sides(lhs, node.spec.vjp(node, g, 0), env).passed


# ---------------------------------------------------------------- derive at rank 3 and 4

MHA_VARS = {
    "Q": "real[B, h, n, dh]",
    "K": "real[B, h, n, dh]",
    "V": "real[B, h, n, dh]",
    "G": "real[B, h, n, dh]",
}
MHA_LOSS = "sum(G * (softmax(Q @ swapaxes(K, -1, -2) / sqrt(dh)) @ V))"
# The single-head program of tests/test_derive.py ("attention-without-defs"), with K.T written
# as the batched transpose swapaxes(K, -1, -2): one P, dP, dS per (batch entry, head).
MHA_PROGRAM = """
P = softmax(Q @ swapaxes(K, -1, -2) / sqrt(dh))
dP = G @ swapaxes(V, -1, -2)
dS = P * (dP - sum(P * dP, axis=-1, keepdims=True))
dQ = dS @ K / sqrt(dh)
dK = swapaxes(dS, -1, -2) @ Q / sqrt(dh)
dV = swapaxes(P, -1, -2) @ G
"""


def test_multi_head_attention_derives_the_textbook_program():
    program = derive(MHA_LOSS, ["Q", "K", "V"], MHA_VARS)  # verified by both routes
    assert program.verified
    assert program.to_text() == MHA_PROGRAM.strip()
    for _, result in program.results:
        assert "exact at B=2, h=3, n=4, dh=5" in result.summary()


CAUSAL_MHA_LOSS = "sum(G * (softmax(where(tril(n), Q @ swapaxes(K, -1, -2) / sqrt(dh), -inf)) @ V))"
# The causal mask shows once: dS is the cotangent of the scores S, zero above the diagonal.
CAUSAL_MHA_PROGRAM = """
P = softmax(where(tril(n), Q @ swapaxes(K, -1, -2) / sqrt(dh), -inf))
dP = G @ swapaxes(V, -1, -2)
dS = where(tril(n), P * (dP - sum(P * dP, axis=-1, keepdims=True)), 0)
dQ = dS @ K / sqrt(dh)
dK = swapaxes(dS, -1, -2) @ Q / sqrt(dh)
dV = swapaxes(P, -1, -2) @ G
"""


def test_causal_multi_head_attention_derives_the_textbook_program():
    program = derive(CAUSAL_MHA_LOSS, ["Q", "K", "V"], MHA_VARS)  # verified by both routes
    assert program.verified
    assert program.to_text() == CAUSAL_MHA_PROGRAM.strip()


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_program_against_torch_autograd(causal, tmp_path):
    """The exported PyTorch program against torch.autograd through PyTorch's own
    scaled_dot_product_attention (nothing shared with the engine), with and without its causal
    mask (is_causal=True)."""
    torch = pytest.importorskip("torch")
    from test_export_programs import load_module

    from engine.export import to_module

    loss = CAUSAL_MHA_LOSS if causal else MHA_LOSS
    program = derive(loss, ["Q", "K", "V"], MHA_VARS, verify=False)
    module = load_module(to_module(program, "torch"), tmp_path, f"mha_torch_{causal}")
    rng = np.random.default_rng(6 if causal else 5)
    inputs = {k: rng.standard_normal((2, 3, 7, 5)) for k in ("Q", "K", "V", "G")}
    value, grads = module.value_and_grad(*inputs.values())
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in inputs.items()}
    out = torch.nn.functional.scaled_dot_product_attention(t["Q"], t["K"], t["V"], is_causal=causal)
    ref = torch.sum(t["G"] * out)
    ref_grads = torch.autograd.grad(ref, [t["Q"], t["K"], t["V"]])
    assert math.isclose(float(value), float(ref.detach()), rel_tol=1e-12)
    for name, want in zip("QKV", ref_grads, strict=True):
        np.testing.assert_allclose(grads[name].numpy(), want.numpy(), rtol=1e-10, atol=1e-12)


def test_multi_head_attention_through_einsum_verifies():
    loss = 'sum(G * (softmax(einsum("bhid,bhjd->bhij", Q, K) / sqrt(dh)) @ V))'
    program = derive(loss, ["Q", "K"], MHA_VARS)
    assert program.verified
    text = program.to_text()
    assert text.splitlines()[0] == 'P = softmax(einsum("bhid,bhjd->bhij", Q, K) / sqrt(dh))'
    assert text.splitlines()[3:] == [
        'dQ = einsum("bhij,bhjd->bhid", dS, K) / sqrt(dh)',
        'dK = einsum("bhij,bhid->bhjd", dS, Q) / sqrt(dh)',
    ]


@pytest.mark.parametrize(
    "loss, wrt, vars_, expected",
    [
        ("sum(X)", ["X"], {"X": "real[B, h, n, d]"}, "dX = ones(B, h, n, d)"),
        (
            "sum(G * (X @ W))",
            ["W"],
            {"X": "real[b, n, k]", "W": "real[k, m]", "G": "real[b, n, m]"},
            "dW = sum(swapaxes(X, -1, -2) @ G, axis=0)",
        ),
        (
            "sum(mean(X, axis=(0, 2)) ** 2)",
            ["X"],
            {"X": "real[b, n, k]"},
            None,
        ),
        (
            "sum(G * transpose(X, (2, 0, 1)))",
            ["X"],
            {"X": "real[b, n, k]", "G": "real[k, b, n]"},
            "dX = transpose(G, (1, 2, 0))",
        ),
        (
            "logsumexp(X, axis=(1, 2)) @ w",
            ["X", "w"],
            {"X": "real[b, n, k]", "w": "real[b]"},
            None,
        ),
        (
            "sum(squeeze(X, 1) * Y)",
            ["X"],
            {"X": "real[b, 1, k]", "Y": "real[b, k]"},
            "dX = expand_dims(Y, axis=1)",
        ),
    ],
)
def test_derive_at_rank_three_and_four(loss, wrt, vars_, expected):
    program = derive(loss, wrt, vars_)
    assert program.verified, program.to_text()
    if expected is not None:
        assert program.to_text() == expected


def test_derive_refusal_of_ones_is_gone():
    """derive of a rank-3 variable once failed with "ones() takes 1 to 2 sizes"."""
    program = derive("sum(exp(X))", ["X"], {"X": "real[a, b, c]"})
    assert program.to_text() == "dX = exp(X)"


def test_batched_matmul_vjps_reduce_broadcast_axes():
    # W of literal small sizes: the numeric route's gradient of W goes coordinate by coordinate
    env = build_environment(
        {"X": "real[b, 1, n, k]", "W": "real[2, k, 3]", "G": "real[b, 2, n, 3]"}
    )
    node = parse_formula("X @ W", env)
    assert isinstance(node, Call) and shape_text(node) == "b, 2, n, 3"
    g = env.vars["G"]
    for i, arg in enumerate(node.args):
        assert isinstance(arg, Var)
        lhs = call("grad", call("sum", g * node), arg)
        rhs = node.spec.vjp(node, g, i)
        assert rhs.shape == arg.shape
        assert verify_sides(lhs, rhs, env).passed


# ---------------------------------------------------------------- every type at rank 3 and 4


@pytest.mark.parametrize("vtype", ["real", "positive", "unit", "simplex", "onehot"])
def test_types_sample_at_rank_four(vtype):
    """Both routes draw admissible points of every type at rank 3 and 4 (rows along the last
    axis for simplex and onehot), at every numeric profile."""
    from engine.types import PROFILES, TYPES

    t = TYPES[vtype]
    rng = np.random.default_rng(1)
    for shape in ((2, 3, 4), (2, 3, 4, 5)):
        exact = t.exact(rng, shape)
        assert exact.shape == shape and t.admits(np.asarray(exact, dtype=float))
        for profile in PROFILES:
            x = t.numeric(rng, shape, profile)
            assert x.shape == shape and t.admits(x), (vtype, shape, profile)


def test_rank_four_claim_through_the_cli_path():
    """A claim over rank-4 variables by both routes, and a planted wrong scale caught."""
    from engine import verify

    vars_ = {"Q": "simplex[B, h, n, d]", "K": "real[B, h, n, d]"}
    assert verify("sum(Q, axis=-1) == ones(B, h, n)", vars_).passed
    bad = verify("sum(Q * K, axis=(0, 1)) == mean(Q * K, axis=(0, 1))", vars_)
    assert not bad.passed and bad.verdict == "fail"
