"""Speed of exported code against handwritten NumPy and the libraries' own autodiff, side by side.

    python benchmarks/export_bench.py                   # prints the table and updates RESULTS.md
    python benchmarks/export_bench.py --no-write --cases attention --dtypes float32

Cases (issue 9): cross-entropy (n = 50,000 and [B, V] = [32, 50,000]), the attention backward
(n = 512, d = 64, and batched multi-head: B = 4, h = 8, n = 512, dh = 64), LayerNorm
(512 x 1024) and the GELU MLP (256, 1024 -> 4096 -> 1024), each in float32 and float64: the
exported NumPy module against handwritten NumPy (target 1.2x), the
exported torch module against torch.autograd of a forward written with torch.nn.functional
(target 1.1x), and jax.jit of the exported JAX module against jax.jit(jax.value_and_grad)
(target 1.1x). Every pair is checked to agree before it is timed. The two sides run interleaved
(alternating which goes first); the ratio is the median of the per-sample ratios. BLAS and torch
run single-threaded so the 2 shared cores do not add noise.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy.special import erf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.derive import derive  # noqa: E402
from engine.derive.program import Program  # noqa: E402
from engine.export import load  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
START, END = "<!-- export_bench:start -->", "<!-- export_bench:end -->"


# ---------------------------------------------------------------- the cases

# Derived and verified by `engine.derive`, as `llm-math derive --format python` would export
# them, loaded with `engine.export.load`.

SIZES = {
    "ce": {"n": 50_000},
    "ce_batch": {"B": 32, "V": 50_000},
    "attention": {"n": 512, "d": 64},
    "attention_heads": {"B": 4, "h": 8, "n": 512, "dh": 64},
    "layernorm": {"n": 512, "d": 1024},
    "mlp": {"b": 256, "d": 1024, "h": 4096},
}


def programs() -> dict[str, Program]:
    return {
        "ce": derive(
            "cross_entropy(p, y)",
            wrt=["z"],
            vars={"z": "real[n]", "y": "simplex[n]"},
            defs={"p": "softmax(z)"},
        ),
        "ce_batch": derive(
            "cross_entropy(softmax(Z, axis=-1), Y)",
            wrt=["Z"],
            vars={"Z": "real[B, V]", "Y": "simplex[B, V]"},
        ),
        "attention": derive(
            "sum(O * (P @ V))",
            wrt=["Q", "K", "V"],
            vars={"Q": "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"},
            defs={"P": "softmax(Q @ K.T / sqrt(d))"},
        ),
        "attention_heads": derive(
            "sum(O * (P @ V))",
            wrt=["Q", "K", "V"],
            vars={v: "real[B, h, n, dh]" for v in ("Q", "K", "V", "O")},
            defs={"P": "softmax(Q @ swapaxes(K, -1, -2) / sqrt(dh))"},
        ),
        "layernorm": derive(
            "sum(O * (xhat * g + b))",
            wrt=["X", "g", "b"],
            vars={
                "X": "real[n, d]",
                "g": "real[d]",
                "b": "real[d]",
                "O": "real[n, d]",
                "eps": "positive",
            },
            defs={
                "sigma": "sqrt(var(X, axis=-1, keepdims=True) + eps)",
                "xhat": "(X - mean(X, axis=-1, keepdims=True)) / sigma",
            },
        ),
        "mlp": derive(
            "sum(O * (gelu(X @ W1) @ W2))",
            wrt=["X", "W1", "W2"],
            vars={"X": "real[b, d]", "W1": "real[d, h]", "W2": "real[h, d]", "O": "real[b, d]"},
        ),
    }


def inputs(case: str, dtype, rng) -> list[np.ndarray]:
    s = SIZES[case]
    if case == "ce":
        y = np.exp(rng.standard_normal(s["n"]))
        return [rng.standard_normal(s["n"]) * 3, y / y.sum()]
    if case == "ce_batch":
        y = np.exp(rng.standard_normal((s["B"], s["V"])))
        return [rng.standard_normal((s["B"], s["V"])) * 3, y / y.sum(axis=1, keepdims=True)]
    if case == "attention":
        return [rng.standard_normal((s["n"], s["d"])) for _ in range(4)]
    if case == "attention_heads":
        return [rng.standard_normal(tuple(s.values())) for _ in range(4)]
    if case == "layernorm":
        n, d = s["n"], s["d"]
        return [
            rng.standard_normal((n, d)),
            1 + 0.1 * rng.standard_normal(d),
            0.1 * rng.standard_normal(d),
            rng.standard_normal((n, d)),
            1e-5,
        ]
    b, d, h = s["b"], s["d"], s["h"]
    return [
        rng.standard_normal((b, d)),
        rng.standard_normal((d, h)) / np.sqrt(d),
        rng.standard_normal((h, d)) / np.sqrt(h),
        rng.standard_normal((b, d)),
    ]


WRT = {
    "ce": 1,
    "ce_batch": 1,
    "attention": 3,
    "attention_heads": 3,
    "layernorm": 3,
    "mlp": 3,
}  # the first k args

# ---------------------------------------------------------------- handwritten NumPy


def hand_ce(z, y):
    shifted = z - np.max(z)
    e = np.exp(shifted)
    s = np.sum(e)
    return np.log(s) - y @ shifted, (e / s - y,)  # uses sum(y) = 1


def hand_ce_batch(Z, Y):
    shifted = Z - np.max(Z, axis=1, keepdims=True)
    e = np.exp(shifted)
    s = np.sum(e, axis=1, keepdims=True)
    return np.sum(np.log(s)) - np.vdot(Y, shifted), (e / s - Y,)


def hand_attention(Q, K, V, dO):
    scale = 1.0 / math.sqrt(Q.shape[1])
    S = (Q @ K.T) * scale
    P = np.exp(S - np.max(S, axis=1, keepdims=True))
    P /= np.sum(P, axis=1, keepdims=True)
    value = np.vdot(dO, P @ V)
    dV = P.T @ dO
    dP = dO @ V.T
    dS = P * (dP - np.sum(P * dP, axis=1, keepdims=True))
    return value, ((dS @ K) * scale, (dS.T @ Q) * scale, dV)


def hand_attention_heads(Q, K, V, dO):
    scale = 1.0 / math.sqrt(Q.shape[-1])
    S = (Q @ K.swapaxes(-1, -2)) * scale
    P = np.exp(S - np.max(S, axis=-1, keepdims=True))
    P /= np.sum(P, axis=-1, keepdims=True)
    value = np.vdot(dO, P @ V)
    dV = P.swapaxes(-1, -2) @ dO
    dP = dO @ V.swapaxes(-1, -2)
    dS = P * (dP - np.sum(P * dP, axis=-1, keepdims=True))
    return value, ((dS @ K) * scale, (dS.swapaxes(-1, -2) @ Q) * scale, dV)


def hand_layernorm(X, g, b, dO, eps):
    mu = X.mean(axis=1, keepdims=True)
    xc = X - mu
    rstd = 1.0 / np.sqrt((xc * xc).mean(axis=1, keepdims=True) + eps)
    xhat = xc * rstd
    value = np.vdot(dO, xhat * g + b)
    dxhat = dO * g
    dX = rstd * (
        dxhat
        - dxhat.mean(axis=1, keepdims=True)
        - xhat * (dxhat * xhat).mean(axis=1, keepdims=True)
    )
    return value, (dX, np.sum(dO * xhat, axis=0), np.sum(dO, axis=0))


def hand_mlp(X, W1, W2, dO):
    U = X @ W1
    cdf = 0.5 * (1.0 + erf(U / math.sqrt(2)))
    H = U * cdf
    value = np.vdot(dO, H @ W2)
    dH = dO @ W2.T
    dU = dH * (cdf + U * np.exp(-0.5 * U * U) / math.sqrt(2 * math.pi))
    return value, (dU @ W1.T, X.T @ dU, H.T @ dO)


HAND = {
    "ce": hand_ce,
    "ce_batch": hand_ce_batch,
    "attention": hand_attention,
    "attention_heads": hand_attention_heads,
    "layernorm": hand_layernorm,
    "mlp": hand_mlp,
}

# ---------------------------------------------------------------- the libraries' own forwards


def torch_loss(case: str):
    import torch
    import torch.nn.functional as F

    def loss(*a):
        if case == "ce":
            return -torch.sum(a[1] * torch.log_softmax(a[0], dim=-1))
        if case == "ce_batch":
            return -torch.sum(a[1] * torch.log_softmax(a[0], dim=-1))
        if case == "attention":
            Q, K, V, dO = a
            P = torch.softmax(Q @ K.T / math.sqrt(Q.shape[1]), dim=-1)
            return torch.sum(dO * (P @ V))
        if case == "attention_heads":
            Q, K, V, dO = a
            P = torch.softmax(Q @ K.transpose(-1, -2) / math.sqrt(Q.shape[-1]), dim=-1)
            return torch.sum(dO * (P @ V))
        if case == "layernorm":
            X, g, b, dO, eps = a
            return torch.sum(dO * F.layer_norm(X, (X.shape[1],), g, b, eps))
        X, W1, W2, dO = a
        return torch.sum(dO * (F.gelu(X @ W1) @ W2))

    return loss


def jax_loss(case: str):
    import jax
    import jax.numpy as jnp

    def loss(*a):
        if case in ("ce", "ce_batch"):
            return -jnp.sum(a[1] * jax.nn.log_softmax(a[0], axis=-1))
        if case == "attention":
            Q, K, V, dO = a
            P = jax.nn.softmax(Q @ K.T / jnp.sqrt(Q.shape[1]), axis=-1)
            return jnp.sum(dO * (P @ V))
        if case == "attention_heads":
            Q, K, V, dO = a
            P = jax.nn.softmax(Q @ jnp.swapaxes(K, -1, -2) / jnp.sqrt(Q.shape[-1]), axis=-1)
            return jnp.sum(dO * (P @ V))
        if case == "layernorm":
            X, g, b, dO, eps = a
            mu = jnp.mean(X, axis=-1, keepdims=True)
            xhat = (X - mu) * jax.lax.rsqrt(jnp.var(X, axis=-1, keepdims=True) + eps)
            return jnp.sum(dO * (xhat * g + b))
        X, W1, W2, dO = a
        return jnp.sum(dO * (jax.nn.gelu(X @ W1, approximate=False) @ W2))

    return loss


# ---------------------------------------------------------------- timing


def interleaved(a, b, args, samples: int, calls: int) -> tuple[float, float, float]:
    """Median seconds per call of a and of b, and the median of the per-sample ratios a / b."""
    for _ in range(2):  # warm-up
        a(*args)
        b(*args)
    ta, tb, ratios = [], [], []
    for k in range(samples):
        pair = []
        for f in (a, b) if k % 2 == 0 else (b, a):
            t0 = time.perf_counter()
            for _ in range(calls):
                f(*args)
            pair.append((f, (time.perf_counter() - t0) / calls))
        sa = next(t for f, t in pair if f is a)
        sb = next(t for f, t in pair if f is b)
        ta.append(sa)
        tb.append(sb)
        ratios.append(sa / sb)
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)


Row = tuple[str, str, int, float, float, float]  # case, target, samples, a, b, median ratio

TOL = {"float32": 2e-3, "float64": 1e-8}  # agreement checked before timing, relative to max


def _agree(got, want, dtype: str, what: str) -> None:
    got = [np.asarray(g, dtype=np.float64) for g in got]
    want = [np.asarray(w, dtype=np.float64) for w in want]
    for g, w in zip(got, want, strict=True):
        scale = max(1.0, float(np.max(np.abs(w))))
        assert np.allclose(g, w, rtol=0, atol=TOL[dtype] * scale), what


def _calls(case: str) -> int:
    # CE at n = 50,000 takes ~0.1 ms: single calls, many pairs, so a load spike hits one pair
    calls = {"ce": 1, "ce_batch": 1, "attention": 3, "attention_heads": 1, "layernorm": 2}
    return calls.get(case, 1)


def run(samples: int, libraries: bool, cases: list[str], dtypes: list[str]) -> list[Row]:
    made = programs()
    rows: list[Row] = []
    for case in cases:
        program = made[case]
        k = WRT[case]
        wrt = [v for v, _ in program.gradients]
        for dtype in dtypes:
            rng = np.random.default_rng(0)
            args = [
                x if isinstance(x, float) else x.astype(dtype) for x in inputs(case, dtype, rng)
            ]
            label = f"{case} {' x '.join(map(str, SIZES[case].values()))} {dtype}"
            exported = load(program, "numpy")

            def export_np(*a, f=exported, wrt=wrt):
                value, grads = f(*a)
                return value, tuple(grads[v] for v in wrt)

            ev, eg = export_np(*args)
            hv, hg = HAND[case](*args)
            _agree([ev, *eg], [hv, *hg], dtype, label)
            assert np.asarray(eg[0]).dtype == np.dtype(dtype), label
            n = samples * (40 if case == "ce" else 1)
            rows.append(
                _row(
                    f"{label}: NumPy export / handwritten NumPy",
                    "1.2",
                    export_np,
                    HAND[case],
                    args,
                    n,
                    _calls(case),
                )
            )
            if libraries:
                rows += library_rows(case, program, args, wrt, k, dtype, label, n)
    return rows


def _row(case: str, target: str, a, b, args, samples: int, calls: int) -> Row:
    return (case, target, samples, *interleaved(a, b, args, samples, calls))


TORCH_COMPILE = False  # --torch-compile: also torch.compile(export, fullgraph=True) rows


def library_rows(case, program, args, wrt, k, dtype, label, samples) -> list[Row]:
    """The torch export against torch.autograd, jax.jit(export) against jax.jit(value_and_grad)."""
    import jax
    import jax.numpy as jnp
    import torch

    torch.set_num_threads(1)
    rows: list[Row] = []
    t_args = [torch.tensor(a) if not isinstance(a, float) else a for a in args]
    exported = load(program, "torch")
    loss = torch_loss(case)

    def export_torch(*a):
        value, grads = exported(*a)
        return value, tuple(grads[v] for v in wrt)

    def autograd(*a):
        leaves = [x.detach().requires_grad_() for x in a[:k]]
        value = loss(*leaves, *a[k:])
        return value.detach(), torch.autograd.grad(value, leaves)

    ev, eg = export_torch(*t_args)
    rv, rg = autograd(*t_args)
    assert eg[0].dtype == t_args[0].dtype
    _agree([ev, *eg], [rv, *rg], dtype, label)
    rows.append(
        _row(
            f"{label}: torch export / torch.autograd",
            "1.1",
            export_torch,
            autograd,
            t_args,
            samples,
            _calls(case),
        )
    )

    if TORCH_COMPILE:
        compiled = torch.compile(exported, fullgraph=True)

        def export_compiled(*a):
            value, grads = compiled(*a)
            return value, tuple(grads[v] for v in wrt)

        cv, cg = export_compiled(*t_args)  # compiles (minutes on a busy machine)
        _agree([cv, *cg], [rv, *rg], dtype, label)
        rows.append(
            _row(
                f"{label}: torch.compile(torch export) / torch.autograd",
                "-",
                export_compiled,
                autograd,
                t_args,
                samples,
                _calls(case),
            )
        )

    with jax.enable_x64(dtype == "float64"):
        j_args = [jnp.asarray(a) if not isinstance(a, float) else a for a in args]
        exported = load(program, "jax")
        mine = jax.jit(lambda *a: exported(*a))
        theirs = jax.jit(jax.value_and_grad(jax_loss(case), argnums=tuple(range(k))))
        ev, eg = mine(*j_args)
        rv, rg = theirs(*j_args)
        assert eg[wrt[0]].dtype == j_args[0].dtype
        _agree([ev, *(eg[v] for v in wrt)], [rv, *rg], dtype, label)

        def block(f):
            return lambda *a: jax.block_until_ready(f(*a))

        rows.append(
            _row(
                f"{label}: jax.jit(export) / jax.jit(jax.value_and_grad)",
                "1.1",
                block(mine),
                block(theirs),
                j_args,
                samples,
                _calls(case),
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "## Code export speed (`benchmarks/export_bench.py`)",
        "",
        "Command: `python benchmarks/export_bench.py` (interleaved samples, alternating which "
        "side goes first; ratio = median of the per-sample ratios; BLAS and torch "
        f"single-threaded; NumPy {np.__version__}, Python {platform.python_version()}, "
        f"{platform.machine()}).",
        "Exported = the module of `engine.export.load` for the derived, verified program; the "
        "references are handwritten NumPy, `torch.autograd` of a forward written with "
        "`torch.nn.functional` (F.layer_norm, F.gelu, log_softmax), and "
        "`jax.jit(jax.value_and_grad)`. Both sides compute the value and every gradient and "
        "are checked to agree before timing; inputs and outputs are of the row's dtype.",
        f"Load average at the start (2 shared cores): {os.getloadavg()[0]:.1f}.",
        "",
        "| case | samples | exported | reference | ratio (median) | target |",
        "|---|---|---|---|---|---|",
    ]
    for case, target, samples, ta, tb, ratio in rows:
        if target == "-":
            verdict = "-"
        else:
            verdict = f"<= {target}x ({'met' if ratio <= float(target) else 'NOT met'})"
        lines.append(
            f"| {case} | {samples} | {ta * 1e3:.3f} ms | {tb * 1e3:.3f} ms | {ratio:.2f}x | "
            f"{verdict} |"
        )
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace this script's own section of RESULTS.md (between its markers), or append it."""
    block = f"{START}\n{text}\n{END}"
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if START in old and END in old:
        new = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda m: block, old, flags=re.S)
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument(
        "--cases", default=",".join(SIZES), help="comma-separated: " + ", ".join(SIZES)
    )
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument(
        "--torch-compile",
        action="store_true",
        help="add torch.compile(export) rows (informational; each compile takes minutes)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument(
        "--numpy-only", action="store_true", help="skip the torch and jax rows (informational)"
    )
    args = parser.parse_args()
    global TORCH_COMPILE
    TORCH_COMPILE = args.torch_compile
    rows = run(args.samples, not args.numpy_only, args.cases.split(","), args.dtypes.split(","))
    text = table(rows)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
