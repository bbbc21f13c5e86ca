"""Verifier latency and large-n detection, each next to a baseline run side by side.

Run from the repository root (about 2 minutes on the 2-core machine):

    python benchmarks/verify_bench.py

(a) Wall time of `verify_sides` on the ce-grad and attention-grad-Q claims of
    examples/claims.toml: both routes, the exact route alone and the numeric route alone (median
    of several runs, SymPy's cache cleared before each so every run is cold), next to the same
    claim with OpenBLAS left at its default thread count (the engine before it pinned one BLAS
    thread), run once, and the exact route with SymPy's evalf entry by entry (the engine before
    its one-pass mpmath evaluation).
(b) At n = 50,000: the verifier's numeric check of grad(cross_entropy(softmax(z), y), z) ==
    softmax(z) - y (random directional complex-step probes; exact route off) next to the
    baseline, a central-difference check of every coordinate (2n loss evaluations per input
    profile). The baseline is timed on a subset of coordinates and extrapolated linearly. Both
    are also run on the claim with a relative 1e-6 error planted in one entry of the right side.
(c) Two-head attention (tests/corpus/attention.toml): verify time of each weight's gradient,
    next to the exact route with sympy.diff (the engine before its reverse sweep), run once.

Results are printed and written to benchmarks/RESULTS.md between this script's markers.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import time
from datetime import UTC, datetime

import numpy as np
from noise import CLAIMS, ROOT, machine, parsed, plant, write_section
from sympy.core.cache import clear_cache

from engine.backends import numpy_backend
from engine.claims import load_claims
from engine.expr import free_vars
from engine.parser import build_environment, parse_equation
from engine.types import PROFILES
from engine.verify.sampling import numeric_point

TWO_HEAD = ("attn2-dWq1", "attn2-dWk2", "attn2-dWv1", "attn2-dWo2", "attn2-dX")
TWO_HEAD_BASELINE = ("attn2-dWq1", "attn2-dWo2")  # timed with sympy.diff too
TWO_HEAD_SECONDS = 10.0
V = importlib.import_module("engine.verify")  # the module (engine.verify is also a function)
CORE = importlib.import_module("engine.verify.core")
EXACT = importlib.import_module("engine.verify.exact")
NUMERIC = importlib.import_module("engine.verify.numeric")
TARGET_SECONDS = 3.0  # issue 2: an attention grad claim verified in under 3 s
BIG_N = 50_000
CD_SUBSET = 1_000  # coordinates the central-difference baseline is timed on


def timed(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        clear_cache()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


@contextlib.contextmanager
def default_blas_threads():
    """Run the verifier without its one-BLAS-thread limit (the baseline of part a)."""
    saved = CORE.threadpool_limits
    CORE.threadpool_limits = lambda **kw: contextlib.nullcontext()
    try:
        yield
    finally:
        CORE.threadpool_limits = saved


@contextlib.contextmanager
def evalf_only():
    """Run the exact route without its one-pass mpmath evaluation: SymPy evalf entry by entry
    (the engine before it shared subexpressions; the baseline of the exact route)."""
    saved = EXACT._fast_values
    EXACT._fast_values = lambda *args: None
    try:
        yield
    finally:
        EXACT._fast_values = saved


def latency(runs: int) -> tuple[str, float]:
    claims = {c.name: c for c in load_claims(CLAIMS)}
    rows = [
        "| claim | both routes (median) | exact alone | numeric alone | runs (both) | "
        "baseline: both routes, default BLAS threads (1 run) | baseline / engine | "
        "baseline: exact alone, evalf per entry | baseline / engine |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    attention = 0.0
    for name in ("ce-grad", "attention-grad-Q"):
        lhs, rhs, env = parsed(claims[name])
        res = V.verify_sides(lhs, rhs, env)
        assert res.passed, res.report()
        both, times = timed(lambda: V.verify_sides(lhs, rhs, env), runs)  # noqa: B023
        exact, _ = timed(lambda: V.verify_sides(lhs, rhs, env, numeric=False), runs)  # noqa: B023
        numeric, _ = timed(lambda: V.verify_sides(lhs, rhs, env, exact=False), runs)  # noqa: B023
        with default_blas_threads():
            base, _ = timed(lambda: V.verify_sides(lhs, rhs, env), 1)  # noqa: B023
        with evalf_only():
            base_exact, _ = timed(
                lambda: V.verify_sides(lhs, rhs, env, numeric=False),  # noqa: B023
                runs,
            )
        if name == "attention-grad-Q":
            attention = both
        spread = ", ".join(f"{t:.2f}" for t in times)
        rows.append(
            f"| {name} | {both:.3f} s | {exact:.3f} s | {numeric:.3f} s | {spread} | "
            f"{base:.3f} s | {base / both:.1f}x | {base_exact:.3f} s | {base_exact / exact:.1f}x |"
        )
        print(rows[-1], flush=True)
    return "\n".join(rows), attention


def central_difference_check(f, x, rhs_value, values, sizes, coords, plant_at=None):
    """Central differences at `coords`: (seconds, largest relative error, error at plant_at).

    Errors are `entry_errors` of the verifier (relative, floored at SCALE_FLOOR * max entry).
    """
    x0 = np.asarray(values[x.name], dtype=float)
    approx = np.empty(len(coords))
    start = time.perf_counter()
    for j, k in enumerate(coords):
        e = np.zeros(x0.shape)
        e.flat[k] = 1.0
        approx[j] = numpy_backend.directional(f, x, e, values, sizes, method="central")
    seconds = time.perf_counter() - start
    want = rhs_value.flat[coords]
    scale = float(np.max(np.abs(rhs_value)))
    errors = np.abs(approx - want) / (
        np.maximum(np.abs(approx), np.abs(want)) + NUMERIC.SCALE_FLOOR * scale + 1e-300
    )
    at = None if plant_at is None else float(errors[list(coords).index(plant_at)])
    return seconds, float(np.max(errors)), at


def large_n(seeds: int) -> str:
    env = build_environment({"z": "real[n]", "y": "simplex[n]"}, {})
    lhs, rhs = parse_equation("grad(cross_entropy(softmax(z), y), z) == softmax(z) - y", env)
    bad = plant(rhs)
    sizes = {"n": BIG_N}
    f, x = lhs.args

    # The verifier's numeric route: every profile, PROBES probes each, on the true claim and the
    # planted one.
    with CORE.threadpool_limits(limits=1, user_api="blas"):
        true_times, true_errs, bad_times, bad_errs, caught, located = [], [], [], [], 0, 0
        for seed in range(seeds):
            start = time.perf_counter()
            res = V.verify_sides(lhs, rhs, env, seed=seed, numeric_sizes=sizes, exact=False)
            true_times.append(time.perf_counter() - start)
            assert res.passed, res.report()
            true_errs.append(res.checks[0].max_error)
            start = time.perf_counter()
            res = V.verify_sides(lhs, bad, env, seed=seed, numeric_sizes=sizes, exact=False)
            bad_times.append(time.perf_counter() - start)
            bad_errs.append(res.checks[0].max_error)
            if not res.passed:
                caught += 1
                cx = res.counterexample
                located += cx is not None and cx.entry == (int(np.argmax(cx.inputs["plant_i"])),)

        # The baseline: central differences, on the first profile, at CD_SUBSET coordinates
        # including the planted one, on the same inputs as the verifier's first profile.
        used = {**free_vars(lhs), **free_vars(bad)}
        values = numeric_point(used, sizes, np.random.default_rng([0, 2, 0, 0]), PROFILES[0])
        k = int(np.argmax(values["plant_i"]))
        rng = np.random.default_rng(1)
        coords = sorted({k, *rng.choice(BIG_N, CD_SUBSET - 1, replace=False).tolist()})
        true_rhs = np.real(numpy_backend.evaluate(rhs, values, sizes))
        bad_rhs = np.real(numpy_backend.evaluate(bad, values, sizes))
        cd_seconds, cd_true, _ = central_difference_check(f, x, true_rhs, values, sizes, coords)
        _, cd_bad, cd_at_plant = central_difference_check(f, x, bad_rhs, values, sizes, coords, k)
    cd_full = cd_seconds / len(coords) * BIG_N * len(PROFILES)
    probe_t, probe_bad_t = statistics.median(true_times), statistics.median(bad_times)
    probe_tol = V.PROBE_RTOL["complex-step"]
    cd_tol = 1e-5  # the tolerance central differences were once held to (nested derivatives)
    rows = [
        f"n = {BIG_N:,}; {seeds} seeds for the verifier; the central-difference baseline is "
        f"timed on {len(coords)} coordinates of the unit profile and extrapolated linearly to "
        f"{BIG_N:,} coordinates x {len(PROFILES)} profiles ({2 * BIG_N * len(PROFILES):,} loss "
        "evaluations). Planted: relative 1e-6 error in one random entry of softmax(z) - y.",
        "",
        "| check | time, true claim | time, planted | max err, true claim | err, planted | "
        "tolerance | planted caught | margin (planted err / tol) |",
        "|---|---|---|---|---|---|---|---|",
        f"| verifier: {NUMERIC.PROBES} complex-step probes x {len(PROFILES)} profiles | "
        f"{probe_t:.3f} s (median) | {probe_bad_t:.3f} s (incl. bisection) | "
        f"{max(true_errs):.1e} | {min(bad_errs):.1e} (min over seeds) | {probe_tol:.0e} | "
        f"{caught}/{seeds}, entry located {located}/{seeds} | "
        f"{min(bad_errs) / probe_tol:.0f}x (true claim: {probe_tol / max(true_errs):.0f}x "
        "below tol) |",
        f"| baseline: central differences, every coordinate | {cd_full:.1f} s (extrapolated "
        f"from {cd_seconds:.2f} s for {len(coords)}) | same | {cd_true:.1e} | "
        f"{cd_at_plant:.1e} at the planted entry (max {cd_bad:.1e}) | {cd_tol:.0e} | "
        f"{'yes' if cd_at_plant > max(cd_tol, cd_true) else 'no'} | "
        f"{cd_at_plant / cd_true:.2g}x of its own noise on the true claim"
        f"{' (which is above its tolerance: a false alarm)' if cd_true > cd_tol else ''} |",
        "",
        f"Speed: central differences / verifier = {cd_full / probe_t:,.0f}x on the true claim.",
    ]
    for r in rows:
        print(r, flush=True)
    return "\n".join(rows)


@contextlib.contextmanager
def sympy_diff_only():
    """Run the exact route with sympy.diff for every derivative (the engine before its reverse
    sweep over SymPy's DAG, verify/adjoint.py; the baseline of part c)."""
    saved = EXACT.Sides.build
    EXACT.Sides.build = classmethod(
        lambda cls, lhs, rhs, sy, si: cls(lhs, rhs, sy, si, deferred=False)
    )
    try:
        yield
    finally:
        EXACT.Sides.build = saved


def two_head(runs: int) -> tuple[str, float]:
    """(c) Two-head attention with projections from a shared X (tests/corpus/attention.toml):
    verify time of each weight's gradient claim, next to the exact route by sympy.diff."""
    rows = [
        "| claim | verdict | both routes, median (s) | exact route | numeric route | "
        "exact route by sympy.diff, once (s) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = 0.0
    for claim in load_claims(ROOT / "tests" / "corpus" / "attention.toml"):
        if claim.name not in TWO_HEAD:
            continue
        lhs, rhs, env = parsed(claim)
        verdict = V.verify_sides(lhs, rhs, env).verdict
        both, _ = timed(lambda: V.verify_sides(lhs, rhs, env), runs)  # noqa: B023
        exact, _ = timed(lambda: V.verify_sides(lhs, rhs, env, numeric=False), runs)  # noqa: B023
        numeric, _ = timed(lambda: V.verify_sides(lhs, rhs, env, exact=False), runs)  # noqa: B023
        base_cell = ratio = "-"
        if claim.name in TWO_HEAD_BASELINE:  # a minute or more each: two of them
            with sympy_diff_only():
                base, _ = timed(lambda: V.verify_sides(lhs, rhs, env, numeric=False), 1)  # noqa: B023
            base_cell, ratio = f"{base:.1f}", f"{base / exact:.1f}x"
        worst = max(worst, both)
        print(f"{claim.name}: {both:.2f} s (exact {exact:.2f}, by diff {base_cell})", flush=True)
        rows.append(
            f"| {claim.name} | {verdict} | {both:.2f} | {exact:.2f} | {numeric:.2f} | "
            f"{base_cell} | {ratio} |"
        )
    return "\n".join(rows), worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per latency figure")
    ap.add_argument("--seeds", type=int, default=10, help="seeds for the n = 50,000 check")
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args(argv)
    command = "python benchmarks/verify_bench.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    start = time.perf_counter()
    table_a, attention = latency(args.runs)
    table_b = large_n(args.seeds)
    table_c, two = two_head(max(1, args.runs // 2))
    verdict = "meets" if attention < TARGET_SECONDS else "MISSES"
    verdict_two = "meets" if two < TWO_HEAD_SECONDS else "MISSES"
    body = "\n".join(
        [
            "## Verifier benchmarks (benchmarks/verify_bench.py)",
            "",
            f"`{command.strip()}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}; "
            f"whole run {time.perf_counter() - start:.0f} s. Wall times on a machine shared with "
            "other jobs: compare the ratios, not the seconds.",
            "",
            "### (a) Latency of verify",
            "",
            table_a,
            "",
            f"attention-grad-Q: {attention:.2f} s, {verdict} the {TARGET_SECONDS:.0f} s target.",
            "",
            "### (b) Numeric check at n = 50,000 against central differences",
            "",
            table_b,
            "",
            "### (c) Two-head attention, every weight's gradient",
            "",
            table_c,
            "",
            f"slowest: {two:.2f} s, {verdict_two} the {TWO_HEAD_SECONDS:.0f} s target.",
        ]
    )
    print(f"attention-grad-Q {attention:.2f} s ({verdict} the target)")
    if not args.no_write:
        write_section("verify-bench", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
