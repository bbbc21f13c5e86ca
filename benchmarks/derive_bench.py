"""Time `derive` on the textbook cases: derivation alone, and derivation plus verification.

Run:  python benchmarks/derive_bench.py [--repeat 30] [--verify-repeat 3] [--only table|two-head]
                                        [--markdown] [--write]

--write puts the Markdown tables into benchmarks/RESULTS.md between the derive-bench markers
(the textbook table) and the derive-two-head markers (two-head attention, where the verifier's
time goes: each gradient's claim by each route alone, through `verify_sides(exact=, numeric=)`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from engine.derive import DerivationFailed, derive
from engine.verify import verify_sides

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

# Two-head attention with per-head projections of a shared X and an output projection per head
# (issue 7, item 6): gradients with respect to all eight weight matrices.
TWO_HEAD = (
    "two-head attention (8 weights)",
    "sum(G * O)",
    [f"W{p}{h}" for h in (1, 2) for p in "qkvo"],
    {"X": "real[n, k]", "G": "real[n, m]"}
    | {f"W{p}{h}": ("real[d, m]" if p == "o" else "real[k, d]") for h in (1, 2) for p in "qkvo"},
    {f"{p.upper()}{h}": f"X @ W{p}{h}" for h in (1, 2) for p in "qkv"}
    | {"O": " + ".join(f"softmax(Q{h} @ K{h}.T / sqrt(d)) @ V{h} @ Wo{h}" for h in (1, 2))},
)

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


TWO_BEGIN, TWO_END = "<!-- derive-two-head:begin -->", "<!-- derive-two-head:end -->"


def two_head_rows(repeat: int) -> tuple[list[float], float, str, list[tuple]]:
    """derive alone (repeated), derive + verify once, and each claim by each route alone."""
    name, expr, wrt, vars_, defs = TWO_HEAD
    alone = _times(lambda: derive(expr, wrt, vars_, defs, verify=False), repeat)
    t0 = time.perf_counter()
    try:
        derive(expr, wrt, vars_, defs)
        outcome = "verified, printed"
    except DerivationFailed as e:
        bad = [f"{w}: {r.verdict} ({r.message})" for w, r in e.results.items() if not r.passed]
        outcome = "refused, nothing printed: " + "; ".join(bad)
    total = time.perf_counter() - t0
    program = derive(expr, wrt, vars_, defs, verify=False)
    rows = []
    for w in wrt:
        lhs, rhs = program.claim_sides(w)
        for route in ("exact", "numeric"):
            t0 = time.perf_counter()
            r = verify_sides(
                lhs, rhs, program.env, exact=route == "exact", numeric=route == "numeric"
            )
            rows.append((w, route, time.perf_counter() - t0, r.verdict, r.message))
    return alone, total, outcome, rows


def two_head_markdown(alone, total, outcome, rows, load: float, argv: list[str]) -> str:
    command = "python benchmarks/derive_bench.py " + " ".join(argv)
    per_route = {
        route: sum(t for _, r, t, _, _ in rows if r == route) for route in ("exact", "numeric")
    }
    lines = [
        TWO_BEGIN,
        "## Derivation speed: two-head attention (`benchmarks/derive_bench.py`)",
        "",
        f"Command: `{command.strip()}`. Load average at the start (2 shared cores): {load:.1f}.",
        f"`{TWO_HEAD[1]}` with {', '.join(f'{k} = {v}' for k, v in TWO_HEAD[4].items())};",
        f"gradients with respect to {', '.join(TWO_HEAD[2])}.",
        "",
        f"- derive alone: median {statistics.median(alone):.1f} ms "
        f"(max {max(alone):.1f} ms, {len(alone)} runs)",
        f"- derive with verification (what `llm-math derive` runs): {total:.1f} s, {outcome}",
        f"- the same claims one route at a time: exact {per_route['exact']:.1f} s, "
        f"numeric {per_route['numeric']:.1f} s",
        "",
        "| gradient | route | seconds | verdict |",
        "|---|---|---:|---|",
    ]
    for w, route, t, verdict, message in rows:
        note = "" if verdict == "pass" else f": {message}"
        lines.append(f"| d/d{w} | {route} | {t:.1f} | {verdict}{note} |")
    lines.append(TWO_END)
    return "\n".join(lines)


def write_section(section: str, begin: str = BEGIN, end: str = END) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=30, help="timed runs of derive alone")
    ap.add_argument("--verify-repeat", type=int, default=3, help="timed runs with verification")
    ap.add_argument("--only", choices=("table", "two-head"), help="run one of the two parts")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    if args.only != "table":
        alone, total, outcome, two = two_head_rows(args.repeat)
        section = two_head_markdown(alone, total, outcome, two, load, sys.argv[1:])
        print(section)
        if args.write:
            write_section(section, TWO_BEGIN, TWO_END)
    if args.only == "two-head":
        return
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
