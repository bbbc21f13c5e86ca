"""Speed of exported NumPy gradient code against handwritten NumPy, measured side by side.

    python benchmarks/export_bench.py            # prints the table and updates RESULTS.md
    python benchmarks/export_bench.py --no-write --numpy-only

Cases: cross-entropy gradient at n = 50,000 against `softmax(z) - y`, and the attention
backward at n = 512, d = 64 against a handwritten backward. The two sides run interleaved
(alternating which goes first), each sample timing a few calls; the ratio is the median of the
per-sample ratios. BLAS runs single-threaded so the 2 shared cores do not add noise.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.derive import derive  # noqa: E402
from engine.derive.program import Program  # noqa: E402
from engine.export import to_module  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
START, END = "<!-- export_bench:start -->", "<!-- export_bench:end -->"


# ---------------------------------------------------------------- the programs


# Derived and verified by `engine.derive`, as `llm-math derive --format python` would export
# them; the generated modules are the same text as those of the hand-written textbook programs
# in tests/test_export_programs.py.


def ce_program() -> Program:
    return derive(
        "cross_entropy(p, y)",
        wrt=["z"],
        vars={"z": "real[n]", "y": "simplex[n]"},
        defs={"p": "softmax(z)"},
    )


def attention_program() -> Program:
    return derive(
        "sum(O * (P @ V))",
        wrt=["Q", "K", "V"],
        vars={"Q": "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"},
        defs={"P": "softmax(Q @ K.T / sqrt(d))"},
    )


# ---------------------------------------------------------------- handwritten NumPy


def hand_ce_grad(z, y):
    e = np.exp(z - np.max(z))
    return e / np.sum(e) - y


def hand_ce_value_and_grad(z, y):
    shifted = z - np.max(z)
    e = np.exp(shifted)
    s = np.sum(e)
    return np.log(s) - y @ shifted, e / s - y  # uses sum(y) = 1


def hand_attention_backward(Q, K, V, dO):
    scale = 1.0 / np.sqrt(Q.shape[1])
    S = (Q @ K.T) * scale
    P = np.exp(S - np.max(S, axis=1, keepdims=True))
    P /= np.sum(P, axis=1, keepdims=True)
    dV = P.T @ dO
    dP = dO @ V.T
    dS = P * (dP - np.sum(P * dP, axis=1, keepdims=True))
    return (dS @ K) * scale, (dS.T @ Q) * scale, dV


# ---------------------------------------------------------------- timing


def load(source: str, stem: str):
    path = Path(tempfile.mkdtemp()) / f"{stem}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def interleaved(a, b, args, samples: int, calls: int) -> tuple[float, float, float]:
    """Median seconds per call of a and of b, and the median of the per-sample ratios a / b."""
    for _ in range(3):  # warm-up
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


def _row(case: str, target: str, a, b, args, samples: int, calls: int) -> Row:
    return (case, target, samples, *interleaved(a, b, args, samples, calls))


def run(samples: int, libraries: bool) -> list[Row]:
    rng = np.random.default_rng(0)
    rows: list[Row] = []

    n = 50_000
    z = rng.standard_normal(n) * 3
    y = np.exp(rng.standard_normal(n))
    y /= y.sum()
    ce = load(to_module(ce_program()), "ce_export")
    ce_grad = load(to_module(ce_program(), with_value=False), "ce_export_grad")
    value, grads = ce.value_and_grad(z, y)
    hv, hg = hand_ce_value_and_grad(z, y)
    assert np.allclose(grads["z"], hand_ce_grad(z, y), rtol=1e-12, atol=1e-18)
    assert np.isclose(value, hv, rtol=1e-12) and np.allclose(grads["z"], hg, rtol=1e-12)
    # Short samples (10 calls, ~1 ms), many of them: the two sides see the same machine load.
    ce_samples = 4 * samples
    rows.append(
        _row(
            "CE n=50,000: export value_and_grad / hand `softmax(z) - y`",
            "1.2",
            ce.value_and_grad,
            hand_ce_grad,
            (z, y),
            ce_samples,
            10,
        )
    )
    rows.append(
        _row(
            "CE n=50,000: export with_value=False / hand `softmax(z) - y`",
            "1.2",
            ce_grad.value_and_grad,
            hand_ce_grad,
            (z, y),
            ce_samples,
            10,
        )
    )
    rows.append(
        _row(
            "CE n=50,000: export value_and_grad / hand value and gradient",
            "1.2",
            ce.value_and_grad,
            hand_ce_value_and_grad,
            (z, y),
            ce_samples,
            10,
        )
    )

    n, d = 512, 64
    Q, K, V, dO = (rng.standard_normal((n, d)) for _ in range(4))
    att = load(to_module(attention_program()), "att_export")
    att_grad = load(to_module(attention_program(), with_value=False), "att_export_grad")
    _, grads = att.value_and_grad(Q, K, V, dO)
    for got, want in zip(
        (grads["Q"], grads["K"], grads["V"]), hand_attention_backward(Q, K, V, dO), strict=True
    ):
        assert np.allclose(got, want, rtol=1e-10, atol=1e-12)
    args = (Q, K, V, dO)
    rows.append(
        _row(
            "attention n=512, d=64: export value_and_grad / hand backward",
            "1.5",
            att.value_and_grad,
            hand_attention_backward,
            args,
            samples,
            3,
        )
    )
    rows.append(
        _row(
            "attention n=512, d=64: export with_value=False / hand backward",
            "1.5",
            att_grad.value_and_grad,
            hand_attention_backward,
            args,
            samples,
            3,
        )
    )
    if libraries:
        rows += library_rows(args, samples)
    return rows


def library_rows(args, samples: int) -> list[Row]:
    """Informational: the torch and jax exports against each library's own autodiff."""
    import jax
    import jax.numpy as jnp
    import torch

    torch.set_num_threads(1)
    jax.config.update("jax_enable_x64", True)
    rows: list[Row] = []

    t_args = [torch.tensor(a) for a in args]
    exported = load(to_module(attention_program(), "torch"), "att_torch")

    def autograd(Q, K, V, dO):
        Q, K, V = (x.detach().requires_grad_() for x in (Q, K, V))
        P = torch.softmax(Q @ K.T / math.sqrt(Q.shape[1]), dim=-1)
        value = torch.sum(dO * (P @ V))
        return value, torch.autograd.grad(value, (Q, K, V))

    _, grads = exported.value_and_grad(*t_args)
    for got, want in zip((grads[v] for v in "QKV"), autograd(*t_args)[1], strict=True):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    rows.append(
        _row(
            "attention n=512, d=64: torch export / torch.autograd",
            "-",
            exported.value_and_grad,
            autograd,
            t_args,
            samples,
            3,
        )
    )

    j_args = [jnp.asarray(a) for a in args]
    exported = load(to_module(attention_program(), "jax"), "att_jax")

    def loss(Q, K, V, dO):
        P = jax.nn.softmax(Q @ K.T / jnp.sqrt(Q.shape[1]), axis=-1)
        return jnp.sum(dO * (P @ V))

    mine = jax.jit(exported.value_and_grad)
    theirs = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    _, grads = mine(*j_args)  # (jit returns the dict with its keys sorted: K, Q, V)
    for got, want in zip((grads[v] for v in "QKV"), theirs(*j_args)[1], strict=True):
        assert jnp.allclose(got, want, rtol=1e-10, atol=1e-12)

    def block(f):
        return lambda *a: jax.block_until_ready(f(*a))

    rows.append(
        _row(
            "attention n=512, d=64: jax.jit(export) / jax.jit(jax.value_and_grad)",
            "-",
            block(mine),
            block(theirs),
            j_args,
            samples,
            3,
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
        "The exported function is the module from `engine.export.to_module`; "
        "`with_value=False` exports the gradients alone. The first row is the target as set "
        "(the export also computes the loss value, one more pass over y); the third compares "
        "like with like. Both sides are checked to agree before timing. The torch and jax rows "
        "have no target: they compare the exports with each library's own autodiff.",
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
    parser.add_argument("--samples", type=int, default=61)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument(
        "--numpy-only", action="store_true", help="skip the torch and jax rows (informational)"
    )
    args = parser.parse_args()
    text = table(run(args.samples, not args.numpy_only))
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
