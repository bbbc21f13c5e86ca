"""derive --order 2: Hessians in textbook form, verified exactly and against finite differences
of the derived gradient, exported and checked against torch.func.hessian."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from engine.backends import numpy_backend
from engine.backends.common import concrete_shape
from engine.cli import cli
from engine.derive import derive
from engine.derive.core import DeriveError, _inline_all
from engine.expr import EngineError, free_vars
from engine.parser import parse_formula
from engine.types import TYPES
from engine.verify import verify_sides

VARS = {
    "z": "real[n]",
    "s": "simplex[n]",
    "X": "real[m, n]",
    "w": "real[n]",
    "r": "real[m]",
    "y": "unit[m]",
    "x": "real",
    "M": "real[n, n]",
}

# (expression, variable, definitions) -> the program derive prints for its Hessian
TEXTBOOK = [
    ("cross_entropy(softmax(z), s)", "z", {}, "p = softmax(z)\nH = diag(p) - outer(p, p)"),
    ("-sum(s * log_softmax(z))", "z", {}, "p = softmax(z)\nH = diag(p) - outer(p, p)"),
    ("cross_entropy(p, s)", "z", {"p": "softmax(z)"}, "H = diag(p) - outer(p, p)"),
    ("logsumexp(z)", "z", {}, "p = softmax(z)\nH = diag(p) - outer(p, p)"),
    ("sum((X @ w - r)**2)", "w", {}, "H = 2 * (X.T @ X)"),
    ("sum(z**4)", "z", {}, "H = 12 * diag(z ** 2)"),
    ("0.5 * (w @ M @ w)", "w", {}, "H = 0.5 * (M + M.T)"),
    (
        "sum(softplus(X @ w) - y * (X @ w))",
        "w",
        {},
        "H = X.T @ diag(sigmoid(X @ w) * (1 - sigmoid(X @ w))) @ X",
    ),
    ("sum(tanh(z))", "z", {}, "H = -2 * diag(tanh(z) * (1 - tanh(z) ** 2))"),
]


@functools.cache
def hessian_program(expr: str, wrt: str, defs: tuple = ()):
    return derive(expr, wrt, VARS, dict(defs), order=2)


def _program(expr, wrt, defs):
    return hessian_program(expr, wrt, tuple(sorted(defs.items())))


@pytest.mark.parametrize("expr,wrt,defs,text", TEXTBOOK, ids=[t[0] for t in TEXTBOOK])
def test_hessian_in_textbook_form(expr, wrt, defs, text):
    program = _program(expr, wrt, defs)
    assert program.kind == "hessian"
    assert program.to_text() == text
    assert program.verified
    routes = {c.method for _, r in program.results for c in r.checks}
    assert routes == {"exact", "numeric"}


def test_hessian_of_logsumexp_is_the_softmax_jacobian():
    """The Hessian of logsumexp, written out, is the program derive gives for softmax's Jacobian."""
    h = derive("logsumexp(z)", "z", VARS, order=2)
    j = derive("softmax(z)", "z", VARS)
    steps = {a.name for a in h.steps}
    assert _inline_all(dict(h.gradients)["z"], steps) == dict(j.gradients)["z"]
    result = verify_sides(
        parse_formula("hessian(logsumexp(z), z)", h.env),
        parse_formula("jacobian(softmax(z), z)", h.env),
        h.env,
    )
    assert result.passed, result.report()


def test_hessian_entry_points_agree():
    """--order 2, hessian(f, x) as the expression, and the CLI's --hessian give one program."""
    a = derive("logsumexp(z)", "z", VARS, order=2)
    b = derive("hessian(logsumexp(z), z)", None, VARS)
    assert a.to_text() == b.to_text()
    assert b.kind == "hessian"


def _point(program, seed: int, sizes: dict[str, int]):
    rng = np.random.default_rng(seed)
    used = free_vars(program.output)
    return {
        k: np.asarray(TYPES[v.vtype].numeric(rng, concrete_shape(v.shape, sizes), "unit"), float)
        for k, v in used.items()
    }


@pytest.mark.parametrize("expr,wrt,defs,text", TEXTBOOK, ids=[t[0] for t in TEXTBOOK])
def test_hessian_matches_finite_differences_of_the_gradient(expr, wrt, defs, text):
    """H[:, j] = (g(x + h e_j) - g(x - h e_j)) / 2h for the derived gradient g, at n = 6 > 3."""
    sizes = {"n": 6, "m": 5}
    program = _program(expr, wrt, defs)
    gradient = derive(expr, wrt, VARS, defs)
    g = dict(gradient.gradients)[wrt]
    H = np.real(
        numpy_backend.evaluate(dict(program.gradients)[wrt], _point(program, 3, sizes), sizes)
    )
    values = _point(program, 3, sizes)
    x0 = values[wrt]
    h = 1e-5
    columns = []
    for j in range(x0.size):
        e = np.zeros_like(x0)
        e[j] = h
        plus = numpy_backend.evaluate(g, {**values, wrt: x0 + e}, sizes)
        minus = numpy_backend.evaluate(g, {**values, wrt: x0 - e}, sizes)
        columns.append((np.real(plus) - np.real(minus)) / (2 * h))
    fd = np.stack(columns, axis=-1)
    assert H.shape == fd.shape == (x0.size, x0.size)
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-8 * max(1.0, np.abs(fd).max()))


def test_hessian_is_checked_exactly():
    program = _program("cross_entropy(softmax(z), s)", "z", {})
    lhs, rhs = program.claim_sides("z")
    result = verify_sides(lhs, rhs, program.env, numeric=False)
    assert result.passed, result.report()
    assert "n=4" in result.summary()  # the exact route's large assignment


@pytest.mark.parametrize(
    "wrong",
    [
        "diag(p) - outer(p, p) + (n - 2) * (n - 3) * 1e-6 * eye(n)",  # zero for n <= 3
        "outer(p, p) - diag(p)",
        "diag(p)",
        "diag(p) - outer(p, p) + 1e-6 * trace(outer(p, p) - diag(p) * (n - 3)) * eye(n)",
    ],
)
def test_a_wrong_hessian_fails(wrong):
    program = _program("cross_entropy(p, s)", "z", {"p": "softmax(z)"})
    lhs, _ = program.claim_sides("z")
    result = verify_sides(lhs, parse_formula(wrong, program.env), program.env)
    assert result.verdict == "fail", result.report()


def test_the_cli_prints_a_verified_hessian():
    args = ["derive", "sum((X @ w - r)**2)", "--wrt", "w"]
    args += ["--var", "X=real[m, n]", "--var", "w=real[n]", "--var", "r=real[m]"]
    for flag in (["--order", "2"], ["--hessian"]):
        done = CliRunner().invoke(cli, args + flag)
        assert done.exit_code == 0, done.output
        lines = done.output.strip().splitlines()
        assert lines[0] == "H = 2 * (X.T @ X)"
        assert lines[-1].startswith("# verified: exact at")


@pytest.mark.parametrize(
    "expr,wrt,message",
    [
        ("softmax(z)", "z", "a Hessian (--order 2) needs a scalar expression"),
        ("sum(M * M)", "M", "--order 2 derives Hessians with respect to a vector or scalar"),
        ("sum(z) + sum(w)", "z,w", "a Hessian (--order 2) is taken with respect to one variable"),
        ("sum(X @ w)", "w", "the Hessian is zero"),
    ],
)
def test_bad_hessian_requests_are_one_line_errors(expr, wrt, message):
    with pytest.raises(DeriveError) as info:
        derive(expr, wrt, VARS, order=2)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_order_is_one_or_two():
    with pytest.raises(EngineError, match="order 1 or 2"):
        derive("sum(z)", "z", VARS, order=3)


# ---------------------------------------------------------------- exports against torch.func


TORCH = {
    "cross_entropy(softmax(z), s)": lambda z, s: -(s * torch.log_softmax(z, -1)).sum(),
    "logsumexp(z)": lambda z: torch.logsumexp(z, -1),
    "sum((X @ w - r)**2)": lambda X, w, r: ((X @ w - r) ** 2).sum(),
    "sum(z**4)": lambda z: (z**4).sum(),
    "sum(softplus(X @ w) - y * (X @ w))": lambda X, w, y: (
        torch.nn.functional.softplus(X @ w) - y * (X @ w)
    ).sum(),
}


@pytest.mark.parametrize("expr", sorted(TORCH))
def test_exported_hessian_matches_torch_func_hessian(expr, tmp_path):
    from test_export_programs import load_module, sample_inputs

    from engine.export import to_module

    wrt = next(w for e, w, d, _ in TEXTBOOK if e == expr and not d)
    program = _program(expr, wrt, {})
    module = load_module(to_module(program, "torch"), tmp_path, f"hess_{wrt}_{len(expr)}")
    values = sample_inputs(program, seed=11)
    value, grads = module.value_and_grad(*values.values())
    fn = TORCH[expr]
    names = list(fn.__code__.co_varnames[: fn.__code__.co_argcount])
    args = [torch.tensor(values[k], dtype=torch.float64) for k in names]
    ref = torch.func.hessian(fn, argnums=names.index(wrt))(*args)
    assert ref.shape == (values[wrt].size, values[wrt].size)
    np.testing.assert_allclose(np.asarray(grads[wrt]), ref.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(value), fn(*args).numpy(), rtol=1e-12)


# ---------------------------------------------------------------- the corpus's small-n blind spot


def _from_n4_claims():
    from pathlib import Path

    from engine.claims import load_claims

    path = Path(__file__).parent / "corpus" / "hessian.toml"
    return [c for c in load_claims(path) if c.name.endswith("-from-n4")]


@pytest.mark.parametrize("claim", _from_n4_claims(), ids=lambda c: c.name)
def test_planted_bugs_from_n4_vanish_below_four_and_fail(claim):
    """Each "-from-n4" bug is invisible at n = 2 and 3 (both sides agree to rounding there) and
    shows at n = 5: a verifier that never looked at n >= 4 would pass it. It must FAIL."""
    from engine.parser import build_environment, parse_equation

    env = build_environment(claim.vars, claim.defs)
    lhs, rhs = parse_equation(claim.equation, env)
    program_like = type("P", (), {"output": lhs + 0 * rhs})  # the variables of both sides

    def gap(n: int) -> float:
        sizes = {"n": n, "m": n + 1, "k": n + 2}
        values = _point(program_like, n, sizes)
        left = np.real(numpy_backend.evaluate(lhs, values, sizes))
        right = np.real(numpy_backend.evaluate(rhs, values, sizes))
        return float(np.max(np.abs(left - right)) / max(1.0, np.max(np.abs(left))))

    assert gap(2) < 1e-8 and gap(3) < 1e-8
    assert gap(5) > 1e-7
    assert claim.expect == "fail"
    assert claim.check(seed=0).verdict == "fail"


def test_derivative_claims_are_checked_numerically_at_size_four_or_more():
    """Given sizes below 4 (say --size n=3) are raised to 4 for a claim with a derivative node,
    so the numeric route alone still sees a term that needs four coordinates."""
    from engine.verify.sampling import LARGE_EXACT_FROM, numeric_size_assignment

    assert numeric_size_assignment(["n"], {"n": 3}, derivative=True) == {"n": LARGE_EXACT_FROM}
    assert numeric_size_assignment(["n"], {"n": 3}) == {"n": 3}  # plain claims keep their size
    assert numeric_size_assignment(["n"], {"n": 7}, derivative=True) == {"n": 7}
    program = _program("cross_entropy(softmax(z), s)", "z", {})
    lhs, _ = program.claim_sides("z")
    wrong = parse_formula(
        "diag(softmax(z)) - outer(softmax(z), softmax(z)) + 1e-3 * (n - 2) * (n - 3) * eye(n)",
        program.env,
    )
    result = verify_sides(lhs, wrong, program.env, numeric_sizes={"n": 3}, exact=False)
    assert result.verdict == "fail", result.report()
    assert "n=4" in result.report()


RANK3_ENV = {
    "A": "real[n, k]",
    "w": "real[k]",
    "M": "real[n, n]",
    "C": "real[2, n]",
    "z": "real[n]",
}


@pytest.mark.parametrize("route", ["exact", "numeric"])
@pytest.mark.parametrize(
    "equation",
    [
        "jacobian(tanh(A) @ w, A) == jacobian(tanh(A) @ w, A) * (1 + 1e-6)",
        "jacobian(M @ z, M) == jacobian(M @ z, M) + 1e-6",
        "hessian(sum(C ** 3), C) == hessian(sum(C ** 3), C) * (1 + 1e-6)",
    ],
)
def test_each_route_alone_catches_a_planted_error_in_a_high_rank_derivative(equation, route):
    """A 1e-6 error in a Jacobian of rank 3 or a Hessian of rank 4 FAILs on either route alone
    (the numeric route checks such Jacobians at the nested sizes, 9, 8, ..., so the difference is
    confirmed at high precision rather than left undecided)."""
    from engine.parser import build_environment, parse_equation

    env = build_environment(RANK3_ENV)
    lhs, rhs = parse_equation(equation, env)
    result = verify_sides(lhs, rhs, env, exact=route == "exact", numeric=route == "numeric")
    assert result.verdict == "fail", result.report()
    good = verify_sides(lhs, lhs, env, exact=route == "exact", numeric=route == "numeric")
    assert good.passed, good.report()
