"""Long fuzz run of the command line: the inputs of tests/test_cli_fuzz.py, many more of them.

Run:  nice python benchmarks/fuzz_cli.py [--count 40000] [--seed 2026] [--timeout 1]

Feeds `llm-math` in-process (click's CliRunner) with seeded mixed inputs (formulas, claims
files, derive options; tests/cli_fuzz.py) and prints the number of inputs per exit status, the
slowest input and every problem: a traceback, an escaped exception, an exit status other than
0/1/2, or an input that ran past its budgets plus 30 s. Exit status 1 if there was a problem.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cli_fuzz import budgets, inputs, run_one  # noqa: E402 - after the path to tests/

GRACE = 30.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--progress", type=int, default=1000, help="print a line every N inputs")
    args = parser.parse_args()
    codes: Counter[int] = Counter()
    problems: list[tuple[int, list[str], str]] = []
    slowest = (0.0, -1, [])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for index, item in enumerate(inputs(args.seed, args.count)):
            outcome = run_one(item, Path(tmp), args.timeout)
            codes[outcome.exit_code] += 1
            if outcome.seconds > slowest[0]:
                slowest = (outcome.seconds, index, outcome.args)
            problem = outcome.problem
            if problem is None and outcome.seconds > budgets(item) * args.timeout + GRACE:
                problem = f"ran {outcome.seconds:.1f} s"
            if problem:
                problems.append((index, outcome.args, problem))
                print(f"PROBLEM at input {index}: {problem}\n  {outcome.args!r:.400}", flush=True)
            if args.progress and (index + 1) % args.progress == 0:
                by_code = ", ".join(f"exit {c}: {n}" for c, n in sorted(codes.items()))
                print(
                    f"{index + 1} inputs, {time.perf_counter() - start:.0f} s; {by_code}; "
                    f"problems {len(problems)}; slowest {slowest[0]:.2f} s",
                    flush=True,
                )
    total = time.perf_counter() - start
    print(
        f"command: python benchmarks/fuzz_cli.py --count {args.count} --seed {args.seed} "
        f"--timeout {args.timeout:g}"
    )
    by_code = ", ".join(f"exit {code}: {n}" for code, n in sorted(codes.items()))
    print(f"inputs: {sum(codes.values())}; {by_code}")
    print(f"problems: {len(problems)}")
    print(f"slowest input: {slowest[0]:.2f} s (input {slowest[1]}: {slowest[2]!r:.200})")
    print(f"total: {total:.0f} s, {1000 * total / max(1, args.count):.0f} ms per input")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
