"""Fuzz test of the command line: thousands of mixed abusive inputs, in-process, each under a
short time budget; only exit statuses 0/1/2, never a traceback, never an input past its budget.

The inputs come from a fixed seed (tests/cli_fuzz.py), so a CI verdict is reproducible; the long
run (>= 40,000 inputs) is benchmarks/fuzz_cli.py.
"""

from __future__ import annotations

from collections import Counter

from cli_fuzz import budgets, inputs, run_one

SEED = 14
COUNT = 3000
TIMEOUT = 1.0  # seconds per claim, file read or derive
# Slack over an input's budgets for process start-up and output: an input past it was not
# stopped by its budget (an unbounded run), which is what this test is for.
GRACE = 30.0


def test_the_cli_survives_thousands_of_mixed_inputs(tmp_path):
    codes: Counter[int] = Counter()
    problems = []
    for index, item in enumerate(inputs(SEED, COUNT)):
        outcome = run_one(item, tmp_path, TIMEOUT)
        codes[outcome.exit_code] += 1
        if outcome.problem:
            problems.append((index, outcome.args, outcome.problem))
        elif outcome.seconds > budgets(item) * TIMEOUT + GRACE:
            problems.append((index, outcome.args, f"ran {outcome.seconds:.1f} s"))
    assert problems == []
    assert sum(codes.values()) == COUNT
    # A mix that reaches the checks, not only the parser: each ending is well represented.
    assert min(codes[0], codes[1], codes[2]) >= 5, codes
