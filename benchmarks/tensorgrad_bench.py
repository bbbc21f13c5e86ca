"""Time `derive` (and derive + verify) on multi-head attention and a transformer block, side by side
with tensorgrad's symbolic derivative of the same functions.

Run from the repository root (tensorgrad lives in a venv of its own, see benchmarks/RESULTS.md):

    python benchmarks/tensorgrad_bench.py --tensorgrad-python /work/tg-venv/bin/python
        [--samples 5] [--verify-samples 1] [--tg-timeout 120] [--cases mha,block]
        [--no-check] [--no-numeric-route] [--write]

Our side runs in this process; tensorgrad's in a subprocess of the given python
(benchmarks/tensorgrad_worker.py), kept alive across samples so neither side pays imports in
its timings. Each sample runs every measurement once, in alternating order (ours first on even
samples, tensorgrad first on odd ones); a ratio is the median of the per-sample ratios.
Before timing, `--check` (on by default) evaluates both sides' derived gradients at the same
small random inputs and reports their largest difference: the two sides derive one function.
--write puts the Markdown section into benchmarks/RESULTS.md between this script's markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy

from engine.derive import DerivationFailed, derive
from engine.verify import verify_sides

HERE = Path(__file__).resolve().parent
WORKER = HERE / "tensorgrad_worker.py"
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- tensorgrad-bench:begin -->", "<!-- tensorgrad-bench:end -->"


@dataclass(frozen=True)
class Case:
    """One function, written in our language; the worker has tensorgrad's version of it."""

    name: str
    loss: str
    wrt: list[str]
    vars: dict[str, str]
    defs: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, str] = field(default_factory=dict)
    # for --check: concrete sizes, and each variable's axes as tensorgrad names them (after a
    # reshape of ours where tensorgrad has separate head edges)
    check_sizes: dict[str, int] = field(default_factory=dict)
    axes: dict[str, str] = field(default_factory=dict)


MHA = Case(
    "mha",
    "sum(G * (softmax(where(tril(n), Q @ swapaxes(K, -1, -2) / sqrt(dh), -inf)) @ V))",
    ["Q", "K", "V"],
    {v: "real[B, h, n, dh]" for v in ("Q", "K", "V", "G")},
    check_sizes={"B": 2, "h": 3, "n": 5, "dh": 4},
    axes={v: "B h n dh" for v in ("Q", "K", "V", "G")},
)


def _layer_norm(x: str, g: str, b: str) -> str:
    centred = f"({x} - mean({x}, axis=-1, keepdims=True))"
    return f"{centred} / sqrt(var({x}, axis=-1, keepdims=True) + eps) * {g} + {b}"


def _heads(x: str) -> str:
    return f"swapaxes(reshape({x}, (n, h, dh)), 0, 1)"


BLOCK = Case(
    "block",
    "sum(G * Y)",
    ["X", "Wq", "Wk", "Wv", "Wo", "W1", "W2", "g1", "b1", "g2", "b2"],
    {
        "X": "real[n, d]",
        **{w: "real[d, d]" for w in ("Wq", "Wk", "Wv", "Wo")},
        "W1": "real[d, m]",
        "W2": "real[m, d]",
        **{v: "real[d]" for v in ("g1", "b1", "g2", "b2")},
        "G": "real[n, d]",
        "eps": "positive",
    },
    {
        "H1": _layer_norm("X", "g1", "b1"),
        "Q": _heads("H1 @ Wq"),
        "K": _heads("H1 @ Wk"),
        "V": _heads("H1 @ Wv"),
        "P": "softmax(where(tril(n), Q @ swapaxes(K, -1, -2) / sqrt(dh), -inf))",
        "O": "reshape(swapaxes(P @ V, 0, 1), (n, d))",
        "X2": "X + O @ Wo",
        "H2": _layer_norm("X2", "g2", "b2"),
        "Y": "X2 + gelu(H2 @ W1) @ W2",
    },
    {"d": "h * dh"},
    check_sizes={"n": 5, "h": 2, "dh": 3, "m": 7},
    axes={
        "X": "n d",
        **{w: "d h dh" for w in ("Wq", "Wk", "Wv")},
        "Wo": "h dh d",
        "W1": "d m",
        "W2": "m d",
        **{v: "d" for v in ("g1", "b1", "g2", "b2")},
        "G": "n d",
        "eps": "",
    },
)

CASES = {c.name: c for c in (MHA, BLOCK)}
TITLES = {
    "mha": "multi-head attention, causal (B, h batched; d/dQ, dK, dV)",
    "block": "pre-LN transformer block (11 gradients: X and every weight)",
}

NOTES = """\
What is measured. *ours, derive* is `derive(loss, wrt, vars, defs, sizes=..., verify=False)`
(parsing and the symbolic derivation into the printed program; sizes stay symbols). *ours,
derive + verify* is `derive(...)` as `llm-math derive` runs it: the program is checked by the
exact route (SymPy at two small sizes) and the numeric route (NumPy complex-step at larger
sizes) before anything is returned. *tensorgrad, symbolic* builds the same loss in tensorgrad
0.3.0 and simplifies every gradient, `[loss.grad(w).full_simplify() for w in wrt]` (its
symbolic derivative, as in its README; its compiler's own comment, in
`tensorgrad/compiler/runtime.py`, warns that "full_simplify would be exponential in depth on
deep models"). *tensorgrad, compile* is
`compile_to_callable(loss, *[loss.grad(w) for w in wrt])`: the joint reverse-mode resolution of
all gradients and their lowering to its program IR (the closest thing tensorgrad has to our
printed program; its code is specialised to concrete sizes at a first call, which is not made
or timed). tensorgrad has no verification step, so the *derive + verify* ratio compares our
checked result with its unchecked one. Both sides build their expressions afresh on every run;
process-wide caches (SymPy's, tensorgrad's hash-consing) stay warm after the first sample, which
is why the first call is shown apart.

How the functions are written on the two sides, and what differs:
- Multi-head attention: ours has `Q, K, V, G: real[B, h, n, dh]` and
  `sum(G * (softmax(where(tril(n), Q @ swapaxes(K, -1, -2) / sqrt(dh), -inf)) @ V))`.
  tensorgrad has named edges: `Q[B, h, n, dh]`, keys and values with the sequence edge named
  `key`, scores `F.dot(Q, K, dim="dh") / F.sqrt(Delta(dh))` (a size is a scalar through
  `Delta(dh)`; `sympy.sqrt(dh)` is refused), `F.softmax(S + M, dim="key")`.
- Causal mask: tensorgrad has no `tril`, `where` or `-inf` constructor; its own minGPT example
  passes the mask as data, an additive `M[n, key]` (0 on and below the diagonal, -inf or -1e9
  above), and so does this benchmark. Its derivative is therefore that of `softmax(S + M)` for
  an arbitrary M, not of the masked scores: the same gradients when M is the causal mask
  (`--check` feeds exactly that), but the mask is not part of its mathematics; ours derives the
  structural `where(tril(n), ., -inf)` and the program shows it (`where(tril(n), ..., 0)`).
- Heads in the block: ours projects `H1 @ Wq` with `Wq: real[d, d]`, `d = h * dh` declared, and
  splits heads by `swapaxes(reshape(., (n, h, dh)), 0, 1)`, merging them back with
  `reshape(swapaxes(P @ V, 0, 1), (n, d))`. tensorgrad's idiom (its minGPT example) is weights
  with a head edge, `Wq[d, h, dh]`, `Wo[h, dh, d]`, no reshape: the same map (our `Wq` reshaped
  to `(d, h, dh)`), but its gradients come out per head edge and ours as `(d, d)` matrices.
- LayerNorm: both from primitives with gain and bias, `(x - mean) / sqrt(var + eps) * g + b`
  over the last axis (tensorgrad: `var = mean(c * c)` of the centred c, as in its minGPT
  example; ours `var(x, axis=-1, keepdims=True)`, the population variance), `eps` a positive
  scalar variable on both sides. tensorgrad's fused `F.layer_norm` is not used: it is an opaque
  cell whose backward is not derived.
- GELU: the exact erf form on both sides (ours `gelu`, tensorgrad `F.gelu(approximate="exact")`).
- Loss: `sum(G * Y)` on both sides, G a variable (the upstream gradient)."""

SETUP = """\
Setup (tensorgrad and torch in a venv of their own, so the engine's venv stays clean):

```
python3 -m venv /work/tg-venv
/work/tg-venv/bin/pip install torch==2.13.0 tensorgrad==0.3.0
```

tensorgrad 0.3.0 pulls in torch, sympy, numpy, networkx 3.2.1, opt_einsum and pdf2image. torch
2.13 has no named tensors, which tensorgrad's compiled programs use at call time; the timings
never call them, and `--check` makes `.names`, `.rename` and `.refine_names` no-ops in the
worker (documented there) to run them on unnamed inputs in each variable's edge order."""


# ---------------------------------------------------------------- tensorgrad's side


class Worker:
    """tensorgrad's side: a subprocess of the tensorgrad python answering one JSON line per
    request; killed and restarted when a request runs over its time limit."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [self.python, str(WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
        return self.proc

    def ask(self, request: dict, timeout: float) -> dict | None:
        """The answer, or None if it took longer than `timeout` seconds (worker restarted)."""
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            self.stop()
            return None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the tensorgrad worker exited (status {proc.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"tensorgrad worker: {answer['error']}")
        return answer

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


# ---------------------------------------------------------------- our side


def ours_derive(case: Case, verify: bool):
    return derive(case.loss, case.wrt, case.vars, case.defs, sizes=case.sizes, verify=verify)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def verify_outcome(case: Case) -> tuple[float, str, bool]:
    """Seconds, outcome text, and whether verification ran to a verdict ("too large" refusals
    of the exact route are reported, not raised)."""
    t0 = time.perf_counter()
    try:
        program = ours_derive(case, verify=True)
    except DerivationFailed as e:
        seconds = time.perf_counter() - t0
        bad = [f"d/d{w}: {r.message}" for w, r in e.results.items() if not r.passed]
        too_large = all("too large" in r.message for r in e.results.values() if not r.passed)
        what = "refused as too large for the exact route" if too_large else "FAILED"
        return (
            seconds,
            f"{what}: {bad[0]}" + (f" (and {len(bad) - 1} more)" if bad[1:] else ""),
            False,
        )
    seconds = time.perf_counter() - t0
    summary = program.results[0][1].summary()
    return seconds, f"verified ({summary})", True


def numeric_route(case: Case) -> tuple[float, str]:
    """Every gradient's claim by the numeric route alone (when the exact route refused)."""
    program = ours_derive(case, verify=False)
    t0 = time.perf_counter()
    verdicts = []
    for w in case.wrt:
        lhs, rhs = program.claim_sides(w)
        r = verify_sides(lhs, rhs, program.env, exact=False, numeric=True, name=f"d/d{w}")
        verdicts.append((w, r))
    seconds = time.perf_counter() - t0
    passed = sum(r.passed for _, r in verdicts)
    first = f"d/d{verdicts[0][0]}: {verdicts[0][1].summary()}"
    failed = [f"d/d{w}: {r.message}" for w, r in verdicts if not r.passed]
    text = f"{passed}/{len(verdicts)} gradients pass ({first})"
    return seconds, text + ("; " + "; ".join(failed) if failed else "")


# ---------------------------------------------------------------- cross-check


def cross_check(case: Case, worker: Worker, timeout: float) -> str:
    """Both sides' value and gradients at the same random inputs: the largest difference."""
    from engine.backends import numpy_backend

    sizes = dict(case.check_sizes)
    for name, rel in case.sizes.items():
        sizes[name] = int(sympy.sympify(rel).subs(sizes))
    rng = np.random.default_rng(0)
    program = ours_derive(case, verify=False)
    ours_in, tg_in = {}, {}
    for name, axes_text in case.axes.items():
        axes = axes_text.split()
        if not axes:  # the positive scalar eps
            ours_in[name] = 1e-5
            tg_in[name] = [[], 1e-5]
            continue
        split = rng.standard_normal([sizes[a] for a in axes])
        shape = program.env.vars[name].shape
        ours_in[name] = split.reshape([int(sympy.sympify(str(s)).subs(sizes)) for s in shape])
        tg_in[name] = [axes, split.tolist()]
    # the program's expressions evaluated by the engine's NumPy backend (the exported module
    # cannot be used for the block: it reads sizes off its arguments' axes, and no axis is dh)
    value = numpy_backend.evaluate(program.output, ours_in, sizes)
    grads = {w: numpy_backend.evaluate(g, ours_in, sizes) for w, g in program.gradients}
    answer = worker.ask(
        {"op": "check", "case": case.name, "sizes": sizes, "inputs": tg_in}, timeout
    )
    if answer is None:
        return f"tensorgrad's check did not finish in {timeout:.0f} s"
    worst = abs(answer["value"] - float(value)) / max(1.0, abs(float(value)))
    for name, (edges, data) in answer["grads"].items():
        want_axes = case.axes[name].split()
        theirs = np.asarray(data).transpose([edges.index(a) for a in want_axes])
        ours = np.asarray(grads[name]).reshape(theirs.shape)
        scale = max(1.0, float(np.max(np.abs(ours))))
        worst = max(worst, float(np.max(np.abs(theirs - ours))) / scale)
    sizes_text = ", ".join(f"{k}={v}" for k, v in sizes.items())
    return (
        f"at {sizes_text}, float64, the two sides' value and {len(case.wrt)} gradients agree to "
        f"{worst:.1e} (largest difference relative to max(1, largest entry))"
    )


# ---------------------------------------------------------------- the measurements


@dataclass
class Row:
    case: Case
    ours: list[float] = field(default_factory=list)
    verify: list[float] = field(default_factory=list)
    symbolic: list[float | None] = field(default_factory=list)
    compile: list[float] = field(default_factory=list)
    outcome: str = ""
    verified: bool = False
    numeric: tuple[float, str] | None = None
    check: str = ""
    ops: int = 0
    lines: int = 0


def run_case(case: Case, worker: Worker, args) -> Row:
    row = Row(case)
    program = ours_derive(case, verify=False)
    row.lines = len(program.to_text().splitlines())
    if args.check:
        row.check = cross_check(case, worker, args.tg_timeout)
        print(f"  check: {row.check}", flush=True)
    symbolic_open = True
    for i in range(args.samples):
        jobs = ["ours", "symbolic", "compile"]
        if i < args.verify_samples:
            jobs.insert(1, "verify")
        for job in jobs if i % 2 == 0 else reversed(jobs):
            if job == "ours":
                row.ours.append(timed(lambda: ours_derive(case, verify=False))[0])
            elif job == "verify":
                seconds, row.outcome, row.verified = verify_outcome(case)
                row.verify.append(seconds)
            elif job == "symbolic" and symbolic_open:
                answer = worker.ask({"op": "symbolic", "case": case.name}, args.tg_timeout)
                row.symbolic.append(None if answer is None else answer["seconds"])
                symbolic_open = answer is not None  # one timeout: do not wait again
            elif job == "compile":
                answer = worker.ask({"op": "compile", "case": case.name}, args.tg_timeout)
                if answer is None:
                    raise RuntimeError(f"tensorgrad's compile of {case.name} ran over the limit")
                row.compile.append(answer["seconds"])
                row.ops = answer["ops"]
        print(
            f"  sample {i + 1}: ours {row.ours[-1] * 1e3:.1f} ms"
            + (f", ours+verify {row.verify[-1]:.1f} s" if i < args.verify_samples else "")
            + f", tensorgrad compile {row.compile[-1] * 1e3:.1f} ms"
            + (
                f", tensorgrad symbolic {_seconds(row.symbolic[-1], args.tg_timeout)}"
                if i < len(row.symbolic)
                else ""
            ),
            flush=True,
        )
    if row.verify and not row.verified and args.numeric_route:
        row.numeric = numeric_route(case)
    return row


def _seconds(t: float | None, timeout: float) -> str:
    return f"> {timeout:.0f} s (stopped)" if t is None else f"{t:.3f} s"


def _ms(values: list[float]) -> str:
    """Median of the samples after the first, and the first: in ms, or in s from 1 s."""
    first, median = values[0], statistics.median(values[1:] or values)
    if median >= 1:
        return f"{median:.2f} s (first {first:.2f})"
    return f"{median * 1e3:.1f} ms (first {first * 1e3:.1f})"


def _ratio(num: list[float], den: list[float | None], timeout: float) -> str:
    pairs = [(a, b) for a, b in zip(num, den, strict=False) if b is not None]
    if pairs:
        return f"{statistics.median(a / b for a, b in pairs):.3g}x"
    if den and num:  # tensorgrad never finished: a bound
        return f"< {statistics.median(num) / timeout:.3g}x"
    return "-"


def _too_large(row: Row) -> bool:
    return row.outcome.startswith("refused as too large")


def markdown(rows: list[Row], args, versions: dict, load: tuple[float, float]) -> str:
    command = "python benchmarks/tensorgrad_bench.py " + " ".join(sys.argv[1:])
    ours_versions = (
        f"Python {platform.python_version()}, NumPy {np.__version__}, SymPy {sympy.__version__}"
    )
    tg_versions = (
        f"tensorgrad {versions.get('tensorgrad')}, torch {versions.get('torch')}, "
        f"SymPy {versions.get('sympy')}, Python {versions.get('python')}"
    )
    lines = [
        BEGIN,
        "## Symbolic derivation next to tensorgrad (`benchmarks/tensorgrad_bench.py`)",
        "",
        f"Command: `PYTHONPATH=$PWD {command.strip()}` (repository root, the engine's venv).",
        "",
        f"Load average (2 shared cores): {load[0]:.1f} at the start, {load[1]:.1f} at the end.",
        f"Ours: {ours_versions}. tensorgrad's subprocess: {tg_versions}.",
        f"{args.samples} samples per case (our derive + verify: {args.verify_samples}; "
        f"tensorgrad's runs stopped after {args.tg_timeout:.0f} s). Times are medians of the",
        "samples after the first (the first call in brackets); ratio = ours / tensorgrad, the",
        "median of the per-sample ratios (below 1: ours is faster).",
        "",
        "| case | ours, derive | ours, derive + verify | tensorgrad, symbolic "
        "| tensorgrad, compile | derive / symbolic | derive / compile "
        "| derive + verify / symbolic | derive + verify / compile |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        sym_done = [t for t in row.symbolic if t is not None]
        sym = _ms(sym_done) if sym_done else f"> {args.tg_timeout:.0f} s (not finished)"
        if row.verified:
            ver = f"{statistics.median(row.verify):.1f} s"
            ratio_vs = _ratio(row.verify, row.symbolic, args.tg_timeout)
            ratio_vc = _ratio(row.verify, row.compile, args.tg_timeout)
        else:
            ver = "not run"
            if row.verify:
                ver = "refused (see below)" if _too_large(row) else "FAILED (see below)"
            ratio_vs = ratio_vc = "-"
        lines.append(
            f"| {TITLES[row.case.name]} | {_ms(row.ours)} | {ver} | {sym} | {_ms(row.compile)} "
            f"| {_ratio(row.ours, row.symbolic, args.tg_timeout)} "
            f"| {_ratio(row.ours, row.compile, args.tg_timeout)} | {ratio_vs} | {ratio_vc} |"
        )
    lines.append("")
    for row in rows:
        lines.append(
            f"- **{row.case.name}**: our program has {row.lines} lines; tensorgrad's compiled "
            f"program has {row.ops} tensor ops."
        )
        if row.verify:
            lines.append(f"  Our verification: {row.outcome}.")
        if not row.verified and row.verify and _too_large(row):
            lines.append(
                "  TODO: the exact route refuses the block as too large today, so derive + "
                "verify has no number yet; rerun this command after the verifier's scaling "
                "fix lands."
            )
        if row.numeric is not None:
            seconds, text = row.numeric
            lines.append(
                f"  The numeric route alone (`verify_sides(..., exact=False)` on every "
                f"gradient): {seconds:.1f} s, {text}."
            )
        if row.check:
            lines.append(f"  Cross-check: {row.check}.")
    lines += ["", NOTES, "", SETUP, END]
    return "\n".join(lines)


def write_section(section: str) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tensorgrad-python", required=True, help="python of the tensorgrad venv")
    ap.add_argument("--samples", type=int, default=5, help="samples per case (derive alone)")
    ap.add_argument("--verify-samples", type=int, default=1, help="samples of derive + verify")
    ap.add_argument("--tg-timeout", type=float, default=120.0, help="seconds per tensorgrad run")
    ap.add_argument("--cases", default="mha,block", help="comma-separated: mha, block")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the cross-check")
    ap.add_argument(
        "--no-numeric-route",
        dest="numeric_route",
        action="store_false",
        help="when verification is refused, do not time the numeric route alone",
    )
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = ap.parse_args()
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in CASES]
    if unknown or args.samples < 1 or args.verify_samples < 0:
        ap.error(f"unknown case(s) {unknown} (known: mha, block)" if unknown else "bad counts")
    start = os.getloadavg()[0]
    worker = Worker(args.tensorgrad_python)
    try:
        versions = worker.ask({"op": "versions"}, args.tg_timeout) or {}
        rows = []
        for name in names:
            print(f"{name}:", flush=True)
            rows.append(run_case(CASES[name], worker, args))
    finally:
        worker.stop()
    section = markdown(rows, args, versions, (start, os.getloadavg()[0]))
    print(section)
    if args.write:
        write_section(section)


if __name__ == "__main__":
    main()
