"""Tests of the whitelist parser: the whole formula language is read, everything else refused."""

from __future__ import annotations

import pytest
import sympy

from engine.expr import Call, Const, EngineError, Ref, ShapeError, Size, Var
from engine.parser import (
    MAX_TEXT,
    ParseError,
    build_environment,
    parse_equation,
    parse_formula,
)

VARS = {
    "x": "real[n]",
    "w": "real[m]",
    "A": "real[n, m]",
    "S": "real[n, n]",
    "s": "real",
    "u": "positive[n]",
    "y": "simplex[n]",
    "t": "onehot[n]",
    "r": "unit[n]",
    "lab": "index[n, m]",  # integer labels (issue 8): n positions in 0..m-1
}
n, m = sympy.symbols("n m", positive=True, integer=True)


@pytest.fixture
def env():
    return build_environment(VARS, {"p": "softmax(x)", "c": "p - y"})


def shape_of(text: str, env) -> tuple:
    return parse_formula(text, env).shape


# ---------------------------------------------------------------- the language is accepted


@pytest.mark.parametrize(
    "text, shape",
    [
        # names: variables, definitions, sizes as scalars, pi
        ("x", (n,)),
        ("p", (n,)),
        ("n", ()),
        ("sqrt(d_model)", ()),
        ("n - 1", ()),
        ("pi", ()),
        # numbers
        ("3", ()),
        ("2.5", ()),
        ("1e-3", ()),
        # operators with broadcasting
        ("x + 1", (n,)),
        ("A * w", (n, m)),
        ("A - ones(n, 1)", (n, m)),
        ("A / sum(A, axis=1, keepdims=True)", (n, m)),
        ("x ** 2", (n,)),
        ("2 ** x", (n,)),
        ("-x", (n,)),
        ("+x", (n,)),
        # matrix products and the transpose
        ("A.T @ S", (m, n)),
        ("A @ w", (n,)),
        ("x @ A", (m,)),
        ("x @ x", ()),
        ("A.T", (m, n)),
        ("x.T", (n,)),
        # elementwise functions
        *[
            (f"{f}(x)", (n,))
            for f in (
                "exp log sqrt abs tanh sigmoid sin cos relu softplus silu gelu gelu_tanh".split()
            )
        ],
        # selection, masks and stable elementwise functions (issue 8)
        *[(f"{f}(x)", (n,)) for f in ("log1p", "expm1", "logsigmoid", "cumsum")],
        ("maximum(A, w)", (n, m)),
        ("clip(A, 0, 6)", (n, m)),
        ("where(tril(n), ones(n, n), -inf)", (n, n)),
        ("triu(n, m, k=-1)", (n, m)),
        ("max(A, axis=0)", (m,)),
        ("argmax(A, axis=-1, keepdims=True)", (n, 1)),
        # reductions with NumPy semantics
        ("sum(A)", ()),
        ("sum(A, axis=0)", (m,)),
        ("sum(A, axis=-1)", (n,)),
        ("mean(A, axis=1, keepdims=True)", (n, 1)),
        ("var(A, keepdims=True)", (1, 1)),
        ("logsumexp(A, axis=-2)", (m,)),
        ("softmax(x)", (n,)),
        ("softmax(A, axis=0)", (n, m)),
        ("log_softmax(A, axis=-1)", (n, m)),
        # losses
        ("cross_entropy(p, y)", ()),
        ("entropy(y)", ()),
        ("kl(y, p)", ()),
        # linear algebra
        ("diag(x)", (n, n)),
        ("outer(x, w)", (n, m)),
        ("eye(n)", (n, n)),
        ("ones(n)", (n,)),
        ("ones(n, m)", (n, m)),
        ("ones(3)", (3,)),
        ("trace(S)", ()),
        # derivatives
        ("grad(sum(x ** 2), x)", (n,)),
        ("grad(s ** 3, s)", ()),
        ("grad(sum(A), A)", (n, m)),
        ("jacobian(softmax(x), x)", (n, n)),
        ("jacobian(A.T @ x, x)", (m, n)),
        # structure: slicing and indexing (NumPy semantics), concat, stack, reshape, split
        ("x[0]", ()),
        ("x[-1]", ()),
        ("x[1:]", (n - 1,)),
        ("x[:-2]", (n - 2,)),
        ("A[:, 0]", (n,)),
        ("A[0]", (m,)),
        ("A[1:n, -1]", (n - 1,)),
        ("A[:, :]", (n, m)),
        ("A[::1, 0:m]", (n, m)),
        ("S[:, :n - 1]", (n, n - 1)),
        ("concat([x, x])", (2 * n,)),
        ("concat((A, S), axis=-1)", (n, m + n)),
        ("stack([x, x, x], axis=1)", (n, 3)),
        ("reshape(A, (m, n))", (m, n)),
        ("reshape(A, (n * m,))", (n * m,)),
        ("split(concat([x, x]), 2)[-1]", (n,)),
        ("pad(x, (1, n))", (2 * n + 1,)),
        ("pad(A, (0, 2), axis=0)", (n + 2, m)),
        # linear algebra (matrices.py)
        ("det(S)", ()),
        ("logdet(S @ S.T)", ()),
        ("inv(S)", (n, n)),
        ("solve(S, A)", (n, m)),
        ("solve(S.T, x)", (n,)),
        ("norm(x)", ()),
        ("norm(A, axis=0)", (m,)),
        ("norm(A, axis=-1, keepdims=True)", (n, 1)),
        # integer labels (issue 8)
        ("lab", (n,)),
        ("take_along_axis(A, lab)", (n,)),
        ("take_along_axis(A, lab, axis=-1)", (n,)),
        ("one_hot(lab)", (n, m)),
        ("one_hot(lab, axis=0)", (m, n)),
    ],
)
def test_language_is_accepted(text, shape, env):
    if "d_model" in text:
        env = build_environment({"Q": "real[n, d_model]"})
    assert shape_of(text, env) == shape


def test_names_resolve_to_the_right_nodes(env):
    assert parse_formula("x", env) == Var("x", "real", (n,))
    assert parse_formula("n", env) == Size("n")
    assert parse_formula("pi", env) == Const(sympy.pi)
    p = parse_formula("p", env)
    assert isinstance(p, Ref) and p.name == "p" and p.body == parse_formula("softmax(x)", env)
    # a definition may use an earlier one
    assert parse_formula("c", env).body.args[0] == p


def test_numbers_are_exact_rationals(env):
    assert parse_formula("0.1", env) == Const(sympy.Rational(1, 10))
    assert parse_formula("2.5e-3", env) == Const(sympy.Rational(1, 400))
    assert parse_formula("7", env) == Const(sympy.Integer(7))
    assert parse_formula("-3", env) == Const(sympy.Integer(-3))


def test_operator_precedence_follows_python(env):
    # -x ** 2 is -(x ** 2); a * b + c groups the product; 2 ** 3 ** 2 is right-associative
    neg = parse_formula("-x ** 2", env)
    assert isinstance(neg, Call) and neg.fn == "neg" and neg.args[0].fn == "pow"
    add = parse_formula("x * x + 1", env)
    assert add.fn == "add" and add.args[0].fn == "mul"
    power = parse_formula("2 ** 3 ** 2", env)
    assert power.args[1].fn == "pow"


def test_keyword_defaults_are_dropped(env):
    assert parse_formula("softmax(x, axis=-1)", env) == parse_formula("softmax(x)", env)
    assert parse_formula("sum(A, keepdims=False)", env) == parse_formula("sum(A)", env)
    assert parse_formula("sum(A, axis=1)", env) != parse_formula("sum(A, axis=-1)", env)


def test_equation_splits_into_two_sides(env):
    lhs, rhs = parse_equation("grad(cross_entropy(p, y), x) == p - y", env)
    assert lhs.fn == "grad" and rhs.fn == "sub"
    assert lhs.shape == rhs.shape == (n,)


def test_printing_round_trips(env):
    for text in ("A.T @ x", "-x ** 2", "sum(A, axis=0, keepdims=True)", "x / (1 + exp(-x))"):
        tree = parse_formula(text, env)
        assert parse_formula(str(tree), env) == tree


def test_environment_collects_sizes_in_declaration_order():
    env = build_environment({"Q": "real[m, d]", "b": "real[d]", "z": "positive[3]"})
    assert list(env.sizes) == ["m", "d"]
    assert env.vars["z"].shape == (sympy.Integer(3),)
    assert env.vars["Q"].vtype == "real"


# ---------------------------------------------------------------- forbidden constructs


@pytest.mark.parametrize(
    "text, message",
    [
        ("x.__class__", "attribute '.__class__' is not allowed"),
        ("x.shape", "attribute '.shape' is not allowed"),
        ("__import__('os')", "name '__import__' is not allowed"),
        ("__builtins__", "name '__builtins__' is not allowed"),
        ("lambda: 0", "lambda expressions not allowed"),
        ("[v for v in x]", "comprehensions not allowed"),
        ("{v: v for v in x}", "comprehensions not allowed"),
        ("sum(v for v in x)", "generator expressions not allowed"),
        ("x[s]", "index: 's' is a variable"),
        ("x if s else x", "conditional expressions not allowed"),
        ("x and s", "'and'/'or' not allowed"),
        ("'text'", "constant 'text' is not allowed"),
        ("f'{x}'", "strings not allowed"),
        ("(x, x)", "tuples not allowed"),
        ("[x]", "lists not allowed"),
        ("{x}", "sets not allowed"),
        ("{1: x}", "dicts not allowed"),
        ("True", "constant True is not allowed"),
        ("None", "constant None is not allowed"),
        ("1j", "constant 1j is not allowed"),
        ("x % 2", "operator '%' is not allowed"),
        ("x // 2", "operator '//' is not allowed"),
        ("~x", "operator '~' is not allowed"),
        ("not x", "operator 'not' is not allowed"),
        ("x < s", "comparisons inside an expression not allowed"),
        ("print(x)", "unknown function 'print'"),
        ("eval('1')", "unknown function 'eval'"),
        ("getattr(x, 'T')", "unknown function 'getattr'"),
        ("x.T()", "only named functions can be called"),
        ("(lambda: 0)()", "only named functions can be called"),
        ("sum(*x)", "star arguments not allowed"),
        ("sum(**{'axis': 0})", "'**' arguments are not allowed"),
        ("unknown", "unknown name 'unknown'"),
        ("softmax", "function 'softmax' must be called with arguments"),
        ("softmax(x, temperature=2)", "softmax() has no parameter 'temperature'"),
        ("sum(x, axis=s)", "axis must be a small integer"),
        ("sum(x, keepdims=1)", "keepdims must be True or False"),
        ("eye(x)", "eye() takes sizes"),
        ("ones()", "ones() needs at least one size"),
        ("ones(65)", "size 65 is out of range 1..64"),
        ("grad(sum(x))", "grad() takes two arguments"),
        ("grad(sum(p), p)", "the second argument must be a declared variable"),
        ("x; x", "syntax error"),
        ("x +", "syntax error"),
        ("", "empty formula"),
        ("x == x", "'==' is only allowed once"),
        # structure: bounds are integers or size expressions, steps and fancy indexing refused
        ("x[::2]", "slices with a step are not supported"),
        ("x[...]", "'...' is not allowed in an index"),
        ("x[None]", "None (newaxis) is not allowed"),
        ("x[k]", "index: unknown size 'k'"),
        ("x[0.5]", "index: 0.5 is not an integer"),
        ("x[n // 2]", "only sizes, integers, +, - and * are allowed"),
        ("x[x]", "index: 'x' is a variable"),
        ("x[10000000]", "integer 10000000 is too large"),
        ("split(x, 2)", "take one with split(x, k, axis=a)[i]"),
        ("split(x, 2)[0:1]", "split(x, k, axis=a)[i] takes one part number i"),
        ("split(x, 2, keepdims=True)[0]", "split() has no parameter 'keepdims'"),
        ("concat(x, x)", "concat() takes a list of arrays"),
        ("stack(x)", "stack() takes a list of arrays"),
        ("reshape(A, n, m)", "reshape() takes an array and a tuple of sizes"),
        ("reshape(A, (n, s))", "reshape size: 's' is a variable"),
        ("pad(x, 1)", "pad() takes an array and two widths"),
        ("pad(x, (1, s))", "pad width: 's' is a variable"),
    ],
)
def test_forbidden_constructs_are_refused_with_a_clear_message(text, message, env):
    with pytest.raises(ParseError) as info:
        parse_formula(text, env)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("x + w", "shapes (n,) and (m,) do not broadcast"),
        ("A @ A", "@: inner dimensions differ: (n, m) @ (n, m) (m vs n)"),
        ("x @ s", "@ needs vectors or matrices, got a scalar"),
        ("grad(x, x)", "grad() needs a scalar function, got shape (n,)"),
        ("hessian(x, x)", "hessian() needs a scalar function, got shape (n,)"),
        ("sum(x, axis=1)", "sum(): axis 1 is out of range for an array of rank 1"),
        ("softmax(s)", "softmax() needs a vector or matrix, got shape scalar"),
        ("trace(A)", "trace() needs a square matrix, got shape (n, m)"),
        ("outer(A, x)", "outer() needs two vectors, got shape (n, m)"),
        # structure
        ("x[0, 0]", "too many indices (2) for an array of shape (n,)"),
        ("x[2:1]", "slice 2:1 is empty"),
        ("x[n]", "index n is out of range for an axis of length n"),
        ("x[-n - 1]", "index -n - 1 is out of range"),
        ("x[:n + 1]", "slice :n+1 is out of range for an axis of length n"),
        ("concat([A, S])", "concat(): shapes (n, m) and (n, n) differ off axis 0"),
        ("concat([x, x], axis=1)", "concat(): axis 1 is out of range for an array of rank 1"),
        ("stack([x, w])", "stack(): shapes (n,) and (m,) differ"),
        ("reshape(A, (n, n))", "reshape(): (n, m) has m*n entries, (n, n) has n**2"),
        ("split(x, 2)[0]", "an axis of length n does not divide into 2 equal parts"),
        ("split(concat([x, x]), 2)[2]", "split(): part 2 is out of range for 2 parts"),
        ("pad(x, (-1, 0))", "pad(): width -1 is negative"),
        ("pad(s, (1, 0))", "pad() needs an array, got a scalar"),
        # integer labels (issue 8)
        ("take_along_axis(S, lab)", "the labels lab are positions in 0..m-1, but axis -1"),
        ("take_along_axis(A, lab, axis=0)", "0..m-1, but axis 0 of the array has length n"),
        (
            "take_along_axis(expand_dims(w, axis=0), lab)",
            "the labels have shape (n,), but the array (1, m) without axis -1 is (1,)",
        ),
        ("take_along_axis(s, lab)", "take_along_axis() needs an array (not a scalar)"),
    ],
)
def test_shape_errors_name_the_shapes(text, message, env):
    with pytest.raises(ShapeError) as info:
        parse_formula(text, env)
    assert message in str(info.value)


def test_wrong_arity_is_refused(env):
    with pytest.raises(EngineError, match=r"exp\(\) takes 1 argument, got 2"):
        parse_formula("exp(x, x)", env)
    with pytest.raises(EngineError, match=r"outer\(\) takes 2 arguments, got 1"):
        parse_formula("outer(x)", env)


def test_comparisons_are_refused_in_equations_too(env):
    with pytest.raises(ParseError, match="exactly one '=='"):
        parse_equation("x < x", env)
    with pytest.raises(ParseError, match="exactly one '=='"):
        parse_equation("x == x == x", env)
    with pytest.raises(ParseError, match="exactly one '=='"):
        parse_equation("x", env)


@pytest.mark.parametrize(
    "text, message",
    [
        ("10 ** 10 ** 10", "exponent of a number is too large"),
        ("0.9 ** 5000", "exponent of a number is too large"),
        ("1.0000001 ** 4000", "too large for exact arithmetic"),
        ("x ** 1e10", "exponent is too large"),
        ("1e-10 ** -40", "constant power is too large"),
        ("((s ** 64) ** 64) ** 64", "nested powers are too large"),
        ("s ** (1e10 * n)", "exponent grows too fast with the sizes"),
        ("12345678901234567", "is too large"),
        ("1e400", "out of range"),
        ("x" + " + x" * 800, "formula is too large"),
        ("x" * (MAX_TEXT + 1), "formula is too long"),
    ],
)
def test_inputs_that_would_blow_up_are_refused(text, message, env):
    with pytest.raises(ParseError, match=message.replace("(", r"\(")):
        parse_formula(text, env)


def test_reasonable_powers_are_accepted(env):
    assert shape_of("(s ** 64) ** 64", env) == ()
    assert shape_of("eye(3) ** 2", env) == (3, 3)
    assert shape_of("x ** ones(n)", env) == (n,)
    assert shape_of("2 ** 64", env) == ()
    # a number's power is one number, bounded by its exact digits: Adam after 4096 steps,
    # float32's smallest subnormal
    assert shape_of("s * 0.999 ** 4096 + 2 ** -149", env) == ()


@pytest.mark.parametrize(
    "vars_, message",
    [
        ({"x": "complex[n]"}, "unknown type 'complex'"),
        ({"x": "real[]"}, "empty shape"),
        ({"x": "real[0]"}, "size 0 is out of range"),
        ({"x": "real[100]"}, "size 100 is out of range"),
        ({"x": "real[n-1]"}, "size name 'n-1' is not a valid identifier"),
        ({"x": "real[a, b, c, e, f]"}, "rank 5 is above the limit"),
        ({"x": "simplex"}, "needs at least one axis"),
        ({"x": "onehot"}, "needs at least one axis"),
        ({"x": "index"}, "needs at least one axis"),  # integer labels (issue 8)
        ({"x": "real[x]"}, "already a variable name"),
        ({"softmax": "real"}, "reserved"),
        ({"pi": "real"}, "reserved"),
        ({"__class__": "real"}, "not allowed"),
        ({"lambda": "real"}, "not allowed"),
        ({"x y": "real"}, "not a valid identifier"),
        ({"x": 3}, "must be a string"),
        ({"x": "real[n", "n": "real"}, "cannot read type"),
        ({"x": "real[n]", "n": "real"}, "already a size symbol"),
    ],
)
def test_bad_declarations_are_refused(vars_, message):
    with pytest.raises(ParseError, match=message.replace("[", r"\[")):
        build_environment(vars_)


def test_bad_definitions_name_the_definition():
    with pytest.raises(ParseError, match="definition 'p': unknown name 'q'"):
        build_environment({"x": "real[n]"}, {"p": "softmax(q)"})
    with pytest.raises(ParseError, match="definition 'x': the name is already taken"):
        build_environment({"x": "real[n]"}, {"x": "exp(x)"})
    with pytest.raises(ParseError, match="definition 'n': the name is already taken"):
        build_environment({"x": "real[n]"}, {"n": "exp(x)"})


def test_every_parser_error_is_an_engine_error():
    assert issubclass(ParseError, EngineError)
    assert issubclass(ShapeError, EngineError)
