"""tensorgrad's side of benchmarks/tensorgrad_bench.py, run by the tensorgrad venv's python.

Never imported by the engine: benchmarks/tensorgrad_bench.py starts it as a subprocess
(`--tensorgrad-python`) and sends one JSON request per line on stdin; each answer is one JSON
line on stdout. Requests:

  {"op": "versions"}
  {"op": "symbolic", "case": "mha"|"block"}  build the loss, then loss.grad(w).full_simplify()
                                              for every w (tensorgrad's symbolic derivative, as in
                                              its README), timed
  {"op": "compile", "case": ...}              build the loss, then compile_to_callable(loss,
                                              *[loss.grad(w) for w in wrt]) (joint reverse-mode
                                              resolution and lowering to its program IR; the
                                              code is specialised to sizes only at a first call,
                                              which is not made), timed
  {"op": "check", "case": ..., "sizes": {...}, "inputs": {name: [axis names, nested list]}}
                                              the compiled program's value and gradients at
                                              concrete inputs, each gradient with its axis names

The two cases are tensorgrad's closest expressions of the engine's formulas (the differences
are listed in benchmarks/tensorgrad_bench.py's NOTES).
"""

from __future__ import annotations

import json
import sys
import time

import sympy
import tensorgrad
import tensorgrad.functions as F
import torch
from tensorgrad import Delta, Variable
from tensorgrad.compiler import compile_to_callable


def mha():
    """sum(G * (softmax(Q K^T / sqrt(dh) + M) V)), batched over B and heads h; M is the mask."""
    B, h, n, dh = sympy.symbols("B h n dh")
    Q = Variable("Q", B, h, n, dh)
    K = Variable("K", B, h, dh, key=n)  # the sequence edge of keys and values is named `key`
    V = Variable("V", B, h, dh, key=n)
    G = Variable("G", B, h, n, dh)
    M = Variable("M", n, key=n)  # causal mask as data: 0 on and below the diagonal, -inf above
    S = F.dot(Q, K, dim="dh") / F.sqrt(Delta(dh))  # Delta(dh) with no edges is the size dh
    P = F.softmax(S + M, dim="key")
    loss = F.sum(G * F.dot(P, V, dim="key"))
    return loss, [Q, K, V]


def _layer_norm(x, g, b, eps):
    """LayerNorm over the edge d from primitives (as tensorgrad's examples/mingpt.py writes it)."""
    c = x - F.mean(x, dim="d", keepdims=True)
    var = F.mean(c * c, dim="d", keepdims=True)
    return c / F.sqrt(var + eps) * g + b


def block():
    """Pre-LN transformer block: causal multi-head attention with W_Q, W_K, W_V, W_O, residuals,
    LayerNorm (gain and bias), exact-erf GELU MLP; loss sum(G * Y)."""
    n, d, h, dh, m = sympy.symbols("n d h dh m")
    X = Variable("X", n, d)
    Wq, Wk, Wv = (Variable(name, d, h, dh) for name in ("Wq", "Wk", "Wv"))  # heads are an edge
    Wo = Variable("Wo", h, dh, d)
    W1, W2 = Variable("W1", d, m), Variable("W2", m, d)
    g1, b1, g2, b2 = (Variable(name, d) for name in ("g1", "b1", "g2", "b2"))
    G = Variable("G", n, d)
    M = Variable("M", n, key=n)
    eps = Variable("eps")
    H1 = _layer_norm(X, g1, b1, eps)
    Q = H1 @ Wq
    K = (H1 @ Wk).rename(n="key")
    V = (H1 @ Wv).rename(n="key")
    P = F.softmax(F.dot(Q, K, dim="dh") / F.sqrt(Delta(dh)) + M, dim="key")
    X2 = X + F.dot(P, V, dim="key") @ Wo
    H2 = _layer_norm(X2, g2, b2, eps)
    Y = X2 + F.gelu(H2 @ W1, approximate="exact") @ W2
    loss = F.sum(G * Y)
    return loss, [X, Wq, Wk, Wv, Wo, W1, W2, g1, b1, g2, b2]


CASES = {"mha": mha, "block": block}


def symbolic(case: str) -> dict:
    t0 = time.perf_counter()
    loss, wrt = CASES[case]()
    grads = [loss.grad(w).full_simplify() for w in wrt]
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "outputs": len(grads)}


def _ops(program) -> int:
    from tensorgrad.compiler.ir import ConstNode, InputNode, toposort

    nodes = toposort([node for node, _ in program.outputs])
    return sum(not isinstance(node, (InputNode, ConstNode)) for node in nodes)


def compiled(case: str) -> dict:
    t0 = time.perf_counter()
    loss, wrt = CASES[case]()
    program = compile_to_callable(loss, *[loss.grad(w) for w in wrt])
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "ops": _ops(program)}


def _without_named_tensors() -> None:
    """torch >= 2.13 has no named tensors; tensorgrad's runtime only reads `.names` of its
    inputs, drops them with `.rename(None)` and attaches its own with `.refine_names`. Unnamed
    inputs in each variable's declared edge order are what it expects ("trust the caller's
    order"), so these three become no-ops (used by the check only, never by the timings)."""
    if hasattr(torch.Tensor, "names"):
        return
    torch.Tensor.names = property(lambda self: (None,) * self.dim())
    torch.Tensor.rename = lambda self, *a, **k: self
    torch.Tensor.refine_names = lambda self, *names: self


def check(case: str, sizes: dict, inputs: dict) -> dict:
    """Value and gradients of the compiled program at the given inputs (float64)."""
    _without_named_tensors()
    loss, wrt = CASES[case]()
    program = compile_to_callable(loss, *[loss.grad(w) for w in wrt])
    values = {}
    for var in program.vars:
        edges = list(var.edges)
        if var.name == "M":
            n = sizes["n"]
            values[var] = torch.triu(torch.full((n, n), float("-inf"), dtype=torch.float64), 1)
            continue
        names, data = inputs[var.name]
        ours = [("n" if e == "key" else e) for e in edges]
        t = torch.tensor(data, dtype=torch.float64)
        values[var] = t.permute([names.index(e) for e in ours]) if edges else t
    out = program(values, {s: sizes[str(s)] for s in program.symbols})
    grads = {}
    for w, g in zip(wrt, out[1:], strict=True):
        edges = [("n" if e == "key" else e) for e in w.edges]
        grads[w.name] = [edges, g.tolist()]
    return {"value": float(out[0]), "grads": grads}


def versions() -> dict:
    return {
        "tensorgrad": getattr(tensorgrad, "__version__", None) or _dist_version("tensorgrad"),
        "torch": torch.__version__,
        "sympy": sympy.__version__,
        "python": sys.version.split()[0],
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "versions":
                answer = versions()
            elif op == "symbolic":
                answer = symbolic(request["case"])
            elif op == "compile":
                answer = compiled(request["case"])
            elif op == "check":
                answer = check(request["case"], request["sizes"], request["inputs"])
            else:
                answer = {"error": f"unknown op {op!r}"}
        except Exception as e:  # reported to the benchmark, which prints it
            answer = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
