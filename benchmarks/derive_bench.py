"""Time `derive` on the textbook cases: derivation alone, and derivation plus verification.

Run:  python benchmarks/derive_bench.py [--repeat 30] [--verify-repeat 3] [--markdown] [--write]

--write puts the Markdown table into benchmarks/RESULTS.md between the derive-bench markers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from engine.derive import derive

# name, expression, wrt, vars, defs
CASES = [
    (
        "cross-entropy (simplex y)",
        "cross_entropy(softmax(z), y)",
        ["z"],
        {"z": "real[n]", "y": "simplex[n]"},
        {},
    ),
    (
        "cross-entropy (real y)",
        "cross_entropy(softmax(z), y)",
        ["z"],
        {"z": "real[n]", "y": "real[n]"},
        {},
    ),
    ("logsumexp", "logsumexp(z)", ["z"], {"z": "real[n]"}, {}),
    ("softmax Jacobian", "jacobian(softmax(z), z)", None, {"z": "real[n]"}, {"p": "softmax(z)"}),
    (
        "least squares (w, X)",
        "sum((X @ w - r)**2)",
        ["w", "X"],
        {"X": "real[n, k]", "w": "real[k]", "r": "real[n]"},
        {},
    ),
    (
        "linear layer (W, X)",
        "sum(G * (X @ W))",
        ["W", "X"],
        {"X": "real[n, k]", "W": "real[k, m]", "G": "real[n, m]"},
        {},
    ),
    (
        "attention (Q, K, V)",
        "sum(O * (softmax(Q @ K.T / sqrt(d)) @ V))",
        ["Q", "K", "V"],
        {"Q": "real[n, d]", "K": "real[n, d]", "V": "real[n, d]", "O": "real[n, d]"},
        {"S": "Q @ K.T / sqrt(d)", "P": "softmax(S)"},
    ),
    (
        "LayerNorm",
        "sum(g * (x - mean(x)) / sqrt(var(x) + eps))",
        ["x"],
        {"x": "real[n]", "g": "real[n]", "eps": "positive"},
        {"xhat": "(x - mean(x)) / sqrt(var(x) + eps)"},
    ),
    (
        "RMSNorm",
        "sum(g * x / sqrt(mean(x**2) + eps))",
        ["x"],
        {"x": "real[n]", "g": "real[n]", "eps": "positive"},
        {"xhat": "x / sqrt(mean(x**2) + eps)"},
    ),
    ("sigmoid", "sum(sigmoid(s))", ["s"], {"s": "real[n]"}, {}),
    ("tanh", "sum(tanh(s))", ["s"], {"s": "real[n]"}, {}),
]

# tensorgrad 0.3 on this machine, as quoted in issue 3 (not measured by us), in ms.
TENSORGRAD = {
    "cross-entropy (simplex y)": "17-37",
    "softmax Jacobian": "45-66",
    "attention (Q, K, V)": "500-700",
    "LayerNorm": "300-600",
}


def _times(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- derive-bench:begin -->", "<!-- derive-bench:end -->"


def markdown(rows, load: float, argv: list[str]) -> str:
    command = "python benchmarks/derive_bench.py " + " ".join(argv)
    lines = [
        BEGIN,
        "## Derivation speed (`benchmarks/derive_bench.py`)",
        "",
        f"Command: `{command.strip()}`. Load average at the start (2 shared cores): {load:.1f}.",
        "Times in ms, wall clock, parsing included. *derive* is the symbolic derivation alone",
        "(`derive(..., verify=False)`): a first call, then the median and the maximum of the",
        "repeated runs. *derive + verify* adds the verifier (exact SymPy check at two small sizes,",
        "numeric NumPy complex-step check at n=64 etc.) that runs before any result is shown; its",
        "first call is cold, later calls reuse SymPy's internal cache.",
        "The tensorgrad 0.3 column is quoted from issue 3 (measured by others on this machine),",
        "**not measured by us**; it is the time tensorgrad took to derive, without verification.",
        "",
        "| case | derive, first call | derive, median | derive, max "
        "| derive + verify, first call | derive + verify, median "
        "| tensorgrad 0.3 (quoted) | derived program |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, c, med, mx, chk0, chk, tg, text in rows:
        lines.append(
            f"| {name} | {c:.2f} | {med:.2f} | {mx:.2f} | {chk0:.0f} | {chk:.0f} | {tg} "
            f"| `{text}` |"
        )
    lines.append(END)
    return "\n".join(lines)


def write_section(section: str) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30, help="timed runs of derive alone")
    ap.add_argument("--verify-repeat", type=int, default=3, help="timed runs with verification")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    rows = []
    for name, expr, wrt, vars_, defs in CASES:
        cold = _times(lambda e=expr, w=wrt, v=vars_, d=defs: derive(e, w, v, d, verify=False), 1)
        warm = _times(
            lambda e=expr, w=wrt, v=vars_, d=defs: derive(e, w, v, d, verify=False), args.repeat
        )
        checked = _times(
            lambda e=expr, w=wrt, v=vars_, d=defs: derive(e, w, v, d), args.verify_repeat
        )
        program = derive(expr, wrt, vars_, defs)
        rows.append(
            (
                name,
                cold[0],
                statistics.median(warm),
                max(warm),
                checked[0],
                statistics.median(checked),
                TENSORGRAD.get(name, "-"),
                program.to_text().replace("\n", "; "),
            )
        )
    if args.markdown or args.write:
        section = markdown(rows, load, sys.argv[1:])
        print(section)
        if args.write:
            write_section(section)
    else:
        for name, c, med, mx, chk0, chk, tg, text in rows:
            print(
                f"{name:28} derive {med:7.2f} ms (first {c:6.2f}, max {mx:6.2f})  "
                f"derive+verify {chk:8.0f} ms (first {chk0:6.0f})  tensorgrad {tg:>8}  {text}"
            )


if __name__ == "__main__":
    main()
