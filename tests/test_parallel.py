"""-j N: claims and note steps checked in parallel workers give the same results as -j 1."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine import budget
from engine.claims import Claim, check_claims, load_claims
from engine.cli import cli
from engine.expr import EngineError
from engine.notes import build as build_mod
from engine.notes.build import build

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "claims.toml"


def _sleep_then(value, seconds: float):
    def job():
        time.sleep(seconds)
        return value

    return job


def _raise(error: BaseException):
    def job():
        raise error

    return job


def test_run_all_keeps_the_order_of_the_jobs_not_of_completion(tmp_path):
    # The jobs finish in reverse order, forced without timing: job i waits until the parent has
    # reported job i + 1 as done (sleeps of different lengths were flaky on a loaded machine).
    def job(i: int):
        def run() -> int:
            for _ in range(2000):
                if i == 2 or (tmp_path / f"reported-{i + 1}").exists():
                    return i
                time.sleep(0.01)
            return -1

        return run

    finished: list[int] = []

    def done(i: int, outcome) -> None:
        finished.append(i)
        (tmp_path / f"reported-{i}").touch()

    outcomes = budget.run_all([job(i) for i in range(3)], 60, parallel=3, done=done)
    assert outcomes == [(True, 0), (True, 1), (True, 2)]
    assert finished == [2, 1, 0]  # the order of completion, not of the jobs


def test_run_all_runs_jobs_at_once(tmp_path):
    """Each job checks in and waits for all four to have checked in: only jobs that run at the
    same time can all see the others (one after another, the first would give up)."""

    def job(i: int):
        def wait_for_all() -> bool:
            (tmp_path / str(i)).touch()
            for _ in range(400):
                if len(list(tmp_path.iterdir())) == 4:
                    return True
                time.sleep(0.05)
            return False

        return wait_for_all

    outcomes = budget.run_all([job(i) for i in range(4)], 60, parallel=4)
    assert outcomes == [(True, True)] * 4


def test_run_all_returns_errors_and_budget_overruns_per_job():
    jobs = [
        _sleep_then("ok", 0),
        _raise(EngineError("bad input")),
        _sleep_then("late", 60),
        _sleep_then("also ok", 0.1),
    ]
    outcomes = budget.run_all(jobs, 2, what="the claim", parallel=2)
    assert outcomes[0] == (True, "ok")
    assert outcomes[3] == (True, "also ok")
    ok, error = outcomes[1]
    assert not ok and isinstance(error, EngineError) and str(error) == "bad input"
    ok, late = outcomes[2]
    assert not ok and isinstance(late, budget.BudgetExceeded)
    assert "the claim ran past its 2 s budget" in str(late)


@pytest.mark.parametrize("parallel", [1, 3])
def test_run_all_without_a_timeout(parallel):
    outcomes = budget.run_all([_sleep_then(i, 0) for i in range(5)], None, parallel=parallel)
    assert outcomes == [(True, i) for i in range(5)]


def test_a_worker_killed_by_a_signal_is_reported():
    outcomes = budget.run_all(
        [lambda: os.kill(os.getpid(), signal.SIGTERM), _sleep_then(1, 0)], 30, parallel=2
    )
    ok, error = outcomes[0]
    assert not ok and "died (signal SIGTERM)" in str(error)
    assert outcomes[1] == (True, 1)


def test_no_worker_is_left_behind_when_a_callback_raises():
    def stop(i, outcome):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        budget.run_all([_sleep_then(0, 0), _sleep_then(1, 30)], 60, parallel=2, done=stop)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child of this process is left, running or unreaped


def test_check_claims_in_parallel_equals_one_by_one():
    claims = load_claims(EXAMPLES)
    one = check_claims(claims, seed=3, timeout=60, parallel=1)
    two = check_claims(claims, seed=3, timeout=60, parallel=2)
    assert [r.to_json() for r in one] == [r.to_json() for r in two]
    assert {r.verdict for r in one} == {"pass", "fail"}


def test_check_claims_reports_parse_errors_in_place():
    claims = [
        Claim("good", "sum(softmax(z)) == 1", {"z": "real[n]"}),
        Claim("bad", "softmax(z) ==", {"z": "real[n]"}),
        Claim("wrong", "sum(softmax(z)) == 2", {"z": "real[n]"}),
    ]
    seen: list[int] = []
    results = check_claims(claims, timeout=60, parallel=2, done=lambda i, r: seen.append(i))
    assert [r.verdict for r in results] == ["pass", "error", "fail"]
    assert sorted(seen) == [0, 1, 2]


def test_verify_output_does_not_depend_on_jobs():
    runner = CliRunner()
    outs = [runner.invoke(cli, ["verify", str(EXAMPLES), "-j", j]) for j in ("1", "2", "4")]
    assert all(o.exit_code == 1 for o in outs)  # the file has deliberately wrong claims
    assert outs[0].output == outs[1].output == outs[2].output
    json_outs = [runner.invoke(cli, ["verify", "--json", str(EXAMPLES), "-j", j]) for j in "12"]
    assert json_outs[0].output == json_outs[1].output


TWO_NOTES = """
from engine.notes import Note, Section, Step

NOTE = Note(
    name="{name}",
    order={order},
    title="{name}",
    summary="Steps to check in parallel.",
    vars={{"z": "real[n]", "y": "simplex[n]"}},
    defs={{"p": "softmax(z)"}},
    sections=(
        Section(
            "S",
            Step("sum(p) == 1", "normalization", label="norm"),
            Step("grad(cross_entropy(p, y), z) == p - y", "gradient", label="grad"),
            Step("grad(logsumexp(z), z) == p", "logsumexp", label="lse"),
        ),
    ),
)
"""


def test_build_output_does_not_depend_on_jobs(tmp_path, monkeypatch):
    source = tmp_path / "derivations"
    source.mkdir()
    for order, name in enumerate(("first", "second"), 1):
        (source / f"{name}.py").write_text(TWO_NOTES.format(name=name, order=order))
    monkeypatch.setattr(build_mod, "DERIVATIONS", source)
    trees = []
    for parallel in (1, 2):
        out = tmp_path / f"out{parallel}"
        report = build(
            formats=("md", "tex"),
            out=out,
            use_cache=False,
            directory=source,
            parallel=parallel,
        )
        assert report.failures == [] and report.steps == 6
        trees.append({p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert trees[0] == trees[1] and trees[0]


def test_non_tty_build_prints_one_line_per_note(tmp_path, monkeypatch):
    source = tmp_path / "derivations"
    source.mkdir()
    for order, name in enumerate(("first", "second"), 1):
        (source / f"{name}.py").write_text(TWO_NOTES.format(name=name, order=order))
    monkeypatch.setattr(build_mod, "DERIVATIONS", source)
    result = CliRunner().invoke(cli, ["build", "--out", str(tmp_path / "out"), "--no-cache"])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[:3] == [
        "first: 3 steps checked",
        "second: 3 steps checked",
        "rendering 2 note(s)",
    ]
    assert all(line == line.strip() for line in lines)  # no right-aligned labels, no bar
