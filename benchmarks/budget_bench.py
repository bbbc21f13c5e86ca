"""Cost of the time budget: each claim of examples/claims.toml checked in-process and in a
budgeted worker (engine.budget), interleaved, and an empty job through the worker.

Run:  python benchmarks/budget_bench.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from engine import budget
from engine.claims import load_claims

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "claims.toml"


def seconds(job) -> float:
    start = time.perf_counter()
    job()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    claims = load_claims(EXAMPLES)
    budget.run(lambda: None, 60)  # the one-time warm-up of the parent, not timed
    empty = [seconds(lambda: budget.run(lambda: None, 60)) for _ in range(50)]
    inline: list[float] = []
    worker: list[float] = []
    for r in range(args.rounds):
        for i, claim in enumerate(claims):
            pair = [
                ("inline", lambda c=claim, r=r: c.check(seed=r)),
                ("worker", lambda c=claim, r=r: c.check(seed=r, timeout=60)),
            ]
            if (r + i) % 2:
                pair.reverse()
            for kind, job in pair:
                (inline if kind == "inline" else worker).append(seconds(job))
    n = len(claims)
    print(f"command: python benchmarks/budget_bench.py --rounds {args.rounds}")
    print(f"load average at the start: {os.getloadavg()[0]:.1f}")
    print(f"empty job through budget.run: median {1000 * statistics.median(empty):.1f} ms")
    print(
        f"{n} example claims x {args.rounds} rounds: in-process median "
        f"{1000 * statistics.median(inline):.0f} ms, in a worker "
        f"{1000 * statistics.median(worker):.0f} ms per claim; totals "
        f"{sum(inline):.1f} s and {sum(worker):.1f} s "
        f"(+{1000 * (sum(worker) - sum(inline)) / len(worker):.0f} ms per claim)"
    )


if __name__ == "__main__":
    main()
