"""Measured noise of the verifier: false alarms, error sizes and planted-error detection by seed.

Run from the repository root:

    python benchmarks/noise.py                      # every section, 100 seeds, about 15 min
    python benchmarks/noise.py --section claims --seeds 100

Sections:
  claims   every claim of examples/claims.toml at `--seeds` seeds, both routes: an
           expect="pass" claim must pass at every seed, an expect="fail" claim must fail at every
           seed (per route). Records the largest exact and numeric error of the true claims; the
           numeric error is the raw one, before any rounding-noise discount.
  planted  every gradient claim with a relative error of 1e-6 planted in one entry of its
           right-hand side (`plant`), at `--planted-seeds` seeds, each route alone.
  probes   the top-level-gradient claims at sizes above FULL_LIMIT (n = 50,000), where the
           numeric route checks random directional probes instead of every coordinate: noise of
           the true claims and detection of the planted error.

The tables are printed and written into benchmarks/RESULTS.md between this script's markers,
leaving the rest of the file alone.
"""

from __future__ import annotations

import argparse
import importlib
import math
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sympy
from threadpoolctl import threadpool_limits

from engine.backends import numpy_backend
from engine.claims import Claim, load_claims
from engine.expr import Call, Const, Expr, Var, call, free_vars
from engine.parser import Environment, build_environment, parse_equation
from engine.types import PROFILES
from engine.verify import numeric as N
from engine.verify.core import _all_size_names
from engine.verify.sampling import numeric_point, numeric_size_assignment

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "examples" / "claims.toml"
CORPUS = sorted((ROOT / "tests" / "corpus").glob("*.toml"))  # the adversarial corpus
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
PLANTED = sympy.Rational(1, 10**6)  # relative size of the planted error
V = importlib.import_module("engine.verify")  # the module (engine.verify is also a function)
PROBE_SIZES = {"n": 50_000, "m": 256, "d": 64}  # all above FULL_LIMIT coordinates


def plant(rhs: Expr, rel: sympy.Rational = PLANTED, dense: bool = False) -> Expr:
    """`rhs` with a relative error `rel` in one entry, chosen at random by one-hot variables.

    The entry is picked by one-hot masks (`plant_i`, and `plant_j` for a matrix), so each
    check draws its own entry; a scalar side is scaled as a whole.
    """
    if rhs.shape == ():
        mask: Expr = Const(1)
    elif len(rhs.shape) == 1:
        mask = Var("plant_i", "onehot", rhs.shape)
    elif len(rhs.shape) == 2:
        rows = Var("plant_i", "onehot", rhs.shape[:1])
        cols = Var("plant_j", "onehot", rhs.shape[1:])
        mask = call("outer", rows, cols)
    else:
        raise ValueError(f"cannot plant an error in a side of rank {len(rhs.shape)}")
    if dense:
        # the corpus has sparse and zero right sides (step(t), 0 * z), where a relative error
        # is no error: plant rel * sqrt(rhs**2 + 1), at least rel, in one entry instead
        return rhs + Const(rel) * call("sqrt", rhs * rhs + 1) * mask
    return rhs + Const(rel) * rhs * mask


def is_gradient_claim(lhs: Expr) -> bool:
    """A claim whose left side is a top-level grad or jacobian node."""
    return isinstance(lhs, Call) and lhs.fn in ("grad", "jacobian")


def parsed(claim: Claim) -> tuple[Expr, Expr, Environment]:
    env = build_environment(claim.vars, claim.defs)
    lhs, rhs = parse_equation(claim.equation, env)
    return lhs, rhs, env


def raw_numeric_error(lhs: Expr, rhs: Expr, env: Environment, seed: int, sizes=None) -> float:
    """The numeric route's largest error before its long-double rounding-noise discount."""
    used = {**free_vars(lhs), **free_vars(rhs)}
    order = [s for s in env.sizes if s in _all_size_names(lhs, rhs, used)]
    try:
        with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"):
            report, _ = N.numeric_check(lhs, rhs, used, order, seed, sizes, discount_noise=False)
    except Exception:  # noqa: BLE001 - a raw error that cannot be had is reported as nan
        return math.nan
    return report.max_error


@dataclass
class Tally:
    """Outcomes of one claim over many seeds."""

    name: str
    expect: str
    runs: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    exact_fail: int = 0
    numeric_fail: int = 0
    exact_max: float = 0.0
    exact_min: float = math.inf
    numeric_max: float = 0.0
    numeric_min: float = math.inf
    raw_numeric_max: float = 0.0
    seconds: float = 0.0
    bad_seeds: list[int] = field(default_factory=list)

    def add(self, result: V.Result, seed: int) -> None:
        self.runs += 1
        self.verdicts[result.verdict] = self.verdicts.get(result.verdict, 0) + 1
        for c in result.checks:
            if c.method == "exact":
                self.exact_fail += not c.passed
                self.exact_max = max(self.exact_max, c.max_error)
                self.exact_min = min(self.exact_min, c.max_error)
            else:
                self.numeric_fail += not c.passed
                self.numeric_max = max(self.numeric_max, c.max_error)
                self.numeric_min = min(self.numeric_min, c.max_error)
        if result.verdict != self.expect:
            self.bad_seeds.append(seed)


def sweep_claims(claims: list[Claim], seeds: Iterable[int], raw: bool = True) -> list[Tally]:
    out = []
    for claim in claims:
        lhs, rhs, env = parsed(claim)
        t = Tally(claim.name, claim.expect)
        start = time.perf_counter()
        for seed in seeds:
            res = V.verify_sides(lhs, rhs, env, seed=seed, name=claim.name)
            t.add(res, seed)
            if claim.expect == "pass" and raw:
                t.raw_numeric_max = max(t.raw_numeric_max, raw_numeric_error(lhs, rhs, env, seed))
            if res.verdict == "error":
                print(f"  {claim.name} seed {seed}: ERROR {res.message}", flush=True)
        t.seconds = time.perf_counter() - start
        print(
            f"{claim.name:36s} {t.verdicts} exact max {t.exact_max:.1e} numeric max "
            f"{t.numeric_max:.1e} raw {t.raw_numeric_max:.1e} ({t.seconds:.0f} s)",
            flush=True,
        )
        out.append(t)
    return out


def claims_table(tallies: list[Tally], seeds: int) -> str:
    rows = [
        f"{seeds} seeds per claim, both routes (`verify_sides`). Errors are relative (see "
        "`entry_errors` and `_exact_check`); 'raw' is the numeric error before the long-double "
        "rounding-noise discount. For a false claim 'min' is the smallest error at which it was "
        "caught.",
        "",
        "| claim | expect | verdicts | exact max err (true) / min (false) | "
        "numeric max err (true) / min (false) | raw numeric max | false alarms / misses |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in tallies:
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(t.verdicts.items()))
        if t.expect == "pass":
            ex, nu, raw = f"{t.exact_max:.1e}", f"{t.numeric_max:.1e}", f"{t.raw_numeric_max:.1e}"
        else:
            ex = f"{t.exact_min:.1e} (exact caught {t.exact_fail}/{t.runs})"
            nu = f"{t.numeric_min:.1e} (numeric caught {t.numeric_fail}/{t.runs})"
            raw = "-"
        bad = len(t.bad_seeds)
        rows.append(
            f"| {t.name} | {t.expect} | {verdicts} | {ex} | {nu} | {raw} | "
            f"{bad}{' (seeds ' + ', '.join(map(str, t.bad_seeds[:5])) + ')' if bad else ''} |"
        )
    return "\n".join(rows)


@dataclass
class Detection:
    """Planted-error detection of one claim by each route alone."""

    name: str
    runs: int = 0
    exact_caught: int = 0
    numeric_caught: int = 0
    exact_min: float = math.inf  # smallest error seen with the planted error (vs EXACT_RTOL)
    numeric_min: float = math.inf
    numeric_rtol: float = 0.0
    detail: str = ""


def _route_error(result: V.Result, method: str) -> tuple[bool, float]:
    checks = [c for c in result.checks if c.method == method]
    if not checks:  # an error verdict: the route did not decide, so it did not catch it
        print(f"  error: {result.message}", flush=True)
        return False, math.nan
    return (not checks[0].passed), checks[0].max_error


def sweep_planted(
    claims: list[Claim], seeds: Iterable[int], sizes=None, dense: bool = False
) -> list[Detection]:
    out = []
    for claim in claims:
        lhs, rhs, env = parsed(claim)
        if claim.expect != "pass" or not is_gradient_claim(lhs):
            continue
        if sizes is not None and lhs.fn != "grad":
            continue  # a jacobian at probe sizes is n x n: no probes, and too big to hold
        bad = plant(rhs, dense=dense)
        d = Detection(claim.name)
        for seed in seeds:
            d.runs += 1
            if sizes is None:
                ex = V.verify_sides(lhs, bad, env, seed=seed, numeric=False)
                caught, err = _route_error(ex, "exact")
                d.exact_caught += caught
                d.exact_min = min(d.exact_min, err)
            nu = V.verify_sides(lhs, bad, env, seed=seed, exact=False, numeric_sizes=sizes)
            caught, err = _route_error(nu, "numeric")
            d.numeric_caught += caught
            d.numeric_min = min(d.numeric_min, err)
            d.detail = next(c.detail for c in nu.checks if c.method == "numeric")
        d.numeric_rtol = _rtol_of(d.detail)
        print(
            f"{claim.name:36s} exact {d.exact_caught}/{d.runs} numeric {d.numeric_caught}/{d.runs}"
            f" (min err exact {d.exact_min:.1e}, numeric {d.numeric_min:.1e})",
            flush=True,
        )
        out.append(d)
    return out


def _rtol_of(detail: str) -> float:
    if "probes" in detail:
        return V.PROBE_RTOL["nested" if "central" in detail else "complex-step"]
    if "complex-step over central" in detail:
        return V.NUMERIC_RTOL["nested"]
    if "complex-step" in detail:
        return V.NUMERIC_RTOL["complex-step"]
    return V.NUMERIC_RTOL["none"]


def planted_table(dets: list[Detection], seeds: int, exact: bool = True) -> str:
    rows = [
        f"Relative error {float(PLANTED):.0e} planted in one random entry of the right-hand side "
        f"(`plant` in benchmarks/noise.py), {seeds} seeds, each route run alone. 'min err' is the "
        "smallest error the route measured on the planted claim; margin = min err / tolerance.",
        "",
        "| claim | numeric route | "
        + ("exact caught | exact min err (tol 1e-30) | " if exact else "")
        + "numeric caught | numeric min err | numeric tol | margin |",
        "|---|---|" + ("---|---|" if exact else "") + "---|---|---|---|",
    ]
    for d in dets:
        how = d.detail.split(", max rel.")[0].replace("numeric at ", "")
        ex = f"{d.exact_caught}/{d.runs} | {d.exact_min:.1e} | " if exact else ""
        rows.append(
            f"| {d.name} | {how} | {ex}{d.numeric_caught}/{d.runs} | {d.numeric_min:.1e} | "
            f"{d.numeric_rtol:.0e} | {d.numeric_min / d.numeric_rtol:.2g} |"
        )
    return "\n".join(rows)


def probe_noise(claims: list[Claim], seeds: Iterable[int]) -> str:
    rows = [
        "| claim | sizes | verdicts (true claim) | max probe err (true) | seconds / verify |",
        "|---|---|---|---|---|",
    ]
    for claim in claims:
        lhs, rhs, env = parsed(claim)
        if claim.expect != "pass" or not is_gradient_claim(lhs) or lhs.fn != "grad":
            continue
        worst, verdicts, n, start = 0.0, {}, 0, time.perf_counter()
        for seed in seeds:
            res = V.verify_sides(lhs, rhs, env, seed=seed, exact=False, numeric_sizes=PROBE_SIZES)
            verdicts[res.verdict] = verdicts.get(res.verdict, 0) + 1
            worst = max(worst, res.checks[0].max_error if res.checks else math.nan)
            n += 1
            detail = res.checks[0].detail if res.checks else res.message
        per = (time.perf_counter() - start) / max(n, 1)
        how = detail.split(", max rel.")[0].replace("numeric at ", "")
        v = ", ".join(f"{k} {c}" for k, c in sorted(verdicts.items()))
        print(f"{claim.name:36s} probes {how}: {v}, max err {worst:.1e}", flush=True)
        rows.append(f"| {claim.name} | {how} | {v} | {worst:.1e} | {per:.3f} |")
    return "\n".join(rows)


def constants_table(claims: list[Claim], seeds: Iterable[int]) -> str:
    """Raw float64 errors of the true claims under other SCALE_FLOORs, and how much of the
    long-double / propagated noise estimate the largest raw errors actually used."""
    floors = (N.SCALE_FLOOR, 1e-6, 0.0)
    rows = [
        "| claim | "
        + " | ".join(f"max raw err, SCALE_FLOOR={f:g}" for f in floors)
        + " | max of error / (noise estimate / NOISE_SAFETY) where err > 1e-12 |",
        "|---|" + "---|" * (len(floors) + 1),
    ]
    for claim in claims:
        lhs, rhs, env = parsed(claim)
        if claim.expect != "pass":
            continue
        used = {**free_vars(lhs), **free_vars(rhs)}
        order = [s for s in env.sizes if s in _all_size_names(lhs, rhs, used)]
        sizes = numeric_size_assignment(order, None)
        worst = dict.fromkeys(floors, 0.0)
        used_noise = 0.0
        saved = N.SCALE_FLOOR
        with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"):
            for seed in seeds:
                for p, profile in enumerate(PROFILES):
                    rng = np.random.default_rng([seed, 2, p, 0])
                    values = numeric_point(used, sizes, rng, profile)
                    left = np.real(numpy_backend.evaluate(lhs, values, sizes))
                    right = np.real(numpy_backend.evaluate(rhs, values, sizes))
                    for f in floors:
                        N.SCALE_FLOOR = f
                        worst[f] = max(worst[f], float(np.max(N.entry_errors(left, right))))
                    N.SCALE_FLOOR = saved
                    err = N.entry_errors(left, right)
                    if float(np.max(err)) > 1e-12:
                        noise = sum(
                            g(side, values, sizes)
                            for g in (N.rounding_noise, N.propagated_noise)
                            for side in (lhs, rhs)
                        )
                        k = int(np.argmax(err))
                        diff = abs(float(left.flat[k] - right.flat[k]))
                        unit = float(np.ravel(noise)[k]) / N.NOISE_SAFETY
                        used_noise = max(used_noise, diff / unit if unit > 0 else math.inf)
        print(f"{claim.name:36s} {worst} noise used {used_noise:.2g}", flush=True)
        cells = " | ".join(f"{worst[f]:.1e}" for f in floors)
        rows.append(f"| {claim.name} | {cells} | {used_noise:.2g} |")
    return "\n".join(rows)


def write_section(marker: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the text between `<!-- marker:begin -->` and `<!-- marker:end -->`."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return (
        f"{cpu}, nproc {nproc}, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"SymPy {sympy.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--section", choices=["all", "claims", "planted", "probes", "constants"], default="all"
    )
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--planted-seeds", type=int, default=20)
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    ap.add_argument(
        "--corpus",
        action="store_true",
        help="sweep the adversarial corpus (tests/corpus/*.toml) instead of examples/claims.toml",
    )
    ap.add_argument("--only", default="", help="comma-separated claim-name prefixes to keep")
    ap.add_argument(
        "--no-raw",
        action="store_true",
        help="skip the second numeric run that measures the raw error (about halves the time)",
    )
    args = ap.parse_args(argv)
    claims = [c for p in CORPUS for c in load_claims(p)] if args.corpus else load_claims(CLAIMS)
    if args.only:
        prefixes = tuple(args.only.split(","))
        claims = [c for c in claims if c.name.startswith(prefixes)]
    tag = ("-corpus" if args.corpus else "") + (
        "-" + args.only.replace(",", "-") if args.only else ""
    )
    command = "python benchmarks/noise.py " + " ".join(argv if argv is not None else sys.argv[1:])
    stamp = f"`{command.strip()}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {machine()}."
    failures = 0
    if args.section in ("all", "claims"):
        tallies = sweep_claims(claims, range(args.seeds), raw=not args.no_raw)
        failures += sum(len(t.bad_seeds) for t in tallies)
        body = (
            (
                "### Adversarial corpus over seeds\n\n"
                if args.corpus
                else "### Shipped examples over seeds\n\n"
            )
            + stamp
            + "\n\n"
            + claims_table(tallies, args.seeds)
        )
        if not args.no_write:
            write_section("noise-claims" + tag, body)
    if args.section in ("all", "planted"):
        dets = sweep_planted(claims, range(args.planted_seeds), dense=args.corpus)
        failures += sum(d.runs - d.numeric_caught + d.runs - d.exact_caught for d in dets)
        body = (
            (
                "### Planted 1e-6 error, adversarial corpus (gradients and Hessians)\n\n"
                if args.corpus
                else "### Planted 1e-6 error, shipped sizes\n\n"
            )
            + stamp
            + "\n\n"
            + (
                "In the corpus the planted error is rel * sqrt(rhs**2 + 1) (at least 1e-6), so "
                "that sparse and zero right-hand sides (step(t), 0 * z) carry an error too.\n\n"
                if args.corpus
                else ""
            )
            + planted_table(dets, args.planted_seeds)
        )
        if not args.no_write:
            write_section("noise-planted" + tag, body)
    if args.section in ("all", "probes"):
        sizes = ", ".join(f"{k}={v}" for k, v in PROBE_SIZES.items())
        noise = probe_noise(claims, range(args.seeds))
        dets = sweep_planted(claims, range(args.planted_seeds), sizes=PROBE_SIZES)
        dets = [d for d in dets if "probes" in d.detail]
        failures += sum(d.runs - d.numeric_caught for d in dets)
        body = (
            f"### Directional probes at large sizes ({sizes})\n\n"
            + stamp
            + f"\n\nTrue claims, {args.seeds} seeds, numeric route alone:\n\n"
            + noise
            + "\n\nPlanted error, numeric route alone:\n\n"
            + planted_table(dets, args.planted_seeds, exact=False)
        )
        if not args.no_write:
            write_section("noise-probes" + tag, body)
    if args.section == "constants":
        table = constants_table(claims, range(args.seeds))
        body = (
            "### Numeric route: SCALE_FLOOR and NOISE_SAFETY\n\n"
            + stamp
            + f"\n\n{args.seeds} seeds x {len(PROFILES)} profiles per true claim, raw float64 "
            "errors (no noise discount). Last column: the largest error among points with error "
            "above 1e-12, in units of the unscaled noise estimate (long double + propagated); "
            f"NOISE_SAFETY = {N.NOISE_SAFETY} covers it when the value is below "
            f"{N.NOISE_SAFETY}.\n\n" + table
        )
        if not args.no_write:
            write_section("noise-constants" + tag, body)
    print(f"{failures} false alarms or misses")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
