"""Property-based tests: the parser meets random and mutated text with clean errors only."""

from __future__ import annotations

import string
import warnings

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.expr import EngineError
from engine.parser import build_environment, parse_equation, parse_formula

VARS = {"x": "real[n]", "y": "simplex[n]", "A": "real[n, m]", "s": "positive", "t": "onehot[m]"}
DEFS = {"p": "softmax(x)"}

# Valid formulas of the language; mutations of them reach deep into the parser's branches.
SEEDS = [
    "softmax(x, axis=-1) * 2 - y",
    "grad(cross_entropy(p, y), x)",
    "A.T @ x / sqrt(m) + ones(m)",
    "sum(A, axis=0, keepdims=True) ** 2",
    "jacobian(p, x) == diag(p) - outer(p, p)",
    "logsumexp(A @ t) - log(s) + pi * (n - 1)",
    "var(x) + mean(exp(-x)) + kl(y, p) + entropy(y) + trace(eye(n))",
    "(eye(3) ** 2).T + ones(3, 3) ** 0.5 + s ** (n - 1) + (x ** 2) ** 3",
    "gelu(x) + gelu_tanh(x) + silu(x) + relu(x) + softplus(x) + abs(tanh(sigmoid(x)))",
    # tensors of any rank (issue 8)
    'einsum("ij,j->i", A, einsum("ij->j", A)) + sum(swapaxes(expand_dims(x, axis=(0, 2)), 0, 1))',
    "sum(transpose(expand_dims(A, axis=0), (2, 0, 1)), axis=(0, 2)) + squeeze(A.T @ ones(n, 1))",
]

# Characters the language uses, plus the ones an attacker or a typo would bring.
ALPHABET = string.ascii_letters + string.digits + " _.,()[]{}+-*/@=<>!%&|^~:;'\"\\#`$?\n\t\x00é∑"

FRAGMENTS = [
    "__import__('os')",
    ".__class__",
    "lambda: 0",
    "[i for i in x]",
    "**{}",
    "*x",
    "x[0]",
    "==",
    ".T",
    "(",
    ")",
    ",axis=",
    "keepdims=True",
    "1e999",
    "10**10**10",
    "ones(99)",
    "grad(",
    "\\",
    "'",
    "\x00",
    "if",
    " not ",
    "await ",
    "yield",
    ":=",
    'einsum("',  # tensors of any rank (issue 8)
    "->",
    "axis=(0, 1)",
    ", (1, 0)",
]


def _check_clean(text: str) -> None:
    """Parsing `text` either succeeds or raises an EngineError; nothing else may escape."""
    env = build_environment(VARS, DEFS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SyntaxWarning for '1 is 1' is not an error
        for parse in (parse_formula, parse_equation):
            try:
                parse(text, env)
            except EngineError as e:
                message = str(e)
                assert message and "\n" not in message and "Traceback" not in message


@st.composite
def mutated(draw) -> str:
    """A seed formula with a few random insertions, deletions and replacements."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "fragment"]))
        piece = draw(st.text(alphabet=ALPHABET, min_size=1, max_size=3))
        if kind == "insert":
            text = text[:pos] + piece + text[pos:]
        elif kind == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 5)) :]
        elif kind == "replace":
            text = text[:pos] + piece + text[pos + len(piece) :]
        else:
            text = text[:pos] + draw(st.sampled_from(FRAGMENTS)) + text[pos:]
    return text


FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@FUZZ
@given(st.text(alphabet=ALPHABET, max_size=40))
def test_random_text_gives_only_clean_errors(text: str) -> None:
    _check_clean(text)


@FUZZ
@given(mutated())
@example("((((x ** 64) ** 64) ** 64) ** 64) ** 64")
@example("eye(3) ** 2")
@example("x ** ones(n)")
@example("s ** (1e10 * n)")
@example("(" * 200 + "x" + ")" * 200)
@example("-" * 3000 + "x")
@example("x" + ".T" * 1000)
@example("exp(" * 120 + "x" + ")" * 120)
def test_mutated_formulas_give_only_clean_errors(text: str) -> None:
    _check_clean(text)


@FUZZ
@given(st.text(max_size=30))
def test_arbitrary_unicode_gives_only_clean_errors(text: str) -> None:
    _check_clean(text)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.dictionaries(
        st.text(alphabet=string.ascii_letters + "_0123456789 ", min_size=1, max_size=6),
        st.text(alphabet=string.ascii_letters + "[], 0123456789-", max_size=12),
        max_size=3,
    )
)
def test_random_declarations_give_only_clean_errors(vars_: dict[str, str]) -> None:
    try:
        build_environment(vars_)
    except EngineError as e:
        assert str(e) and "\n" not in str(e)
