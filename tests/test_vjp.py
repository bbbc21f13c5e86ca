"""Every VJP rule of the registry, checked by the verifier against grad(sum(G * f(...)), x)."""

from __future__ import annotations

import pytest

from engine.expr import Call, Var, call
from engine.functions import REGISTRY
from engine.parser import build_environment, parse_formula
from engine.verify import verify_sides

VARS = {
    "x": "real[n]",
    "y": "real[n]",
    "s": "real",
    "t": "positive",
    "a": "positive[n]",
    "b": "positive[n]",
    "p": "simplex[n]",
    "q": "simplex[n]",
    "M": "real[n, m]",
    "N": "real[n, m]",
    "S": "real[n, n]",
    "A": "real[m, n]",
    "c": "real[n, 1]",
    "r": "real[m]",
    "K": "spd[n, n]",  # linear algebra (matrices.py)
    # selection and masks (issue 8)
    "Mk": "mask[n, m]",
    "lo": "real",
    "hi": "real",
    # tensors of any rank (issue 8)
    "T": "real[k, n, m]",
    "U": "real[k, m, n]",
    "F": "real[k, 1, n, m]",
    "B": "real[1, m, 2]",  # a literal 2: the complex-step gradient of a broadcast weight is
    "D": "real[m, 2]",  # taken coordinate by coordinate, and m x n of them take 25 s
    "E": "real[2, m]",
    # integer labels (issue 8): positions along M's last axis, its first, and along x
    "lab": "index[n, m]",
    "lab0": "index[m, n]",
    "cl": "index[n]",
    "labT": "index[k, m, n]",
}

# One or more applications of each function; the VJP of the root call is checked for every
# argument that is a variable.
CASES: dict[str, list[str]] = {
    "add": ["x + y", "M + r", "M + c", "s + x"],
    "sub": ["x - y", "M - r", "c - M", "x - s"],
    "mul": ["x * y", "M * r", "c * M", "s * x"],
    "div": ["x / a", "M / c", "s / t", "a / b"],
    "pow": ["x ** 3", "a ** b", "t ** s"],
    "neg": ["-x"],
    "matmul": ["M @ r", "x @ M", "x @ y", "A @ M", "S @ S"],
    "transpose": ["M.T", "x.T"],
    "exp": ["exp(x)"],
    "log": ["log(a)"],
    "sqrt": ["sqrt(a)"],
    "abs": ["abs(x)"],
    "tanh": ["tanh(x)"],
    "sigmoid": ["sigmoid(x)"],
    "sin": ["sin(x)"],
    "cos": ["cos(x)"],
    "relu": ["relu(x)"],
    "softplus": ["softplus(x)"],
    "silu": ["silu(x)"],
    "erf": ["erf(x)"],
    "gelu": ["gelu(x)"],
    "gelu_tanh": ["gelu_tanh(x)"],
    "sign": ["sign(x)"],
    "step": ["step(x)"],
    "sum": ["sum(x)", "sum(M)", "sum(M, axis=0)", "sum(M, axis=-1, keepdims=True)"],
    "mean": ["mean(x)", "mean(M, axis=1)", "mean(M, axis=0, keepdims=True)"],
    "var": ["var(x)", "var(M, axis=1)", "var(M, axis=0, keepdims=True)", "var(M)"],
    "logsumexp": ["logsumexp(x)", "logsumexp(M)", "logsumexp(M, axis=0)"],
    "softmax": ["softmax(x)", "softmax(M)", "softmax(M, axis=0)"],
    "log_softmax": ["log_softmax(x)", "log_softmax(M, axis=0)"],
    "cross_entropy": ["cross_entropy(a, y)", "cross_entropy(p, q)"],
    "entropy": ["entropy(a)"],
    "kl": ["kl(a, b)", "kl(p, q)"],
    "diag": ["diag(x)", "diag(S)"],
    "outer": ["outer(x, r)"],
    "trace": ["trace(S)"],
    "expand_dims": ["expand_dims(x, axis=0)", "expand_dims(x, axis=-1)", "expand_dims(M, axis=1)"],
    # structure (engine/functions/structure.py): slice -> zero-padded, concat -> slices
    "getitem": ["x[0]", "x[-1]", "x[1:]", "M[:, 0]", "M[-1]", "M[1:, :-1]", "S[-2:, 1]"],
    "concat": ["concat([x, y])", "concat([M, N], axis=1)", "concat([M, A.T, c], axis=-1)"],
    "stack": ["stack([x, y])", "stack([x, y], axis=1)", "stack([M, N], axis=-1)"],
    "reshape": ["reshape(M, (m, n))", "reshape(x, (n, 1))", "reshape(M, (n * m,))"],
    "pad": ["pad(x, (1, 2))", "pad(M, (0, n), axis=0)", "pad(M, (2, 1), axis=-1)"],
    # linear algebra of the Matrix Cookbook (matrices.py)
    "det": ["det(S)", "det(K)"],
    "logdet": ["logdet(K)"],
    "inv": ["inv(K)"],  # inv(S) of a real S is right too, but ill-conditioned draws cost 90 s
    "solve": ["solve(S, x)", "solve(K, M)"],
    "norm": ["norm(x)", "norm(M)", "norm(M, axis=1)", "norm(M, axis=0, keepdims=True)"],
    # selection, masks and stable elementwise functions (issue 8)
    "log1p": ["log1p(a)"],
    "expm1": ["expm1(x)"],
    "logsigmoid": ["logsigmoid(x)"],
    "maximum": ["maximum(x, y)", "maximum(M, r)", "maximum(x, s)"],
    "minimum": ["minimum(x, y)", "minimum(M, c)", "minimum(s, x)"],
    "clip": ["clip(x, lo, hi)", "clip(M, lo, hi)", "clip(x, y, s)", "clip(M, -1, 1)"],
    "where": ["where(Mk, M, N)", "where(Mk, M, s)"],
    "max": ["max(x)", "max(M, axis=0)", "max(M, axis=-1, keepdims=True)", "max(M)"],
    "min": ["min(x)", "min(M, axis=1)"],
    "cumsum": ["cumsum(x)", "cumsum(M, axis=0)", "cumsum(M, axis=1)"],
    "sort": ["sort(x)", "sort(M, axis=0)", "sort(M, descending=True)"],
}
# tensors of any rank (issue 8): batched @ with broadcast batch axes, axes, tuple axes, einsum
CASES["matmul"] += ["T @ U", "T @ D", "E @ U", "T @ B", "F @ U", "T @ r", "x @ T"]
CASES["transpose"] += ["transpose(T, (2, 0, 1))", "transpose(M, (1, 0))"]
CASES["sum"] += ["sum(T, axis=(0, 2))", "sum(F, axis=(1, -1), keepdims=True)"]
CASES["mean"] += ["mean(T, axis=(0, 1))"]
CASES["var"] += ["var(T, axis=(0, 2), keepdims=True)"]
CASES["logsumexp"] += ["logsumexp(T, axis=(1, 2))"]
CASES["softmax"] += ["softmax(T, axis=(0, 2))", "softmax(T)"]
CASES["log_softmax"] += ["log_softmax(T, axis=(1, 2))"]
CASES["expand_dims"] += ["expand_dims(M, axis=(0, 3))"]
CASES["swapaxes"] = ["swapaxes(T, 0, 2)", "swapaxes(T, -1, -2)"]
CASES["squeeze"] = ["squeeze(F, 1)", "squeeze(F)", "squeeze(B, axis=(0,))"]
# integer labels (issue 8): the cotangent scattered to the gathered positions
CASES["take_along_axis"] = [
    "take_along_axis(M, lab)",
    "take_along_axis(M, lab0, axis=0)",
    "take_along_axis(x, cl)",
    "take_along_axis(T, labT, axis=1)",
]
CASES["einsum"] = [
    'einsum("kij,kjl->kil", T, U)',
    'einsum("ij,ij->i", M, N)',
    'einsum("ii->", S)',
    'einsum("ii->i", S)',
    'einsum("kij->", T)',
    'einsum("kij,j->ki", T, r)',
    'einsum("ij,jl,lk->ik", M, A, S)',
]

# Functions without a VJP, and why none is needed.
NO_VJP = {
    "eye": "no arguments",
    "ones": "no arguments",
    "grad": "nested derivatives are evaluated by the backends, not differentiated",
    "jacobian": "nested derivatives are evaluated by the backends, not differentiated",
    "hessian": "nested derivatives are evaluated by the backends, not differentiated",
    # selection and masks (issue 8)
    "tril": "no arguments",
    "triu": "no arguments",
    "argmax": "an index: not differentiable (grad/jacobian through it is refused)",
    "argmin": "an index: not differentiable (grad/jacobian through it is refused)",
    "unsort": "sort's VJP (a permutation of g); not differentiated again",
    # integer labels (issue 8)
    "one_hot": "its only argument is the labels, an index variable: not differentiable",
}


def _instances():
    for fn, formulas in CASES.items():
        for text in formulas:
            yield pytest.param(fn, text, id=f"{fn}:{text}")


def test_every_function_is_covered():
    assert set(CASES) | set(NO_VJP) == set(REGISTRY)
    for name in NO_VJP:
        assert REGISTRY[name].vjp is None
    for name in CASES:
        assert REGISTRY[name].vjp is not None, name


@pytest.mark.parametrize("fn,text", list(_instances()))
def test_vjp_rule(fn: str, text: str):
    vars_ = dict(VARS)
    env0 = build_environment(vars_)
    node = parse_formula(text, env0)
    assert isinstance(node, Call) and node.fn == fn
    # an axis whose length is an expression (n - 1, 2*n) gets a size relation (engine.sizes)
    rels = {f"g{i}": str(d) for i, d in enumerate(node.shape) if not (d.is_Symbol or d.is_Integer)}
    dims = [f"g{i}" if f"g{i}" in rels else str(d) for i, d in enumerate(node.shape)]
    vars_["G"] = f"real[{', '.join(dims)}]" if node.shape else "real"
    env = build_environment(vars_, sizes=rels)
    node = parse_formula(text, env)
    g = env.vars["G"]
    checked = 0
    for i, arg in enumerate(node.args):
        if not isinstance(arg, Var) or any(arg is a for a in node.args[:i]):
            continue
        if arg.vtype == "index":  # integer labels: no derivative (grad refuses them)
            continue
        lhs = call("grad", call("sum", g * node), arg)
        rhs = node.spec.vjp(node, g, i)
        if node.args.count(arg) > 1:  # x @ x style: the rules for every position add up
            rhs = sum((node.spec.vjp(node, g, j) for j in range(1, len(node.args))), rhs)
        result = verify_sides(lhs, rhs, env, name=f"vjp {text} d/d{arg.name}")
        assert result.passed, result.report()
        checked += 1
    assert checked >= 1
