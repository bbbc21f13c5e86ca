"""Printers: text re-parses to the same tree; LaTeX is textbook notation."""

from __future__ import annotations

import pytest

from engine.parser import build_environment, parse_formula
from engine.printing import to_latex, to_text
from engine.printing.latex import latex_name

VARS = {
    "x": "real[n]",
    "y": "real[n]",
    "s": "real",
    "X": "real[n, k]",
    "w": "real[k]",
    "P": "real[n, n]",
    "Q": "real[n, k]",
    "eps": "positive",
    "beta1": "unit",
    # integer labels (issue 8)
    "t": "index[n, k]",
    "u": "index[k, n]",
    "c": "index[n]",
}
ENV = build_environment(VARS, {"xhat": "(x - mean(x)) / sqrt(var(x) + eps)"})


@pytest.mark.parametrize(
    "text",
    [
        "x - y",
        "x - (y - x)",
        "-(x + y)",
        "2 * outer(X @ w - y, w)",
        "2 * (X.T @ (X @ w - y))",
        "(2 * X.T) @ (X @ w - y)",
        "x ** 2 ** s",
        "(x ** 2) ** s",
        "-x ** 2",
        "(-x) ** 2",
        "P * (P - sum(P * P, axis=-1, keepdims=True))",
        "Q.T @ P / sqrt(k)",
        "x / (s * s)",
        "x / s / s",
        "softmax(P, axis=0)",
        "ones(n) * s + eye(n) @ x",
        "diag(x) - outer(x, x)",
        "(y - mean(y) - xhat * mean(y * xhat)) / sqrt(var(x) + eps)",
        "0.5 * x + 1/3 * y",
        # structure (engine/functions/structure.py)
        "X[:, :k - 1]",
        "X[1:, -1] + x[-1]",
        "(x + y)[0] ** 2",
        "X.T[0]",
        "(-x)[1:]",
        "P[:, 1:n - 1][0]",
        "concat([x, y - 1])",
        "concat([X, P], axis=-1)",
        "stack([x, y], axis=1) @ stack([s, s])",
        "reshape(X.T, (k * n,))",
        "reshape(P, (n, n, 1))[:, 0]",
        "pad(x, (1, n))",
        "pad(X, (0, 2), axis=0)",
        # linear algebra (matrices.py)
        "inv(P).T @ x - solve(P.T, y) * det(P) + logdet(P @ P.T)",
        "norm(X, axis=1, keepdims=True) + norm(x) * norm(Q)",
        # tensors of any rank (issue 8)
        "transpose(X, (1, 0)) @ swapaxes(X, 0, 1).T",
        'einsum("ij,j->i", X, w) + einsum("ii->", P) * x',
        "sum(X, axis=(0, 1)) + mean(softmax(X, axis=(0, 1)), axis=(-1,))",
        "squeeze(expand_dims(x, axis=(0, 2)))",
        # integer labels (issue 8)
        "-mean(take_along_axis(log_softmax(X), t))",
        "take_along_axis(X, u, axis=0) + take_along_axis(x, c)",
        "(softmax(X) - one_hot(t)) / n",
        "one_hot(u, axis=0) * X + x @ one_hot(t)",
    ],
)
def test_text_round_trip(text: str):
    tree = parse_formula(text, ENV)
    printed = to_text(tree)
    assert parse_formula(printed, ENV) == tree, printed


def test_text_function_calls_need_no_parentheses():
    tree = parse_formula("2 * outer(x, y)", ENV)
    assert to_text(tree) == "2 * outer(x, y)"
    assert to_text(parse_formula("2 * (X.T @ (X @ w))", ENV)) == "2 * (X.T @ (X @ w))"


@pytest.mark.parametrize(
    "name,latex",
    [
        ("dQ", r"\mathrm{d}Q"),
        ("dx", r"\mathrm{d}x"),
        ("xhat", r"\hat{x}"),
        ("beta1", r"\beta_{1}"),
        ("eps", r"\epsilon"),
        ("W_out", r"W_{\mathrm{out}}"),
        ("t1", "t_{1}"),
        ("P", "P"),
        ("grad_X", r"\nabla_{X}"),  # the gradient of X beside a variable dX
        ("grad_W1", r"\nabla_{W_{1}}"),
        ("dX_1", r"\mathrm{d}X_{1}"),
        ("_x", r"\mathrm{\_x}"),  # no subscript of an empty name (this used to crash)
        ("x_", r"\mathrm{x\_}"),
    ],
)
def test_latex_names(name: str, latex: str):
    assert latex_name(name) == latex


@pytest.mark.parametrize(
    "text,latex",
    [
        ("diag(x) - outer(x, x)", r"\operatorname{diag}\left(x\right) - x x^\top"),
        ("2 * (X.T @ (X @ w - y))", r"2 X^\top \left(X w - y\right)"),
        ("2 * outer(X @ w - y, w)", r"2 \left(X w - y\right) w^\top"),
        ("Q.T @ P / sqrt(k)", r"\frac{Q^\top P}{\sqrt{k}}"),
        ("x * (1 - y)", r"x \odot \left(1 - y\right)"),
        ("softmax(x) - y", r"\operatorname{softmax}\left(x\right) - y"),
        ("sum(y) * x", r"{\textstyle\sum}\left(y\right) \, x"),
        ("ones(n) * s", r"\mathbf{1}_{n} \, s"),
        # tensors of any rank (issue 8)
        ('einsum("ij,j->i", X, w)', r"\left[\sum_{j} X_{ij} w_{j}\right]_{i}"),
        ("swapaxes(X, 0, 1) @ x", r"X^\top x"),
        ("sum(X, axis=(0, 1))", r"{\textstyle\sum}\left(X\right)"),
        (
            "(y - mean(y) - xhat * mean(y * xhat)) / sqrt(var(x) + eps)",
            r"\frac{y - \operatorname{mean}\left(y\right) - \hat{x} \, "
            r"\operatorname{mean}\left(y \odot \hat{x}\right)}"
            r"{\sqrt{\operatorname{Var}\left(x\right) + \epsilon}}",
        ),
        # structure: 1-based inclusive ranges, block matrices
        ("X[:, :k - 1]", r"X_{:, 1:k - 1}"),
        ("X[1:, -1]", r"X_{2:n, k}"),
        ("x[0] * x[-1]", r"x_{1} \, x_{n}"),
        ("(x + y)[0] ** 2", r"\left(x + y\right)_{1}^{2}"),
        ("softmax(x)[0]", r"\left(\operatorname{softmax}\left(x\right)\right)_{1}"),
        ("concat([x, y])", r"\begin{bmatrix} x \\ y \end{bmatrix}"),
        ("concat([X, P], axis=1)", r"\begin{bmatrix} X & P \end{bmatrix}"),
        ("stack([x, y])", r"\begin{bmatrix} x^\top \\ y^\top \end{bmatrix}"),
        ("stack([x, y], axis=1)", r"\begin{bmatrix} x & y \end{bmatrix}"),
        ("reshape(X, (k, n))", r"\operatorname{reshape}_{k \times n}\left(X\right)"),
        ("pad(x, (1, 0))", r"\begin{bmatrix} \mathbf{0}_{1} \\ x \end{bmatrix}"),
        ("pad(X, (0, 2))", r"\operatorname{pad}_{(0, 2),\,\text{axis}\,1}\left(X\right)"),
        # linear algebra (matrices.py)
        ("inv(P).T @ x", r"\left(P^{-1}\right)^\top x"),
        ("inv(P.T + P)", r"\left(P^\top + P\right)^{-1}"),
        ("solve(P, x)", r"P^{-1} x"),
        ("det(P) * logdet(P)", r"\det\left(P\right) \, \log\det\left(P\right)"),
        ("norm(x)", r"\left\lVert x \right\rVert"),
        ("norm(X)", r"\left\lVert X \right\rVert_F"),
        ("norm(X, axis=1)", r"\left\lVert X \right\rVert_{\text{row}}"),
        # integer labels (issue 8): the entry of each row at its label
        ("take_along_axis(X, t)", r"X_{i, t_{i}}"),
        ("take_along_axis(X, u, axis=0)", r"X_{u_{i}, i}"),
        ("take_along_axis(x, c)", r"x_{c}"),
        (
            "take_along_axis(log_softmax(X), t)",
            r"\left(\log\operatorname{softmax}\left(X\right)\right)_{i, t_{i}}",
        ),
        ("one_hot(t)", r"\operatorname{onehot}\left(t\right)"),
        ("one_hot(u, axis=0)", r"\operatorname{onehot}_{\text{axis}\,0}\left(u\right)"),
    ],
)
def test_latex_textbook_forms(text: str, latex: str):
    assert to_latex(parse_formula(text, ENV)) == latex


def test_latex_has_no_internals():
    tree = parse_formula("sum(P * (P - sum(P, axis=-1, keepdims=True)), axis=0) @ x", ENV)
    out = to_latex(tree)
    for bad in ("Call(", "Symbol", "keepdims", "None", "_axis"):
        assert bad not in out


def test_latex_function_names_with_underscores():
    assert to_latex(parse_formula("log_softmax(x)", ENV)) == (
        r"\log\operatorname{softmax}\left(x\right)"
    )
    assert to_latex(parse_formula("gelu_tanh(x)", ENV)) == (
        r"\operatorname{GELU}_{\tanh}\left(x\right)"
    )


def test_matrix_product_beside_a_hadamard_product_is_parenthesized():
    # Python gives * and @ one precedence level, so `P * dS @ K` is `(P * dS) @ K`; the printer
    # says so, and still leaves scalar factors and divisions by scalars bare.
    env = build_environment({"A": "real[n, n]", "B": "real[n, n]", "x": "real[n]"})
    cases = {
        "x * A @ B": "(x * A) @ B",
        "A @ B * A": "(A @ B) * A",
        "2 * A @ B": "2 * A @ B",
        "A @ B / 2": "A @ B / 2",
    }
    for source, printed in cases.items():
        e = parse_formula(source, env)
        assert to_text(e) == printed
        assert parse_formula(printed, env) == e


def test_latex_of_derivatives_and_constant_factors():
    env = build_environment({"z": "real[n]", "y": "simplex[n]"}, {"p": "softmax(z)"})
    cases = {
        "jacobian(p, z)": r"\frac{\partial p}{\partial z}",
        "jacobian(softmax(z), z)": (
            r"\frac{\partial}{\partial z} \operatorname{softmax}\left(z\right)"
        ),
        "grad(cross_entropy(p, y), z)": r"\nabla_{z} \operatorname{CE}\left(p, y\right)",
        "hessian(logsumexp(z), z)": r"\nabla^{2}_{z} \operatorname{logsumexp}\left(z\right)",
        "z * 2": "2 z",
        "z * -2": "-2 z",
        "0 * ones(n)": r"\mathbf{0}_{n}",
    }
    for source, latex in cases.items():
        assert to_latex(parse_formula(source, env)) == latex


# ---------------------------------------------------------------- forms a reader could misread

UNAMBIGUOUS_ENV = build_environment(
    {
        "p": "simplex[n]",
        "v": "real[n]",
        "A": "real[n, m]",
        "G": "real[n, m]",
        "c": "real[n, 1]",
        "r": "real[1, m]",
        "t": "positive",
    },
    {"D": "sum(A * G, axis=-1, keepdims=True)"},
)


@pytest.mark.parametrize(
    "text,latex",
    [
        # a power of a sum: (Σ x)², never Σ(x)², which reads as a sum of squares
        ("sum(p * v) ** 2", r"\left({\textstyle\sum}\left(p \odot v\right)\right)^{2}"),
        ("2 * sum(v) ** 2", r"2 \left({\textstyle\sum}\left(v\right)\right)^{2}"),
        ("sum(v ** 2)", r"{\textstyle\sum}\left(v^{2}\right)"),
        ("sum(A, axis=0) ** 2", r"\left({\textstyle\sum}_{\text{col}}\left(A\right)\right)^{2}"),
        # a keepdims row sum (a column) broadcast across columns shows the ones row vector
        (
            "A - sum(A * G, axis=-1, keepdims=True)",
            r"A - {\textstyle\sum}_{\text{row}}\left(A \odot G\right) \, \mathbf{1}_{m}^{\top}",
        ),
        ("A - D", r"A - D \, \mathbf{1}_{m}^{\top}"),
        ("A * (G - D)", r"A \odot \left(G - D \, \mathbf{1}_{m}^{\top}\right)"),
        ("D * A", r"\left(D \, \mathbf{1}_{m}^{\top}\right) \odot A"),
        (
            "A / sum(A, axis=1, keepdims=True)",
            r"\frac{A}{{\textstyle\sum}_{\text{row}}\left(A\right) \, \mathbf{1}_{m}^{\top}}",
        ),
        # a column sum (a row) broadcast down the rows: the ones column vector in front
        (
            "A - sum(A, axis=0, keepdims=True)",
            r"A - \mathbf{1}_{n} \, {\textstyle\sum}_{\text{col}}\left(A\right)",
        ),
        ("A + r", r"A + \mathbf{1}_{n} \, r"),
        ("c + A", r"c \, \mathbf{1}_{m}^{\top} + A"),
        # no broadcast to show: unchanged
        ("c * c", r"c \odot c"),
        ("A - G", r"A - G"),
        ("A * t", r"A \, t"),
        ("sum(A * G, axis=-1)", r"{\textstyle\sum}_{\text{row}}\left(A \odot G\right)"),
        # a number next to a number: a dot, never "3 0.044715" (which reads 30.044715)
        ("3 * 0.044715 * t", r"3 \cdot 0.044715 \, t"),
        ("2 * (1 / 3)", r"2 \left(\frac{1}{3}\right)"),
        ("2 * t", r"2 t"),
        # a typed decimal prints as typed; common fractions stay fractions
        ("0.044715 * t", r"0.044715 t"),
        ("0.5 * t", r"\frac{1}{2} t"),
        ("1e-8 + t", r"\frac{1}{100000000} + t"),
        # a negated factor is parenthesized: 2 (-t), never "2 -t" (which reads 2 - t)
        ("2 * (-t)", r"2 \left(-t\right)"),
        ("t * (-t)", r"t \, \left(-t\right)"),
    ],
)
def test_no_ambiguous_forms(text: str, latex: str):
    assert to_latex(parse_formula(text, UNAMBIGUOUS_ENV)) == latex


def test_a_size_named_like_a_differential_prints_as_a_subscripted_d():
    # dh, the head dimension, is d_h; a variable dh (the gradient of h) stays \mathrm{d}h
    sizes = build_environment({"Q": "real[n, dh]", "W": "real[dk, n]"})
    assert to_latex(parse_formula("Q / sqrt(dh)", sizes)) == r"\frac{Q}{\sqrt{d_{h}}}"
    assert to_latex(parse_formula("dk * W", sizes)) == r"d_{k} \, W"
    grads = build_environment({"h": "real[n]", "dh": "real[n]"})
    assert to_latex(parse_formula("dh * h", grads)) == r"\mathrm{d}h \odot h"
