"""-j N: a cold build of the notes and a verify of the adversarial corpus (tests/corpus, about
200 claims), whole-process wall time at -j 1 and -j 2 (or --jobs), interleaved rounds.

Run:  python benchmarks/parallel_bench.py [--rounds 2] [--jobs 1 2]

The build runs with --no-cache into a scratch directory (every step checked, every figure
drawn); the verify runs every corpus file in one `llm-math verify` per file, in sequence.
Outputs are compared between the -j values: they must be byte-identical.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = sorted((ROOT / "tests" / "corpus").glob("*.toml"))


def run(args: list[str], env: dict[str, str]) -> tuple[float, bytes]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True
    )
    return time.perf_counter() - start, out.stdout


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.*"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    claims = sum(
        sum(1 for line in p.read_text().splitlines() if line == "[[claim]]") for p in CORPUS
    )
    times: dict[tuple[str, int], list[float]] = {}
    outputs: dict[tuple[str, int], object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "LLM_MATH_CACHE": f"{tmp}/cache"}
        for r in range(args.rounds):
            for j in args.jobs:
                out = Path(tmp) / f"out-{r}-{j}"
                t, _ = run(["build", "--no-cache", "--out", str(out), "-j", str(j)], env)
                times.setdefault(("build", j), []).append(t)
                outputs[("build", j)] = tree_bytes(out)
                total, text = 0.0, b""
                for path in CORPUS:
                    t, stdout = run(["verify", str(path), "-j", str(j)], env)
                    total += t
                    text += stdout
                times.setdefault(("verify", j), []).append(total)
                outputs[("verify", j)] = text
    same = all(
        outputs[(k, j)] == outputs[(k, args.jobs[0])]
        for k in ("build", "verify")
        for j in args.jobs
    )
    print(
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, {args.rounds} rounds; "
        f"median wall time (s); outputs identical across -j: {same}"
    )
    print("| task | " + " | ".join(f"-j {j}" for j in args.jobs) + " | speed-up |")
    print("|---|" + "---:|" * (len(args.jobs) + 1))
    for task, label in (
        ("build", "cold build of the notes"),
        ("verify", f"verify {claims} corpus claims"),
    ):
        meds = [statistics.median(times[(task, j)]) for j in args.jobs]
        cells = " | ".join(f"{m:.1f}" for m in meds)
        print(f"| {label} | {cells} | {meds[0] / meds[-1]:.2f}x |")


if __name__ == "__main__":
    main()
