"""The export rewrites of engine.export.shrink: each is an identity, checked three ways.

1. The rewritten tree the rule produces is verified equal to the original by the project's own
   verifier (exact SymPy and numeric routes); false variants (a factor that varies along the
   reduced axis, a variance without centring) are rejected by it, and the rules refuse them.
2. The exported code of each case equals the registry's NumPy evaluation of the original.
3. The LayerNorm program's export no longer computes the mean twice, runs no one-pass variance
   kernel, divides no full array before a sum, and builds no xhat * g + b for its value.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_export_lowering import _check
from test_export_programs import SIZES, sample_inputs

from engine.api import verify
from engine.backends import numpy_backend
from engine.derive import derive
from engine.derive.program import Program
from engine.export import load, to_module
from engine.export.shrink import (
    pull_out_of_reduction,
    small_first,
    total_of_product,
    two_pass_var,
)
from engine.expr import Call, call
from engine.functions.base import params_of
from engine.parser import build_environment, parse_formula
from engine.printing.text import to_text

VARS = {
    "A": "real[n, k]",
    "B": "real[n, k]",
    "T": "real[h, n, k]",
    "U": "real[h, n, k]",
    "Q": "real[n, n]",
    "m": "real[n, 1]",
    "c": "real[k]",
    "r": "real[n]",
    "s": "positive",
}
ENV = build_environment(VARS)


def _sum_of(a, b):
    """The registry's sum(a * b), standing in for the emitter's fused dot product."""
    return call("sum", a * b)


def rewrite(text: str):
    """The tree a shrink rule makes of `text` (a reduction, product or full sum), or None."""
    e = parse_formula(text, ENV)
    assert isinstance(e, Call)
    p = params_of(e) if e.fn in ("sum", "mean", "var") else {}
    if e.fn == "var":
        return two_pass_var(e.args[0], p["axis"], p["keepdims"])
    if e.fn == "sum" and p["axis"] is None and not p["keepdims"]:
        inner = e.args[0]
        if isinstance(inner, Call) and inner.fn == "mul":
            a, b = inner.args
            out = total_of_product(a, b, _sum_of) if a.shape == inner.shape else None
            if out is not None:
                return out
    if e.fn in ("sum", "mean"):
        params = dict(e.params)
        return pull_out_of_reduction(
            e.fn, e.args[0], p["axis"], p["keepdims"], lambda fn, x: call(fn, x, **params)
        )
    return small_first(e.fn, *e.args, e.shape)


# (original, a fragment of the rewrite's text that shows the rule acted)
IDENTITIES = [
    ("sum(A * m, axis=1, keepdims=True)", "sum(A, axis=1, keepdims=True) * m"),
    ("sum(A / m, axis=-1, keepdims=True)", "sum(A, axis=-1, keepdims=True) / m"),
    ("mean(-(A * m) / s, axis=1, keepdims=True)", "-(mean(A, axis=1, keepdims=True) * m) / s"),
    ("sum(A * c, axis=0)", "sum(A, axis=0) * c"),
    ("sum(T * c, axis=(0, 1))", "sum(T, axis=(0, 1)) * c"),
    ("mean(A * s * m, axis=1, keepdims=True)", "mean(A, axis=1, keepdims=True) * s * m"),
    ("var(A, axis=1, keepdims=True)", "mean((A - mean(A, axis=1, keepdims=True))"),
    ("var(A, axis=0)", "mean((A - mean(A, axis=0, keepdims=True))"),
    ("var(A)", "mean((A - mean(A))"),
    ("(A * m) / s", "A * (m / s)"),
    ("(m * A) / s", "m / s * A"),
    ("(A * m) * m", "A * (m * m)"),
    ("(m / s * A) / s", "m / s / s * A"),
    ("(m * A) / c", None),  # m / c is (n, k): no smaller pair
    ("(A / s) * m", "A * (m / s)"),
    ("(A / m) / s", "A / (m * s)"),
    ("s * (m * A)", "s * m * A"),
    ("sum(A * (B * c + c))", "sum(A * B, axis=0) * c"),
    ("sum(A * (c + B))", "sum(sum(A, axis=0) * c)"),
    ("sum(T * (U + c))", "sum(sum(T, axis=(0, 1)) * c)"),
]


@pytest.mark.parametrize(("original", "shows"), IDENTITIES)
def test_rewrite_is_a_verified_identity(original, shows):
    out = rewrite(original)
    if shows is None:
        assert out is None
        return
    assert out is not None, original
    text = to_text(out)
    assert shows in text, text
    result = verify(f"{original} == {text}", VARS)
    assert result.passed, result.report()


# Factors that vary along the reduced axis: the rules must keep them inside, and the verifier
# rejects the pulled-out form (the planted bugs a careless rule would make).
REFUSED = [
    ("sum(Q * r, axis=1)", "sum(Q, axis=1) * r"),
    ("mean(Q / r, axis=1)", "mean(Q, axis=1) / r"),
    ("sum(Q * r, axis=-1, keepdims=True)", None),
    ("sum(A * B, axis=1, keepdims=True)", None),
]


@pytest.mark.parametrize(("original", "naive"), REFUSED)
def test_varying_factors_stay_inside(original, naive):
    assert rewrite(original) is None
    if naive is not None:
        assert verify(f"{original} == {naive}", VARS).verdict == "fail"


def test_a_difference_is_not_distributed():
    """sum(a * (x - max)) stays one dot product: split, the shift would become a cancellation."""
    assert rewrite("sum(A * (B - c))") is None


def test_uncentred_variance_is_rejected():
    assert verify("var(A, axis=1) == mean(A * A, axis=1)", VARS).verdict == "fail"


@pytest.mark.parametrize("original", [o for o, shows in IDENTITIES if shows is not None])
def test_exported_rewrite_keeps_the_value(original):
    """F exported as d/dw sum(F * w) (or, for a scalar F, as the value) equals the registry's
    NumPy evaluation of F."""
    f = parse_formula(original, ENV)
    shape = ", ".join(str(d) for d in f.shape)
    env = build_environment({**VARS, "w": f"real[{shape}]" if shape else "real"})
    f = parse_formula(original, env)
    program = Program(parse_formula(f"sum(({original}) * w)", env), env, (), (("w", f),))
    inputs = sample_inputs(program, seed=3)
    value, grads = load(program)(*inputs.values())
    sizes = {k: v for k, v in SIZES.items() if k in env.sizes}
    expected = numpy_backend.evaluate(f, inputs, sizes)
    assert grads["w"].shape == np.shape(expected)
    np.testing.assert_allclose(grads["w"], expected, rtol=1e-12, atol=1e-13)
    whole = numpy_backend.evaluate(program.output, inputs, sizes)
    np.testing.assert_allclose(value, whole, rtol=1e-12, atol=1e-12)


def _layernorm() -> Program:
    return derive(
        "sum(O * (xhat * g + b))",
        ["X", "g", "b"],
        {"X": "real[n, d]", "g": "real[d]", "b": "real[d]", "O": "real[n, d]", "eps": "positive"},
        {
            "sigma": "sqrt(var(X, axis=-1, keepdims=True) + eps)",
            "xhat": "(X - mean(X, axis=-1, keepdims=True)) / sigma",
        },
        verify=False,
    )


@pytest.mark.parametrize("target", ["numpy", "jax", "torch"])
def test_layernorm_export_does_each_pass_once(target):
    lib = {"numpy": "np", "jax": "jnp", "torch": "torch"}[target]
    body = to_module(_layernorm(), target).split("def value_and_grad", 1)[1].split('"""')[2]
    assert f"{lib}.var(" not in body  # two passes over the centred array, not torch's Welford
    assert body.count(f"X - {lib}.mean(X") == 1  # the centred array: once, for sigma and xhat
    assert "dxhat * xhat / sigma" not in body  # the sum divides its (n, 1) result instead
    assert "xhat * g + b" not in body  # the value reads the column sums dg and db
    assert "dg = " in body and "db = " in body


def test_layernorm_export_matches_complex_step():
    _check(_layernorm(), seed=1)


# ---------------------------------------------------------------- property: any shape, any axis

PROP_ENV = build_environment(
    {
        "T": "real[h, n, k]",
        **{
            f"c{i}": f"positive[{', '.join(s)}]" if s else "positive"
            for i, s in enumerate(
                [
                    (),
                    ("k",),
                    ("n", "1"),
                    ("n", "k"),
                    ("1", "n", "1"),
                    ("h", "1", "k"),
                    ("h", "1", "1"),
                ]
            )
        },
    }
)
PROP_SIZES = {"h": 3, "n": 4, "k": 5}
FACTORS = [v for name, v in PROP_ENV.vars.items() if name.startswith("c")]
AXES = [None, 0, 1, 2, -1, (0, 1), (0, 2), (1, 2), (0, 1, 2)]


def _inputs(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, v in PROP_ENV.vars.items():
        shape = tuple(int(d) if d.is_Integer else PROP_SIZES[str(d)] for d in v.shape)
        x = rng.standard_normal(shape)
        out[name] = x if name == "T" else 0.5 + np.abs(x)
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["sum", "mean"]),
    st.sampled_from(["mul", "div", "rmul"]),
    st.sampled_from(FACTORS),
    st.sampled_from(AXES),
    st.booleans(),
    st.integers(0, 3),
)
def test_pulled_reduction_equals_the_original(fn, op, factor, axis, keepdims, seed):
    """For every factor shape, axis and keepdims: the rule either refuses or keeps the value and
    the shape (the verifier's NumPy evaluation of both trees)."""
    T = PROP_ENV.vars["T"]
    body = {"mul": T * factor, "div": T / factor, "rmul": factor * T}[op]
    params = {"keepdims": True} if keepdims else {}
    if axis is not None:
        params["axis"] = axis
    original = call(fn, body, **params)
    out = pull_out_of_reduction(fn, body, axis, keepdims, lambda f, x: call(f, x, **params))
    if factor.shape == ():
        assert out is not None  # a scalar always leaves
    if out is None:
        return
    assert out.shape == original.shape
    inputs = _inputs(seed)
    want = numpy_backend.evaluate(original, inputs, PROP_SIZES)
    got = numpy_backend.evaluate(out, inputs, PROP_SIZES)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["mul", "div"]),
    st.sampled_from(["mul", "div"]),
    st.sampled_from(FACTORS + [PROP_ENV.vars["T"]]),
    st.sampled_from(FACTORS + [PROP_ENV.vars["T"]]),
    st.sampled_from(FACTORS),
    st.booleans(),
    st.integers(0, 3),
)
def test_small_first_equals_the_original(outer, inner, x, y, s, s_left, seed):
    """(x inner y) outer s, and s * (x * y): regrouped or refused, never changed in value."""
    try:
        pair = x * y if inner == "mul" else x / y
        node = (
            (s * pair if outer == "mul" else None)
            if s_left
            else (pair * s if outer == "mul" else pair / s)
        )
    except Exception:  # shapes that do not broadcast
        return
    if node is None:
        return
    out = small_first(node.fn, *node.args, node.shape)
    if out is None:
        return
    assert out.shape == node.shape
    inputs = _inputs(seed)
    want = numpy_backend.evaluate(node, inputs, PROP_SIZES)
    got = numpy_backend.evaluate(out, inputs, PROP_SIZES)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
