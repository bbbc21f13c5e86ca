"""derive() reaches the textbook backward programs, and every one of them is verified."""

from __future__ import annotations

import numpy as np
import pytest

from engine import derive
from engine.derive import DerivationFailed, DeriveError, Program
from engine.expr import Call, Const, Expr, Ref, Size, Var
from engine.functions import REGISTRY
from engine.parser import build_environment, parse_formula

# ---------------------------------------------------------------- canonical comparison


def canonical(e: Expr):
    """A form that ignores the order of commutative operands and where scalar factors sit.

    Sums and differences become a sorted multiset of signed terms, products a sorted multiset of
    factors, and a scalar factor of a matrix product moves in front of it (2 * X.T @ v is
    2 * (X.T @ v)). Nothing else is rewritten, so a program in another form does not match.
    """
    if isinstance(e, Var | Ref | Size):
        return ("name", e.name)
    if isinstance(e, Const):
        return ("const", str(e.value))
    assert isinstance(e, Call)
    if e.fn in ("add", "sub", "neg"):
        return ("sum", tuple(sorted(_terms(e, 1), key=repr)))
    if e.fn == "mul" or (e.fn == "matmul" and _scalar_factors(e)):
        sign, factors = _factors(e)
        out = ("prod", tuple(sorted(factors, key=repr)))
        return out if sign > 0 else ("sum", ((-1, out),))
    return (e.fn, e.params, tuple(canonical(a) for a in e.args))


def _terms(e: Expr, sign: int) -> list:
    if isinstance(e, Call) and e.fn == "add":
        return _terms(e.args[0], sign) + _terms(e.args[1], sign)
    if isinstance(e, Call) and e.fn == "sub":
        return _terms(e.args[0], sign) + _terms(e.args[1], -sign)
    if isinstance(e, Call) and e.fn == "neg":
        return _terms(e.args[0], -sign)
    return [(sign, canonical(e))]


def _scalar_factors(e: Call) -> bool:
    return any(isinstance(a, Call) and a.fn == "mul" and a.args[0].shape == () for a in e.args)


def _factors(e: Expr) -> tuple[int, list]:
    if isinstance(e, Call) and e.fn == "mul":
        s1, f1 = _factors(e.args[0])
        s2, f2 = _factors(e.args[1])
        return s1 * s2, f1 + f2
    if isinstance(e, Call) and e.fn == "neg":
        s, f = _factors(e.args[0])
        return -s, f
    if isinstance(e, Call) and e.fn == "matmul":
        pulled, cores, sign = [], [], 1
        for a in e.args:
            if isinstance(a, Call) and a.fn == "mul" and a.args[0].shape == ():
                pulled.append(canonical(a.args[0]))
                a = a.args[1]
            cores.append(a)
        core = ("matmul", (), tuple(canonical(a) for a in cores))
        return sign, pulled + [core]
    return 1, [canonical(e)]


def assert_textbook(program: Program, expected: str, vars_: dict, defs: dict) -> None:
    """The derived program equals `expected` (lines `name = formula`) up to `canonical`."""
    lines = [ln.split("=", 1) for ln in expected.strip().splitlines()]
    want_names = [n.strip() for n, _ in lines]
    got_names = [a.name for a in program.steps] + [
        program.gradient_name(w) for w, _ in program.gradients
    ]
    assert got_names == want_names, program.to_text()
    steps = {n.strip(): t.strip() for n, t in lines[: len(program.steps)]}
    env = build_environment(vars_, {**defs, **steps})
    want = [canonical(parse_formula(t.strip(), env)) for _, t in lines]
    got = [canonical(a.expr) for a in program.steps] + [canonical(g) for _, g in program.gradients]
    assert got == want, program.to_text()
    # Length: characters of the right-hand sides, without spaces.
    textbook = sum(len("".join(t.split())) for _, t in lines)
    derived = sum(
        len("".join(line.split("=", 1)[1].split())) for line in program.to_text().splitlines()
    )
    assert derived <= 1.3 * textbook, program.to_text()


CASES = {
    "ce-simplex": (
        "cross_entropy(softmax(z), y)",
        ["z"],
        {"z": "real[n]", "y": "simplex[n]"},
        {},
        "dz = softmax(z) - y",
    ),
    "ce-onehot-def": (
        "cross_entropy(p, t)",
        ["z"],
        {"z": "real[n]", "t": "onehot[n]"},
        {"p": "softmax(z)"},
        "dz = p - t",
    ),
    "ce-real": (
        "cross_entropy(softmax(z), y)",
        ["z"],
        {"z": "real[n]", "y": "real[n]"},
        {},
        "dz = sum(y) * softmax(z) - y",
    ),
    "ce-batch": (
        "cross_entropy(softmax(Z), Y)",
        ["Z"],
        {"Z": "real[b, n]", "Y": "simplex[b, n]"},
        {},
        "dZ = softmax(Z) - Y",
    ),
    "logsumexp": ("logsumexp(z)", ["z"], {"z": "real[n]"}, {}, "dz = softmax(z)"),
    "softmax-jacobian": (
        "jacobian(softmax(z), z)",
        None,
        {"z": "real[n]"},
        {"p": "softmax(z)"},
        "J = diag(p) - outer(p, p)",
    ),
    "softmax-jacobian-nodef": (
        "softmax(z)",
        ["z"],
        {"z": "real[n]"},
        {},
        "J = diag(softmax(z)) - outer(softmax(z), softmax(z))",
    ),
    "least-squares": (
        "sum((X @ w - r)**2)",
        ["w", "X"],
        {"X": "real[n, k]", "w": "real[k]", "r": "real[n]"},
        {},
        "dw = 2 * X.T @ (X @ w - r)\ndX = 2 * outer(X @ w - r, w)",
    ),
    "linear": (
        "sum(G * (X @ W))",
        ["W", "X"],
        {"X": "real[n, k]", "W": "real[k, m]", "G": "real[n, m]"},
        {},
        "dW = X.T @ G\ndX = G @ W.T",
    ),
    "attention": (
        "sum(O * (softmax(Q @ K.T / sqrt(d)) @ V))",
        ["V", "Q", "K"],
        {"Q": "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"},
        {"S": "Q @ K.T / sqrt(d)", "P": "softmax(S)"},
        """
        dP = O @ V.T
        dS = P * (dP - sum(P * dP, axis=-1, keepdims=True))
        dV = P.T @ O
        dQ = dS @ K / sqrt(d)
        dK = dS.T @ Q / sqrt(d)
        """,
    ),
    "attention-without-defs": (
        "sum(O * (softmax(Q @ K.T / sqrt(d)) @ V))",
        ["Q", "K", "V"],
        {"Q": "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"},
        {},
        """
        P = softmax(Q @ K.T / sqrt(d))
        dP = O @ V.T
        dS = P * (dP - sum(P * dP, axis=-1, keepdims=True))
        dQ = dS @ K / sqrt(d)
        dK = dS.T @ Q / sqrt(d)
        dV = P.T @ O
        """,
    ),
    "layernorm": (
        "sum(g * (x - mean(x)) / sqrt(var(x) + eps))",
        ["x"],
        {"x": "real[n]", "g": "real[n]", "eps": "positive"},
        {"xhat": "(x - mean(x)) / sqrt(var(x) + eps)"},
        "dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var(x) + eps)",
    ),
    "layernorm-without-def": (
        "sum(g * (x - mean(x)) / sqrt(var(x) + eps))",
        ["x"],
        {"x": "real[n]", "g": "real[n]", "eps": "positive"},
        {},
        """
        xhat = (x - mean(x)) / sqrt(var(x) + eps)
        dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var(x) + eps)
        """,
    ),
    "layernorm-rows-then-tanh": (
        "sum(tanh((X - mean(X, axis=-1, keepdims=True)) / sqrt(var(X, axis=-1, keepdims=True)"
        " + eps)))",
        ["X"],
        {"X": "real[b, n]", "eps": "positive"},
        {},
        "\n".join(
            [
                "Xhat = (X - mean(X, axis=-1, keepdims=True))"
                " / sqrt(var(X, axis=-1, keepdims=True) + eps)",
                "dXhat = 1 - tanh(Xhat)**2",
                "dX = (dXhat - mean(dXhat, axis=-1, keepdims=True)"
                " - Xhat * mean(dXhat * Xhat, axis=-1, keepdims=True))"
                " / sqrt(var(X, axis=-1, keepdims=True) + eps)",
            ]
        ),
    ),
    "rmsnorm": (
        "sum(g * x / sqrt(mean(x**2) + eps))",
        ["x"],
        {"x": "real[n]", "g": "real[n]", "eps": "positive"},
        {"xhat": "x / sqrt(mean(x**2) + eps)"},
        "dx = (g - xhat * mean(g * xhat)) / sqrt(mean(x**2) + eps)",
    ),
    "layernorm-with-gain": (
        "sum(g * (w * (x - mean(x)) / sqrt(var(x) + eps)))",
        ["x", "w"],
        {"x": "real[n]", "g": "real[n]", "w": "real[n]", "eps": "positive"},
        {},
        """
        xhat = (x - mean(x)) / sqrt(var(x) + eps)
        dxhat = g * w
        dx = (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) / sqrt(var(x) + eps)
        dw = g * xhat
        """,
    ),
    "rmsnorm-rows": (
        "sum(G * X / sqrt(mean(X**2, axis=-1, keepdims=True) + eps))",
        ["X"],
        {"X": "real[b, n]", "G": "real[b, n]", "eps": "positive"},
        {},
        """
        t1 = sqrt(mean(X**2, axis=-1, keepdims=True) + eps)
        Xhat = X / t1
        dX = (G - Xhat * mean(G * Xhat, axis=-1, keepdims=True)) / t1
        """,
    ),
    "sigmoid": (
        "sum(sigmoid(s))",
        ["s"],
        {"s": "real[n]"},
        {},
        "ds = sigmoid(s) * (1 - sigmoid(s))",
    ),
    "tanh": ("sum(tanh(s))", ["s"], {"s": "real[n]"}, {}, "ds = 1 - tanh(s)**2"),
    "softplus": ("sum(softplus(s))", ["s"], {"s": "real[n]"}, {}, "ds = sigmoid(s)"),
    "exp-weighted": (
        "sum(u * exp(s))",
        ["s"],
        {"s": "real[n]", "u": "real[n]"},
        {},
        "ds = u * exp(s)",
    ),
    "log": ("sum(log(a))", ["a"], {"a": "positive[n]"}, {}, "da = 1 / a"),
    "softmax-from-exp-minus-logsumexp": (
        "sum(u * exp(z - logsumexp(z)))",
        ["z"],
        {"z": "real[n]", "u": "real[n]"},
        {"p": "softmax(z)"},
        "dz = u * p - p * sum(u * p)",
    ),
    "softmax-from-quotient": (
        "sum(u * (exp(z) / sum(exp(z))))",
        ["z"],
        {"z": "real[n]", "u": "real[n]"},
        {"p": "softmax(z)"},
        "dz = p * (u - sum(p * u))",
    ),
    "log-softmax-jacobian": (
        "jacobian(log_softmax(z), z)",
        None,
        {"z": "real[n]"},
        {"p": "softmax(z)"},
        "J = eye(n) - outer(ones(n), p)",
    ),
    "weighted-softmax-jacobian": (
        "jacobian(y * softmax(z), z)",
        None,
        {"z": "real[n]", "y": "real[n]"},
        {"p": "softmax(z)"},
        "J = diag(y * p) - outer(y * p, p)",
    ),
    "tanh-layer-jacobian": (
        "jacobian(tanh(W @ z), z)",
        None,
        {"z": "real[n]", "W": "real[n, n]"},
        {},
        "J = diag(1 - tanh(W @ z)**2) @ W",
    ),
    "variance-of-columns": (
        "mean(var(X, axis=0))",
        ["X"],
        {"X": "real[n, k]"},
        {},
        "dX = 2 * (X - mean(X, axis=0, keepdims=True)) / (k * n)",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_textbook_program(name: str):
    expr, wrt, vars_, defs, expected = CASES[name]
    program = derive(expr, wrt, vars_, defs)
    assert program.verified, program.verification_line()
    assert program.verification_line().startswith("verified: exact at ")
    assert_textbook(program, expected, vars_, defs)


# ---------------------------------------------------------------- naming repeated subexpressions

# A subexpression written three or more times in the finished program becomes t1, t2, ...; the
# names the program already has (xhat here) are kept. The derivatives are checked by hand:
# sigmoid' = s (1 - s), so d/dw mean((s - t)^2) = 2 X^T ((s - t) s (1 - s)) / n; gelu'(u) =
# Phi(u) + u phi(u) = 0.5 (1 + erf(u / sqrt 2)) + u exp(-u^2 / 2) / sqrt(2 pi).
NAMED = {
    "sigmoid-regression": (
        "mean((sigmoid(X @ w) - t) ** 2)",
        ["w"],
        {"X": "real[n, d]", "w": "real[d]", "t": "unit[n]"},
        """
        t1 = sigmoid(X @ w)
        dw = 2 * (X.T @ ((t1 - t) * (t1 * (1 - t1)))) / n
        """,
    ),
    "gelu-mlp": (
        "sum(G * (gelu(X @ W1) @ W2))",
        ["W1"],
        {"G": "real[n, k]", "X": "real[n, d]", "W1": "real[d, h]", "W2": "real[h, k]"},
        """
        t1 = X @ W1
        dW1 = X.T @ ((G @ W2.T) * (0.5 * (1 + erf(t1 / sqrt(2))) + t1 * exp(-0.5 * t1 ** 2) / sqrt(2 * pi)))
        """,  # noqa: E501
    ),
    "layernorm-of-a-product": (
        "sum(G * ((X @ W - mean(X @ W, axis=-1, keepdims=True))"
        " / sqrt(var(X @ W, axis=-1, keepdims=True) + 1)))",
        ["W"],
        {"X": "real[n, d]", "W": "real[d, d]", "G": "real[n, d]"},
        """
        t1 = X @ W
        t2 = sqrt(var(t1, axis=-1, keepdims=True) + 1)
        xhat = (t1 - mean(t1, axis=-1, keepdims=True)) / t2
        dW = X.T @ (G / t2) - (X.T @ (xhat * mean(G * xhat, axis=-1, keepdims=True) / t2) + X.T @ (ones(n, d) * mean(G, axis=-1, keepdims=True) / t2))
        """,  # noqa: E501
    ),
}


def _lines(text: str) -> str:
    return "\n".join(line.strip() for line in text.strip().splitlines())


@pytest.mark.parametrize("name", list(NAMED))
def test_repeated_subexpressions_are_named(name: str):
    expr, wrt, vars_, expected = NAMED[name]
    program = derive(expr, wrt, vars_)
    assert program.verified, program.verification_line()
    assert program.to_text() == _lines(expected)


@pytest.mark.parametrize("name", list(NAMED))
def test_named_program_reparses_to_the_same_trees(name: str):
    expr, wrt, vars_, _ = NAMED[name]
    program = derive(expr, wrt, vars_)
    env = build_environment(vars_, [(a.name, str(a.expr)) for a in program.steps])
    assert [env.defs[a.name] for a in program.steps] == [a.ref for a in program.steps]
    for _, g in program.gradients:
        assert parse_formula(str(g), env) == g


def _gelu_prime(u):
    from math import erf

    return 0.5 * (1 + np.vectorize(erf)(u / np.sqrt(2))) + u * np.exp(-0.5 * u**2) / np.sqrt(
        2 * np.pi
    )


@pytest.mark.parametrize("name", ["sigmoid-regression", "gelu-mlp"])
def test_named_program_exports_and_matches_the_hand_gradient(name: str, tmp_path):
    from test_export_programs import load_module

    from engine.export import to_module

    expr, wrt, vars_, _ = NAMED[name]
    program = derive(expr, wrt, vars_)
    source = to_module(program)
    module = load_module(source, tmp_path, f"named_{name.replace('-', '_')}")
    rng = np.random.default_rng(3)
    n, d, h, k = 7, 5, 4, 6
    if name == "sigmoid-regression":
        X, w, t = rng.normal(size=(n, d)), rng.normal(size=d), rng.uniform(size=n)
        _, grads = module.value_and_grad(X, w, t)
        s = 1 / (1 + np.exp(-(X @ w)))
        want = 2 * X.T @ ((s - t) * s * (1 - s)) / n
        np.testing.assert_allclose(grads["w"], want, rtol=1e-12, atol=1e-14)
    else:
        G, X = rng.normal(size=(n, k)), rng.normal(size=(n, d))
        W1, W2 = rng.normal(size=(d, h)), rng.normal(size=(h, k))
        _, grads = module.value_and_grad(G, X, W1, W2)
        want = X.T @ ((G @ W2.T) * _gelu_prime(X @ W1))
        np.testing.assert_allclose(grads["W1"], want, rtol=1e-12, atol=1e-14)


def test_two_copies_or_a_function_of_one_name_stay_written_out():
    """X @ w - r twice (least squares) and softmax(z) three times (its Jacobian) get no name."""
    ls = derive("sum((X @ w - r) ** 2)", ["w"], {"X": "real[k, n]", "w": "real[n]", "r": "real[k]"})
    assert ls.to_text() == "dw = 2 * (X.T @ (X @ w - r))"
    jac = derive("softmax(z)", ["z"], {"z": "real[n]"})
    assert jac.to_text() == "J = diag(softmax(z)) - outer(softmax(z), softmax(z))"


# ---------------------------------------------------------------- the comparison itself


def _canon(text: str, vars_: dict) -> tuple:
    return canonical(parse_formula(text, build_environment(vars_)))


def test_canonical_ignores_order_of_commutative_terms_only():
    v = {"p": "real[n]", "y": "real[n]", "a": "real[n]", "X": "real[n, k]", "e": "real[n]"}
    assert _canon("p - y", v) == _canon("-y + p", v)
    assert _canon("a * p * y", v) == _canon("y * (p * a)", v)
    assert _canon("2 * X.T @ e", v) == _canon("2 * (X.T @ e)", v)
    assert _canon("p - y", v) != _canon("y - p", v)
    assert _canon("a * (p + y)", v) != _canon("a * p + a * y", v)
    assert _canon("X.T @ e", v) != _canon("2 * (X.T @ e)", v)


# ---------------------------------------------------------------- behaviour


def test_broken_rule_is_caught_not_shown(monkeypatch):
    import dataclasses

    wrong = dataclasses.replace(REGISTRY["tanh"], vjp=lambda n, g, i: g * (1 + n**2))
    monkeypatch.setitem(REGISTRY, "tanh", wrong)
    with pytest.raises(DerivationFailed) as info:
        derive("sum(tanh(s))", "s", {"s": "real[n]"})
    result = info.value.results["s"]
    assert result.verdict == "fail"
    assert result.counterexample is not None


@pytest.mark.parametrize(
    "case,fn",
    [
        ("ce-simplex", "softmax"),
        ("ce-batch", "cross_entropy"),
        ("layernorm", "var"),
        ("layernorm-without-def", "mean"),
        ("rmsnorm", "sqrt"),
    ],
)
def test_textbook_forms_come_from_the_registry_vjps(monkeypatch, case, fn):
    """No fused rule: a wrong VJP of an inner function gives a gradient the verifier rejects."""
    import dataclasses

    rule = REGISTRY[fn].vjp
    wrong = dataclasses.replace(REGISTRY[fn], vjp=lambda n, g, i: 2 * rule(n, g, i))
    monkeypatch.setitem(REGISTRY, fn, wrong)
    expr, wrt, vars_, defs, _ = CASES[case]
    with pytest.raises(DerivationFailed) as info:
        derive(expr, wrt, vars_, defs)
    assert info.value.results[wrt[0]].verdict == "fail"


def test_several_variables_by_comma_and_order_kept():
    program = derive(
        "sum(G * (X @ W))", "X, W", {"X": "real[n, k]", "W": "real[k, m]", "G": "real[n, m]"}
    )
    assert [w for w, _ in program.gradients] == ["X", "W"]
    assert program.to_text().splitlines()[:2] == ["dX = G @ W.T", "dW = X.T @ G"]


def test_unverified_mode_says_so():
    program = derive("sum(exp(s))", "s", {"s": "real[n]"}, verify=False)
    assert not program.verified
    assert program.verification_line() == "not verified"
    assert program.to_text() == "ds = exp(s)"


def test_grad_wrapper_names_the_variable():
    program = derive("grad(logsumexp(z), z)", None, {"z": "real[n]"})
    assert program.to_text() == "dz = softmax(z)"


def test_json_and_latex_forms():
    program = derive(
        "sum(O * (P @ V))",
        ["V"],
        {"O": "real[n, d]", "V": "real[n, d]", "z": "real[n, n]"},
        {"P": "softmax(z)"},
    )
    data = program.to_json()
    assert data["gradients"] == {"V": "P.T @ O"}
    assert data["verified"] is True
    assert data["verification"].startswith(
        "verified: exact at n=2, d=3 and n=3, d=2 and n=4, d=5 (scales 1e-3..4); numeric at"
    )
    assert program.to_latex() == "\\begin{aligned}\n\\mathrm{d}V &= P^\\top O\n\\end{aligned}"


@pytest.mark.parametrize(
    "expr,wrt,message",
    [
        ("sum(z)", None, "say which variable"),
        ("sum(z)", "q", "--wrt q: not a declared variable"),
        ("sum(z)", "z,z", "named twice"),
        ("sum(y)", "z", "does not depend on z"),
        ("outer(z, z)", "z", "needs a scalar expression"),
        ("sum(grad(sum(z**2), z))", "z", "contains grad()"),
        ("grad(sum(z), z)", "y", "already names the variable z"),
    ],
)
def test_bad_requests_are_one_line_errors(expr, wrt, message):
    with pytest.raises(DeriveError) as info:
        derive(expr, wrt, {"z": "real[n]", "y": "real[n]"})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- two-head attention (issue 7)

# Per-head projections of one input X, an output projection per head, an upstream gradient G.
# Deriving takes milliseconds; verifying it takes minutes in the exact route (SymPy's diff, see
# benchmarks/RESULTS.md), so the check here is the independent one of test_derive_names:
# the printed program run line by line against complex-step gradients.
TWO_HEAD_VARS = {"X": "real[n, k]", "G": "real[n, m]"} | {
    f"W{p}{h}": ("real[d, m]" if p == "o" else "real[k, d]") for h in (1, 2) for p in "qkvo"
}
TWO_HEAD_DEFS = {f"{p.upper()}{h}": f"X @ W{p}{h}" for h in (1, 2) for p in "qkv"} | {
    "O": " + ".join(f"softmax(Q{h} @ K{h}.T / sqrt(d)) @ V{h} @ Wo{h}" for h in (1, 2))
}
TWO_HEAD_PROGRAM = """
P = softmax(Q1 @ K1.T / sqrt(d))
P2 = softmax(Q2 @ K2.T / sqrt(d))
dP = G @ Wo1.T @ V1.T
dP2 = G @ Wo2.T @ V2.T
dS = P * (dP - sum(P * dP, axis=-1, keepdims=True))
dS2 = P2 * (dP2 - sum(P2 * dP2, axis=-1, keepdims=True))
dWq1 = X.T @ (dS @ K1) / sqrt(d)
dWk1 = X.T @ (dS.T @ Q1) / sqrt(d)
dWv1 = X.T @ (P.T @ (G @ Wo1.T))
dWo1 = V1.T @ P.T @ G
dWq2 = X.T @ (dS2 @ K2) / sqrt(d)
dWk2 = X.T @ (dS2.T @ Q2) / sqrt(d)
dWv2 = X.T @ (P2.T @ (G @ Wo2.T))
dWo2 = V2.T @ P2.T @ G
"""


def test_two_head_attention_program():
    from test_derive_names import check_program

    wrt = [f"W{p}{h}" for h in (1, 2) for p in "qkvo"]
    program = derive("sum(G * O)", wrt, TWO_HEAD_VARS, TWO_HEAD_DEFS, verify=False)
    assert program.to_text() == TWO_HEAD_PROGRAM.strip()
    check_program(program, "sum(G * O)", TWO_HEAD_VARS, TWO_HEAD_DEFS)
