"""Time `llm-math build`: a cold build (empty cache and output) and a rebuild, nothing changed.

Run:  python benchmarks/build_bench.py [--cold 2] [--warm 5] [--write]

Each run is a fresh `python -m engine build` process (imports included) on a snapshot of
engine/, derivations/ and templates/ copied to a temporary directory (so edits made in the
working tree during the run cannot invalidate the cache halfway), with the result cache and
the output there too: the repository's own cache and output/ are not touched. `--write` puts
the table into benchmarks/RESULTS.md between the build-bench markers.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
START, END = "<!-- build-bench:start -->", "<!-- build-bench:end -->"


def snapshot(tmp: Path) -> Path:
    """A copy of what a build reads: the engine, the note sources and the templates."""
    root = tmp / "repo"
    for name in ("engine", "derivations", "templates"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def run_build(root: Path, out: Path, cache: Path) -> tuple[float, str]:
    env = {**os.environ, "LLM_MATH_CACHE": str(cache), "PYTHONPATH": str(root)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "build", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        cwd=root,
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build failed:\n{proc.stderr}")
    return elapsed, proc.stderr.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", type=int, default=2, help="cold builds (default 2)")
    parser.add_argument("--warm", type=int, default=5, help="rebuilds per cold build (default 5)")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    cold, warm, summary = [], [], {}
    for _ in range(args.cold):
        with tempfile.TemporaryDirectory() as tmp:
            root = snapshot(Path(tmp))
            out, cache = Path(tmp) / "out", Path(tmp) / "cache"
            seconds, summary["cold"] = run_build(root, out, cache)
            cold.append(seconds)
            print(f"cold   {seconds:6.2f} s  {summary['cold']}", flush=True)
            for _ in range(args.warm):
                seconds, summary["warm"] = run_build(root, out, cache)
                warm.append(seconds)
                print(f"warm   {seconds:6.2f} s  {summary['warm']}", flush=True)
    cold_med, warm_med = statistics.median(cold), statistics.median(warm)
    table = "\n".join(
        [
            START,
            "## Notes build time (`benchmarks/build_bench.py`)",
            "",
            f"Command: `python benchmarks/build_bench.py --cold {args.cold} --warm {args.warm} "
            "--write` (each build a fresh `python -m engine build` process, imports included, "
            "on a snapshot of engine/, derivations/ and templates/ with its cache and output in "
            f"a temporary directory; Python {platform.python_version()}, "
            f"{platform.machine()}). Load average at the start (2 shared cores): {load:.1f}.",
            "",
            "| build | runs | median | min | max |",
            "|---|---|---|---|---|",
            f"| cold (empty cache and output) | {len(cold)} | {cold_med:.1f} s | "
            f"{min(cold):.1f} s | {max(cold):.1f} s |",
            f"| rebuild, nothing changed | {len(warm)} | {warm_med:.1f} s | "
            f"{min(warm):.1f} s | {max(warm):.1f} s |",
            "",
            f"A rebuild takes {warm_med / cold_med:.0%} of a cold build. Cold: {summary['cold']}. "
            f"Rebuild: {summary['warm']}.",
            END,
        ]
    )
    print(table)
    if args.write:
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda m: table, text)
        else:
            text = text.rstrip("\n") + "\n\n" + table + "\n"
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
