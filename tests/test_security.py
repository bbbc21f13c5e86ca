"""Security tests: hostile formula text is refused, runs nothing, and never reaches eval/sympify."""

from __future__ import annotations

import ast
import builtins
import sys
from pathlib import Path

import pytest
import sympy
import sympy.parsing.sympy_parser

import engine.notes
from engine import verify
from engine.expr import EngineError
from engine.notes import Note, Section, Step
from engine.notes.build import load_notes
from engine.notes.check import check_step, environment
from engine.notes.symbols import Named, param
from engine.parser import ParseError, build_environment, parse_equation, parse_formula

VARS = {"x": "real[n]", "y": "simplex[n]"}


def payloads(marker_file: str) -> list[str]:
    """Classic escapes from Python expression sandboxes, each with a visible side effect."""
    touch = f"open({marker_file!r}, 'w').write('pwned')"
    return [
        f"__import__('os').system('touch {marker_file}')",
        "__import__('builtins').__dict__.update(PWNED=1)",
        "().__class__.__base__.__subclasses__()",
        "().__class__.__bases__[0].__subclasses__()[0]",
        "x.__class__.__mro__[-1].__subclasses__()",
        "x.T.__globals__",
        "softmax.__globals__['__builtins__']",
        "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0]",
        "(lambda: __import__('os').system('true'))()",
        touch,
        f"x + {touch}",
        f"softmax({touch})",
        f"sum(x, axis={touch})",
        "exec('import os')",
        "eval('1+1')",
        "compile('1', 'f', 'eval')",
        "globals().update(PWNED=1)",
        "setattr(__import__('builtins'), 'PWNED', 1)",
        "getattr(x, '__class__')",
        "vars()",
        "breakpoint()",
        "x.__dict__",
        "__builtins__.open",
        "[].append",
        "(x := 1)",
        'f\'{__import__("os").system("true")}\'',
    ]


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a payload created a file"
    assert not hasattr(builtins, "PWNED"), "a payload set a global"


def test_payloads_are_refused_by_the_parser(marker):
    env = build_environment(VARS)
    for text in payloads(str(marker)):
        with pytest.raises(ParseError) as info:
            parse_formula(text, env)
        assert "\n" not in str(info.value)
        with pytest.raises(ParseError):
            parse_equation(f"{text} == x", env)


def test_payloads_are_errors_in_claims(marker):
    for text in payloads(str(marker)):
        for equation in (f"{text} == x", f"x == {text}"):
            result = verify(equation, VARS, name="hostile")
            assert result.verdict == "error", (equation, result.verdict)
            assert result.report().startswith("ERROR hostile: ")
            assert "\n" not in result.report()


def test_payloads_are_refused_in_definitions_and_declarations(marker):
    for text in payloads(str(marker)):
        with pytest.raises(ParseError, match="definition 'p'"):
            build_environment(VARS, {"p": text})
        with pytest.raises(ParseError, match="variable 'z'"):
            build_environment({"z": text})
        with pytest.raises(ParseError):
            build_environment({text: "real[n]"})


def test_dunder_names_are_refused_everywhere():
    env = build_environment(VARS)
    for text in ("__class__", "__import__", "__builtins__", "__name__", "x.__add__"):
        with pytest.raises(ParseError, match="not allowed"):
            parse_formula(text, env)
    with pytest.raises(ParseError, match="attribute '.__add__' is not allowed"):
        parse_formula("x.__add__(x)", env)
    with pytest.raises(ParseError, match="only named functions can be called"):
        parse_formula("x.T(x)", env)
    with pytest.raises(ParseError, match="not allowed"):
        build_environment({"__x": "real"})
    with pytest.raises(ParseError, match="not allowed"):
        build_environment({"x": "real[__n]"})


# ---------------------------------------------------------------- eval/exec/sympify never called

CLAIMS = [
    (
        "grad(cross_entropy(softmax(z), y), z) == softmax(z) - y",
        {"z": "real[n]", "y": "simplex[n]"},
    ),
    (
        "jacobian(softmax(z), z) == diag(softmax(z)) - outer(softmax(z), softmax(z))",
        {"z": "real[n]"},
    ),
    ("sum(A * eye(n)) == trace(A) + 0 * ones(1) @ ones(1)", {"A": "real[n, n]"}),
    ("grad(sum(gelu(x) * log(u)), u) == gelu(x) / u + 1e-6", {"x": "real[n]", "u": "positive[n]"}),
    ("var(x) == mean(x ** 2) - mean(x) ** 2", {"x": "real[n]"}),
    ("log(x) == x", {"x": "real[n]"}),
]
EXPECTED = ["pass", "pass", "pass", "fail", "pass", "error"]


@pytest.fixture
def no_dynamic_code(monkeypatch):
    """eval, exec, sympify and parse_expr raise; compile may only build an AST (ast.parse)."""
    # Run every claim once first, so lazy imports (which exec module code) are done.
    for equation, vars_ in CLAIMS:
        verify(equation, vars_)
    calls: list[str] = []
    real_compile = builtins.compile
    sympify_module = sys.modules["sympy.core.sympify"]
    real_sympify = sympify_module.sympify

    def forbidden(name):
        def fn(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} was called")

        return fn

    def ast_only_compile(source, filename, mode, flags=0, *args, **kwargs):
        if not flags & ast.PyCF_ONLY_AST:
            calls.append("compile")
            raise AssertionError("compile was called to make code")
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    def sympify_numbers_only(a, *args, **kwargs):
        if isinstance(a, str):  # SymPy calls sympify internally on numbers; text is the danger
            calls.append("sympify(str)")
            raise AssertionError("sympify was called on text")
        return real_sympify(a, *args, **kwargs)

    monkeypatch.setattr(builtins, "eval", forbidden("eval"))
    monkeypatch.setattr(builtins, "exec", forbidden("exec"))
    monkeypatch.setattr(builtins, "compile", ast_only_compile)
    monkeypatch.setattr(sympy, "sympify", forbidden("sympy.sympify"))
    monkeypatch.setattr(sympy, "S", forbidden("sympy.S"))
    monkeypatch.setattr(sympy, "parse_expr", forbidden("parse_expr"))
    monkeypatch.setattr(sympy.parsing.sympy_parser, "parse_expr", forbidden("parse_expr"))
    monkeypatch.setattr(sympy.parsing.sympy_parser, "eval_expr", forbidden("eval_expr"))
    monkeypatch.setattr(sympify_module, "sympify", sympify_numbers_only)
    return calls


def test_parsing_and_verifying_never_call_eval_exec_or_sympify(no_dynamic_code):
    verdicts = [verify(equation, vars_).verdict for equation, vars_ in CLAIMS]
    assert verdicts == EXPECTED
    for text in payloads("/nonexistent/pwned"):
        assert verify(f"{text} == x", VARS).verdict == "error"
    assert no_dynamic_code == []


def test_the_guard_itself_works(no_dynamic_code):
    # The patched functions really do refuse, so the test above would have seen a call.
    with pytest.raises(AssertionError):
        eval("1")  # noqa: S307 - deliberately calling the patched builtin
    with pytest.raises(AssertionError):
        sympy.sympify("x")
    assert no_dynamic_code == ["eval", "sympy.sympify"]
    no_dynamic_code.clear()


def test_errors_from_hostile_input_are_engine_errors():
    env = build_environment(VARS)
    for text in payloads("/nonexistent/pwned"):
        try:
            parse_formula(text, env)
        except EngineError:
            continue
        pytest.fail(f"{text!r} was accepted")


# ---------------------------------------------------------------- note sources never reach eval

SYMPIFY_TRICKS = [
    "S('1')",
    "sympify('x')",
    "Lambda(x, x)",
    "Symbol('x').__class__",
    "Function('f')(x)",
    "lambda: 1",
    "x if __import__('os') else x",
    "factorial(10**10**10)",
    "Integer(2)**Integer(10)**Integer(10)",
]


def _identity_note(step):
    return Note(
        name="hostile",
        order=1,
        title="T",
        summary="s",
        sections=(Section("S", step),),
        arrays={"z": "real[n]"},
        indices={"i": "n"},
        params={"beta": "unit"},
    )


def test_identity_and_index_steps_given_as_text_run_nothing(no_dynamic_code, tmp_path):
    canary = tmp_path / "CANARY"
    beta = param("beta", "unit")
    texts = payloads(str(canary)) + SYMPIFY_TRICKS + [f"__import__('os').system('touch {canary}')"]
    for text in texts:
        for kind in ("identity", "index"):
            for claim in ((text, beta), (beta, text), (text, text)):
                step = Step(claim, "hostile", kind=kind)
                note = _identity_note(step)
                result = check_step(note, step, environment(note), "hostile")
                assert result.verdict == "error", (text, kind, result.verdict)
                assert "takes SymPy expressions, not text" in result.message
                assert "\n" not in result.report()

        def returns_text(values, text=text):
            return text

        step = Step((beta, returns_text), "a callable that returns text")
        note = _identity_note(step)
        result = check_step(note, step, environment(note), "hostile")
        assert result.verdict == "error" and "expected a SymPy expression, got text" in (
            result.message
        )
    assert not canary.exists()
    assert no_dynamic_code == []


def test_named_quantities_refuse_text(tmp_path):
    canary = tmp_path / "CANARY"
    with pytest.raises(sympy.SympifyError):
        Named("p", f"__import__('os').system('touch {canary}')")
    with pytest.raises(sympy.SympifyError):
        Named("p", sympy.Integer(1), f"__import__('os').system('touch {canary}')")
    assert not canary.exists()


def test_no_note_module_gives_a_step_side_as_text_outside_the_formula_kind():
    for x in load_notes():
        for step in x.note.steps():
            if step.resolved_kind != "formula":
                assert not any(isinstance(side, str) for side in step.sides()), step


def test_the_notes_package_never_sympifies():
    # Text must never reach SymPy's parser: engine/notes uses only the strict form.
    for path in Path(engine.notes.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("sympify", "S", "parse_expr"):
                pytest.fail(f"{path.name}:{node.lineno} uses sympy.{node.attr}")
