"""Start-up cost of the command line: whole-process wall time of `llm-math` commands against
`python -c pass` (the interpreter alone), run interleaved so machine load hits all alike.

Run:  python benchmarks/startup_bench.py [--rounds 15] [--baseline REV]

With --baseline, the same commands also run from a git worktree of REV (e.g. a5a145e, before
lazy imports) on the same interpreter, side by side. Targets (issue 13): --help and list at most
0.2 s above the interpreter; verifying one cross-entropy claim at most 0.5 s in all.

Bytecode: the commands run with a bytecode cache (PYTHONPYCACHEPREFIX, a scratch directory per
tree, filled by the warm-up round), as an installed package runs from its compiled .pyc files.
An environment with PYTHONDONTWRITEBYTECODE=1 and no __pycache__ in the trees would otherwise
compile every engine module from source at every start (about 0.1 s idle). --no-bytecode keeps
the environment as it is.

Besides the median wall time, the median CPU time (user + system, of the command and the worker
it forks) is shown: on a loaded machine it moves much less than the wall time.
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


def wall(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall time, CPU time of the process and its reaped children) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, args)
    return elapsed, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", default=None, help="a git revision to compare with")
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="no bytecode cache of our own: the environment's PYTHONDONTWRITEBYTECODE holds",
    )
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
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
            if not args.no_bytecode:
                for i, env in enumerate(envs.values()):
                    env.pop("PYTHONDONTWRITEBYTECODE", None)
                    env["PYTHONPYCACHEPREFIX"] = f"{tmp}/pycache-{i}"
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
    cache = "environment as is" if args.no_bytecode else "bytecode cached"
    print(
        f"{args.rounds} rounds, interleaved, {cache}, load average {load_start:.2f} at the start "
        f"and {load:.2f} at the end (nproc {os.cpu_count()}); median wall time and median CPU "
        "time (s)"
    )
    names = list(trees)
    heads = [f"{n}: wall | {n}: CPU" for n in names]
    extra = " | wall ratio to baseline | CPU ratio to baseline" if len(names) > 1 else ""
    print("| command | " + " | ".join(heads) + f" | wall above `python -c pass`{extra} |")
    print("|---|" + "---:|" * (2 * len(names) + 1 + 2 * (len(names) > 1)))
    interp = statistics.median(w for w, _ in times[("python -c pass", "this tree")])
    for label in COMMANDS:
        walls = [statistics.median(w for w, _ in times[(label, n)]) for n in names]
        cpus = [statistics.median(c for _, c in times[(label, n)]) for n in names]
        cells = " | ".join(f"{w:.3f} | {c:.3f}" for w, c in zip(walls, cpus, strict=True))
        ratios = f" | {walls[0] / walls[1]:.2f} | {cpus[0] / cpus[1]:.2f}" if len(names) > 1 else ""
        print(f"| {label} | {cells} | {walls[0] - interp:+.3f}{ratios} |")


if __name__ == "__main__":
    main()
