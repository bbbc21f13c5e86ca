"""Selection, masks and the stable elementwise functions (engine/functions/select.py, stable.py):
values against NumPy, kink conventions against PyTorch, the verifier at every threshold, inf."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from test_export_programs import load_module

from engine.api import derive
from engine.backends import numpy_backend, sympy_backend
from engine.export import to_module
from engine.expr import EngineError
from engine.parser import build_environment, parse_equation, parse_formula
from engine.printing import to_latex, to_text
from engine.types import TYPES
from engine.verify import verify
from engine.verify.sampling import kink_arguments

VARS = {
    "x": "real[n]",
    "y": "real[n]",
    "s": "real",
    "lo": "real",
    "hi": "real",
    "X": "real[n, m]",
    "S": "real[n, n]",
    "M": "mask[n, n]",
    "u": "positive[n]",
}
ENV = build_environment(VARS)


def value(text: str, **values):
    """NumPy value of a formula at concrete float inputs (sizes read off the arrays)."""
    vars_ = {
        k: "real" if np.ndim(v) == 0 else f"real[{', '.join(map(str, np.shape(v)))}]"
        for k, v in values.items()
    }
    env = build_environment(vars_)
    expr = parse_formula(text, env)
    return numpy_backend.evaluate(expr, {k: np.asarray(v, float) for k, v in values.items()}, {})


def exact(text: str, **values):
    """SymPy value of a formula at exact inputs, as floats."""
    vars_ = {
        k: "real" if np.ndim(v) == 0 else f"real[{', '.join(map(str, np.shape(v)))}]"
        for k, v in values.items()
    }
    env = build_environment(vars_)
    expr = parse_formula(text, env)
    arrays = {}
    for k, v in values.items():
        a = np.empty(np.shape(v), dtype=object)
        for idx in np.ndindex(a.shape):
            a[idx] = sympy.Rational(str(np.asarray(v)[idx]))
        arrays[k] = a
    out = sympy_backend.evaluate(expr, arrays, {})
    return np.array([float(sympy.N(e, 30)) for e in out.flat]).reshape(out.shape)


# ---------------------------------------------------------------- values


def test_stable_elementwise_values_at_extremes():
    np.testing.assert_allclose(value("log1p(z)", z=[1e-20, 1.0]), [1e-20, math.log(2)], rtol=1e-15)
    np.testing.assert_allclose(value("expm1(z)", z=[1e-20, 1.0]), [1e-20, math.e - 1], rtol=1e-15)
    got = value("logsigmoid(z)", z=[-1000.0, 0.0, 1000.0, 40.0])
    np.testing.assert_allclose(got, [-1000.0, -math.log(2), 0.0, -math.exp(-40)], rtol=1e-15)
    assert not np.any(np.isnan(value("logsigmoid(z)", z=[-1e308, 1e308])))


@pytest.mark.parametrize(
    "text, numpy_form",
    [
        ("maximum(a, b)", lambda a, b: np.maximum(a, b)),
        ("minimum(a, b)", lambda a, b: np.minimum(a, b)),
        ("clip(a, -1/2, 1/2)", lambda a, b: np.clip(a, -0.5, 0.5)),
        ("clip(a, b, b + 1)", lambda a, b: np.clip(a, b, b + 1)),
        ("clip(a, 1, -1)", lambda a, b: np.clip(a, 1, -1)),  # lo > hi: hi, as NumPy and torch
        ("cumsum(a)", lambda a, b: np.cumsum(a)),
        ("max(a) + min(b)", lambda a, b: np.max(a) + np.min(b)),
        ("argmax(a) + 10 * argmin(b)", lambda a, b: np.argmax(a) + 10 * np.argmin(b)),
    ],
)
def test_values_are_numpys(text, numpy_form):
    rng = np.random.default_rng(0)
    a, b = np.round(rng.standard_normal(7), 3), np.round(rng.standard_normal(7), 3)
    b[2] = a[2]  # a tie
    want = numpy_form(a, b)
    np.testing.assert_allclose(value(text, a=a, b=b), want, rtol=1e-15)
    np.testing.assert_allclose(exact(text, a=a, b=b), want, rtol=1e-15)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_reductions_along_an_axis_are_numpys(axis):
    X = np.round(np.random.default_rng(1).standard_normal((4, 5)), 2)
    for f in ("max", "min", "argmax", "argmin"):
        want = getattr(np, f)(X, axis=axis)
        np.testing.assert_allclose(value(f"{f}(X, axis={axis})", X=X), want)
        np.testing.assert_allclose(exact(f"{f}(X, axis={axis})", X=X), want)
    np.testing.assert_allclose(value(f"cumsum(X, axis={axis})", X=X), np.cumsum(X, axis=axis))
    np.testing.assert_allclose(exact(f"cumsum(X, axis={axis})", X=X), np.cumsum(X, axis=axis))


@pytest.mark.parametrize("k", [-2, -1, 0, 1, 3])
def test_tril_triu_are_numpys(k):
    env = build_environment({}, {})
    for dims, shape in (("3", (3, 3)), ("3, 5", (3, 5)), ("4, 2", (4, 2))):
        ones = np.ones(shape)
        for f in ("tril", "triu"):
            expr = parse_formula(f"{f}({dims}, k={k})", env)
            want = getattr(np, f)(ones, k)
            np.testing.assert_array_equal(numpy_backend.evaluate(expr, {}, {}), want)
            sym = sympy_backend.evaluate(expr, {}, {})
            np.testing.assert_array_equal(sym.astype(float), want)


def test_where_and_inf():
    m = np.array([[1.0, 0.0], [1.0, 1.0]])
    S = np.array([[0.5, 2.0], [-1.0, 3.0]])
    got = value("softmax(where(m, S, -inf))", m=m, S=S)
    np.testing.assert_allclose(got[0], [1.0, 0.0])
    np.testing.assert_allclose(got[1], np.exp([-1.0, 3.0]) / np.exp([-1.0, 3.0]).sum())
    assert value("exp(-inf)") == 0.0 and value("-inf") == -np.inf
    np.testing.assert_allclose(exact("softmax(where(m, S, -inf))", m=m, S=S), got, rtol=1e-15)


# ---------------------------------------------------------------- printing and parsing


@pytest.mark.parametrize(
    "text, latex",
    [
        ("log1p(u)", r"\log\left(1 + u\right)"),
        ("expm1(x)", r"\operatorname{expm1}\left(x\right)"),
        ("logsigmoid(x)", r"\log\sigma\left(x\right)"),
        ("maximum(x, 0.5)", r"\max\left(x, \frac{1}{2}\right)"),
        ("minimum(x, y)", r"\min\left(x, y\right)"),
        ("clip(x, lo, hi)", r"\operatorname{clip}\left(x, \mathrm{lo}, \mathrm{hi}\right)"),
        ("where(M, S, -inf)", r"\operatorname{where}\left(M, S, -\infty\right)"),
        ("tril(n)", r"\operatorname{tril}_{n}"),
        ("triu(n, m, k=1)", r"\operatorname{triu}_{n \times m,\,k=1}"),
        ("max(X, axis=0)", r"\max_{\text{col}}\left(X\right)"),
        ("argmax(X, axis=-1)", r"\operatorname{arg\,max}_{\text{row}}\left(X\right)"),
        ("cumsum(x)", r"\operatorname{cumsum}\left(x\right)"),
    ],
)
def test_text_round_trips_and_latex(text, latex):
    tree = parse_formula(text, ENV)
    assert parse_formula(to_text(tree), ENV) == tree
    assert to_latex(tree) == latex


@pytest.mark.parametrize(
    "text, message",
    [
        ("cumsum(X)", "cumsum() needs axis= for an array of rank 2 (NumPy would flatten it)"),
        ("cumsum(X, axis=2)", "cumsum(): axis 2 is out of range for an array of rank 2"),
        ("clip(x, X, 1)", "shapes (n,) and (n, m) and scalar do not broadcast"),
        ("maximum(x, X)", "shapes (n,) and (n, m) do not broadcast"),
        ("tril(n, m, n)", "tril() takes 1 to 2 sizes, got 3"),
        ("max(s, axis=0)", "max() needs an array (not a scalar) when axis is given"),
        ("grad(argmax(x) * sum(x), x)", "argmax() is not differentiable (its value is an index)"),
        ("grad(sum(x * argmin(X, axis=1)), X)", "argmin() is not differentiable"),
        ("where(M, S)", "where() takes 3 arguments, got 2"),
    ],
)
def test_clear_errors(text, message):
    with pytest.raises(EngineError) as info:
        parse_formula(text, ENV)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_inf_is_a_reserved_constant():
    with pytest.raises(EngineError, match="reserved"):
        build_environment({"inf": "real"})
    assert to_text(parse_formula("where(M, S, -inf) + inf * 0 * s", ENV)).count("inf") == 2


def test_argmax_has_no_derivative_rule_in_derive():
    with pytest.raises(EngineError, match="not differentiable|no derivative rule"):
        derive("sum(x) * argmax(x)", "x", {"x": "real[n]"})


def test_argmax_of_an_independent_argument_may_appear_under_grad():
    result = verify("grad(argmax(y) * sum(x), x) == argmax(y) + 0 * x", VARS)
    assert result.passed, result.report()


# ---------------------------------------------------------------- kinks


def test_kinks_hook_names_every_threshold():
    lhs, rhs = parse_equation("clip(x, lo, hi) + maximum(x, y) == minimum(x, 3) + relu(y)", ENV)
    texts = {to_text(k) for k in kink_arguments(lhs, rhs)}
    assert texts == {"x - lo", "x - hi", "x - y", "x - 3", "y"}


@pytest.mark.parametrize(
    "claim",
    [
        "maximum(x, 50) == x",
        "minimum(x, 1e6) == x",
        "clip(x, -1e4, 1e4) == x",
        "clip(x, -100, 1000) == clip(x, -100, 999)",
        "minimum(x * 1e-4, 1) == x * 1e-4",  # reached only through a product of constants
        "maximum(x / 1000, -2) == x / 1000",
        "x * minimum(1, 1000 / sqrt(sum(x * x))) == x",  # gradient clipping at a large norm
    ],
)
def test_large_thresholds_are_crossed(claim):
    result = verify(claim, VARS)
    assert result.verdict == "fail", result.report()


def test_ties_follow_pytorch():
    """At a tie: maximum/minimum give each side half; clip gives x the slope at lo and hi
    (torch.clamp); max() shares the gradient among tied maxima (torch.amax). Both routes."""
    torch = pytest.importorskip("torch")
    x = np.array([1.0, 2.0, 2.0, -1.0, 3.0])
    y = np.array([1.0, 0.0, 2.0, 0.0, 3.0])
    lo, hi = -1.0, 2.0
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in (("x", x),)}
    cases = [
        ("maximum(x, y)", lambda a: torch.maximum(a, torch.tensor(y, dtype=torch.float64))),
        ("minimum(x, y)", lambda a: torch.minimum(a, torch.tensor(y, dtype=torch.float64))),
        ("clip(x, -1, 2)", lambda a: torch.clamp(a, lo, hi)),
        ("max(x) + 0 * x", lambda a: torch.amax(a) + 0 * a),
        ("min(x) + 0 * x", lambda a: torch.amin(a) + 0 * a),
    ]
    env = build_environment({"x": "real[5]", "y": "real[5]"})
    for text, forward in cases:
        (want,) = torch.autograd.grad(forward(t["x"]).sum(), [t["x"]])
        f = parse_formula(f"grad(sum({text}), x)", env)
        got = numpy_backend.evaluate(f, {"x": x, "y": y}, {})
        np.testing.assert_allclose(got, want.numpy(), err_msg=text)
        arrays = {
            k: np.array([sympy.Rational(str(v)) for v in a], dtype=object)
            for k, a in (("x", x), ("y", y))
        }
        symbols = sympy_backend.symbol_arrays(dict(env.vars), {})
        sym = sympy_backend.evaluate(f, symbols, {})
        subs = {symbols[k][i]: arrays[k][i] for k in ("x", "y") for i in range(5)}
        got_exact = np.array([float(sympy.sympify(e).xreplace(subs)) for e in sym.flat])
        np.testing.assert_allclose(got_exact, want.numpy(), err_msg=text)


# ---------------------------------------------------------------- inf in claims


def test_equal_infinities_agree_and_others_differ():
    assert verify("where(M, S, -inf) == where(M, S, -inf) + 0 * S", VARS).verdict == "pass"
    assert verify("where(M, S, -inf) == where(M, S, inf)", VARS).verdict == "fail"
    assert verify("where(M, S, -inf) == where(M, S, -inf) + 1", VARS).verdict == "fail"
    assert verify("where(M, S, -inf) == S", VARS).verdict == "fail"


def test_infinity_not_written_is_still_an_error():
    """An overflow or log(0) is not a value: equal infinities count only where `inf` is written."""
    result = verify("log(relu(x) * 0) == log(relu(x) * 0)", VARS)
    assert result.verdict == "error"


def test_masked_softmax_rows_have_no_weight_off_the_mask():
    for claim in (
        "softmax(where(M, S, -inf)) * (1 - M) == 0 * S",
        "sum(softmax(where(M, S, -inf)), axis=-1) == ones(n)",
        "softmax(where(tril(n), S, -inf)) * triu(n, k=1) == 0 * S",
    ):
        result = verify(claim, VARS)
        assert result.passed, result.report()


# ---------------------------------------------------------------- the mask type


def test_mask_type_draws_zero_one_rows_with_a_one():
    t = TYPES["mask"]
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = t.numeric(rng, (5, 3), "unit")
        assert t.admits(x) and np.all(x.sum(axis=-1) >= 1)
        e = t.exact(rng, (5, 3))
        assert set(e.ravel().tolist()) <= {0, 1} and np.all(e.sum(axis=-1) >= 1)


# ---------------------------------------------------------------- properties


finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=6), finite, finite)
def test_clip_lies_between_its_bounds(xs, lo, hi):
    lo, hi = min(lo, hi), max(lo, hi)
    got = value("clip(a, l, h)", a=xs, l=lo, h=hi)
    assert np.all((got >= lo) & (got <= hi))
    np.testing.assert_array_equal(got, np.clip(xs, lo, hi))


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=6), st.lists(finite, min_size=1, max_size=6))
def test_maximum_and_minimum_split_the_sum(a, b):
    k = min(len(a), len(b))
    a, b = a[:k], b[:k]
    hi, lo = value("maximum(a, b)", a=a, b=b), value("minimum(a, b)", a=a, b=b)
    assert np.all(hi >= lo)
    np.testing.assert_allclose(hi + lo, np.add(a, b), rtol=1e-12, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(finite, min_size=1, max_size=8))
def test_cumsum_ends_in_the_sum(xs):
    got = value("cumsum(a)", a=xs)
    assert got.shape == (len(xs),)
    np.testing.assert_allclose(got[-1], np.sum(xs), rtol=1e-9, atol=1e-6)


# ---------------------------------------------------------------- derive and export


def test_causal_attention_derives_with_the_mask_once():
    program = derive(
        "sum(O * (softmax(where(tril(n), Q @ K.T / sqrt(d), -inf)) @ V))",
        ["Q", "K", "V"],
        {"Q": "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"},
    )
    assert program.results and all(r.passed for _, r in program.results)
    text = str(
        [to_text(a.expr) for a in program.steps] + [to_text(g) for _, g in program.gradients]
    )
    assert text.count("tril(n)") == 2  # in P, and once in dS
    assert "where(tril(n), P * (dP - sum(P * dP, axis=-1, keepdims=True)), 0)" in text


def test_clip_gradient_is_the_in_range_indicator():
    program = derive(
        "sum(clip(X @ w, -1, 1) * y)", "w", {"X": "real[m, n]", "w": "real[n]", "y": "real[m]"}
    )
    ((_, g),) = program.gradients
    assert to_text(g) == "X.T @ (y * ((1 - step(-1 - X @ w)) * (1 - step(X @ w - 1))))"
    assert program.results and all(r.passed for _, r in program.results)


TORCH_FORWARDS = {
    "sum(clip(X @ w, -1, 1) * y) + sum(maximum(X @ w, y) * y) + sum(max(X, axis=0) * w)": (
        lambda t, X, w, y: (
            torch_sum(t, t.clamp(X @ w, -1, 1) * y)
            + torch_sum(t, t.maximum(X @ w, y) * y)
            + torch_sum(t, t.amax(X, dim=0) * w)
        )
    ),
    "sum(logsigmoid(X @ w) * y) + sum(log1p(expm1(w) ** 2)) + sum(cumsum(X, axis=0) @ w)": (
        lambda t, X, w, y: (
            torch_sum(t, t.nn.functional.logsigmoid(X @ w) * y)
            + torch_sum(t, t.log1p(t.expm1(w) ** 2))
            + torch_sum(t, t.cumsum(X, dim=0) @ w)
        )
    ),
    "sum(softmax(where(tril(m, n), X, -inf)) @ w * y) + sum(minimum(1, 2 / sqrt(w @ w)) * w)": (
        lambda t, X, w, y: (
            torch_sum(
                t,
                t.softmax(t.where(t.ones(X.shape, dtype=t.float64).tril() != 0, X, -math.inf), -1)
                @ w
                * y,
            )
            + torch_sum(t, t.minimum(t.tensor(1.0, dtype=t.float64), 2 / t.sqrt(t.sum(w * w))) * w)
        )
    ),
}


def torch_sum(t, x):
    return t.sum(x)


@pytest.mark.parametrize("target", ["torch", "numpy"])
@pytest.mark.parametrize("expr", sorted(TORCH_FORWARDS))
def test_exported_gradients_match_torch_autograd_at_ties(expr, target, tmp_path):
    """Derived, exported, and run at inputs with exact ties and points on the clip bounds."""
    torch = pytest.importorskip("torch")
    vars_ = {"X": "real[m, n]", "w": "real[n]", "y": "real[m]"}
    program = derive(expr, ["X", "w", "y"], vars_)
    assert program.results and all(r.passed for _, r in program.results)
    module = load_module(to_module(program, target), tmp_path, f"sel_{target}_{abs(hash(expr))}")
    rng = np.random.default_rng(5)
    X = np.round(rng.standard_normal((6, 4)), 1)
    X[1] = X[0]  # tied maxima down every column
    w = np.array([0.5, -0.5, 1.0, 0.0])
    y = np.round(X @ w, 6)  # maximum(X @ w, y) tied everywhere
    y[0] = 1.0
    X[2] = [1.0, 0.0, 0.0, 0.0]
    w[0] = 1.0  # (X @ w)[2] = 1: on the clip's upper bound
    args = {
        k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
        for k, v in (("X", X), ("w", w), ("y", y))
    }
    ref = TORCH_FORWARDS[expr](torch, args["X"], args["w"], args["y"])
    want = dict(zip(args, torch.autograd.grad(ref, list(args.values())), strict=True))
    got_value, grads = module.value_and_grad(X, w, y)
    np.testing.assert_allclose(np.asarray(got_value, dtype=float), ref.item(), rtol=1e-12)
    for k in args:
        np.testing.assert_allclose(
            np.asarray(grads[k], dtype=float), want[k].numpy(), rtol=1e-12, atol=1e-12, err_msg=k
        )


# ---------------------------------------------------------------- sort


@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("descending", [False, True])
def test_sort_and_unsort_are_numpys_stable_sort(axis, descending):
    X = np.round(np.random.default_rng(2).standard_normal((4, 5)), 1)
    X[1, 1] = X[1, 2] = X[0, 1]  # ties along both axes
    G = np.random.default_rng(3).standard_normal((4, 5))
    text = f"axis={axis}, descending={descending}"
    order = np.argsort(-X if descending else X, axis=axis, kind="stable")
    want = np.take_along_axis(X, order, axis=axis)
    np.testing.assert_array_equal(value(f"sort(X, {text})", X=X), want)
    np.testing.assert_array_equal(exact(f"sort(X, {text})", X=X), want)
    back = np.empty_like(G)
    np.put_along_axis(back, order, G, axis=axis)  # slot k of G goes where slot k came from
    np.testing.assert_allclose(value(f"unsort(G, X, {text})", G=G, X=X), back)
    np.testing.assert_allclose(exact(f"unsort(G, X, {text})", G=G, X=X), back, rtol=1e-15)


def test_sort_gradient_matches_torch_away_from_ties():
    torch = pytest.importorskip("torch")
    x = np.array([0.3, -1.2, 2.5, 0.7])
    g = np.array([1.0, 2.0, 3.0, 4.0])
    t = torch.tensor(x, requires_grad=True)
    (want,) = torch.autograd.grad(
        torch.sum(torch.sort(t, descending=True).values * torch.tensor(g)), [t]
    )
    env = build_environment({"x": "real[4]", "g": "real[4]"})
    f = parse_formula("grad(sum(sort(x, descending=True) * g), x)", env)
    np.testing.assert_allclose(numpy_backend.evaluate(f, {"x": x, "g": g}, {}), want.numpy())


def test_unsort_is_not_differentiated_again():
    with pytest.raises(EngineError, match="unsort\\(\\) is not differentiable"):
        parse_formula("grad(sum(unsort(x, y)), x)", ENV)


def test_exact_derivative_sweeps_through_minus_inf():
    """The exact route's reverse sweep takes exp(-inf) = 0 (slope 0) where a claim writes inf,
    instead of falling back to sympy.diff; a NaN still falls back."""
    import mpmath

    from engine.functions.select import Where
    from engine.verify.adjoint import NoAdjoint, gradient_at

    s1, s2, m = sympy.symbols("s1 s2 m", real=True)
    f = sympy.log(sympy.exp(s1) + sympy.exp(Where(m, s2, -sympy.oo)))
    with mpmath.workdps(30):
        point = {s1: mpmath.mpf(1) / 3, s2: mpmath.mpf(2), m: mpmath.mpf(0)}
        (d1, _), (d2, _) = gradient_at(f, [s1, s2], point)
        assert d1 == 1 and d2 == 0  # the masked entry has no weight
        point[m] = mpmath.mpf(1)
        (d1, _), (d2, _) = gradient_at(f, [s1, s2], point)
        p2 = mpmath.exp(2) / (mpmath.exp(mpmath.mpf(1) / 3) + mpmath.exp(2))
        assert abs(d2 - p2) < mpmath.mpf(10) ** -25 and abs(d1 + d2 - 1) < mpmath.mpf(10) ** -25
        with pytest.raises(NoAdjoint):
            gradient_at(s1 * (sympy.oo - sympy.oo + s2), [s1], {s1: 1, s2: 1})
