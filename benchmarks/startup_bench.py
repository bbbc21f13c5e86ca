"""Start-up cost of the command line: whole-process wall time of `llm-math` commands against
`python -c pass` (the interpreter alone), run interleaved so machine load hits all alike.

Run:  python benchmarks/startup_bench.py [--rounds 15] [--baseline REV]

With --baseline, the same commands also run from a git worktree of REV (e.g. a5a145e, before
lazy imports) on the same interpreter, side by side. Targets (issue 13): --help and list at most
0.2 s above the interpreter; verifying one cross-entropy claim at most 0.5 s in all.
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
CE = "grad(cross_entropy(softmax(z), y), z) == softmax(z) - y"
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "llm-math --help": ["-m", "engine", "--help"],
    "llm-math list": ["-m", "engine", "list"],
    "llm-math verify (cross-entropy gradient)": [
        *("-m", "engine", "verify", "--var", "z=real[n]", "--var", "y=simplex[n]", CE)
    ],
}


def wall(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", default=None, help="a git revision to compare with")
    args = parser.parse_args()
    trees = {"this tree": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline:
            base = Path(tmp) / "baseline"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(base), args.baseline],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            trees[f"baseline {args.baseline}"] = base
        try:
            envs = {
                name: {**os.environ, "PYTHONPATH": str(tree), "LLM_MATH_CACHE": f"{tmp}/{i}"}
                for i, (name, tree) in enumerate(trees.items())
            }
            for name, tree in trees.items():  # warm-up: disk caches, bytecode, the notes index
                for cmd in COMMANDS.values():
                    wall(cmd, tree, envs[name])
            times: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for label, cmd in COMMANDS.items():
                    for name, tree in trees.items():
                        times.setdefault((label, name), []).append(wall(cmd, tree, envs[name]))
        finally:
            if args.baseline:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False
                )
    load = os.getloadavg()[0]
    print(f"{args.rounds} rounds, interleaved, load average {load:.2f}; median wall time (s)")
    names = list(trees)
    print("| command | " + " | ".join(names) + " | above `python -c pass` (this tree) |")
    print("|---|" + "---:|" * (len(names) + 1))
    interp = statistics.median(times[("python -c pass", "this tree")])
    for label in COMMANDS:
        meds = [statistics.median(times[(label, n)]) for n in names]
        cells = " | ".join(f"{m:.3f}" for m in meds)
        print(f"| {label} | {cells} | {meds[0] - interp:+.3f} |")


if __name__ == "__main__":
    main()
