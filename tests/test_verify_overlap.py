"""The two routes side by side: in a lone budgeted worker the numeric route runs in a second
process while the exact route runs (engine.budget.beside), with the same result as in turn."""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path

import pytest

import engine
from engine import budget
from engine.claims import load_claims

core = importlib.import_module("engine.verify.core")  # engine.verify is the API function

CORPUS = Path(__file__).parent / "corpus"
EXAMPLES = Path(__file__).parent.parent / "examples"
# every 12th claim of the corpus and the examples: true and false, exact and numeric failures
SAMPLE = [
    c
    for path in [*sorted(CORPUS.glob("*.toml")), EXAMPLES / "claims.toml"]  # (not derive specs)
    for c in load_claims(path)
][::12]
VARS = {"z": "real[n]", "y": "simplex[n]"}


def _json(result) -> str:
    return json.dumps(result.to_json(), sort_keys=True)


def test_the_sample_has_true_and_false_claims():
    assert {c.expect for c in SAMPLE} == {"pass", "fail"} and len(SAMPLE) >= 20


@pytest.mark.parametrize("claim", SAMPLE, ids=[c.name for c in SAMPLE])
def test_side_by_side_gives_the_result_of_one_route_after_the_other(claim):
    in_turn = claim.check(seed=0)  # here, no worker: the routes run one after the other
    side_by_side = claim.check(seed=0, timeout=300)
    assert _json(side_by_side) == _json(in_turn)
    assert side_by_side.verdict == claim.expect


@pytest.mark.parametrize(
    "equation",
    [
        "grad(cross_entropy(softmax(z), y), z) == softmax(z) - y",  # pass
        "grad(cross_entropy(softmax(z), y), z) == softmax(z) + y",  # both routes fail
        "grad(sum(log(z)), z) == 1 / z",  # exact passes, the numeric route raises (not finite)
        "grad(sum(sqrt(z)), z) == z",  # an error before either route
        "sum(softmax(z)) == 1 + 1e-20",  # exact fails, numeric passes: the routes disagree
    ],
)
def test_every_outcome_is_the_same_side_by_side(equation):
    assert _json(engine.verify(equation, VARS, timeout=120)) == _json(engine.verify(equation, VARS))


def _recording(monkeypatch, tmp_path: Path) -> Path:
    """Each route appends 'route pid' to a file (the workers inherit the patch)."""
    log = tmp_path / "routes.log"

    def wrap(route: str, real):
        def run(*args, **kwargs):
            with log.open("a") as f:
                f.write(f"{route} {os.getpid()}\n")
            return real(*args, **kwargs)

        return run

    monkeypatch.setattr(core, "exact_check", wrap("exact", core.exact_check))
    monkeypatch.setattr(core, "numeric_check", wrap("numeric", core.numeric_check))
    return log


def _routes(log: Path) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}
    for line in log.read_text().splitlines():
        route, pid = line.split()
        seen.setdefault(route, set()).add(int(pid))
    return seen


def test_the_numeric_route_runs_in_a_second_process_only_in_a_lone_worker(monkeypatch, tmp_path):
    log = _recording(monkeypatch, tmp_path)
    equation = "grad(cross_entropy(softmax(z), y), z) == softmax(z) - y"
    assert engine.verify(equation, VARS, timeout=120).passed
    seen = _routes(log)
    assert len(seen["exact"]) == 1 and len(seen["numeric"]) == 1
    spare_core = len(os.sched_getaffinity(0)) >= 2
    assert (seen["exact"] != seen["numeric"]) == spare_core  # side by side given a second core
    assert os.getpid() not in seen["exact"] | seen["numeric"]
    log.unlink()
    assert engine.verify(equation, VARS).passed  # no budget: both here, one after the other
    assert _routes(log) == {"exact": {os.getpid()}, "numeric": {os.getpid()}}
    log.unlink()
    claims = [c for c in SAMPLE if c.expect == "pass"][:2]
    from engine.claims import check_claims

    check_claims(claims, timeout=120, parallel=2)  # workers side by side already: in turn
    for route, pids in _routes(log).items():
        assert len(pids) == 2, route  # one process per claim, running both of its routes


def test_after_a_failing_exact_route_the_numeric_route_runs_without_the_discount(
    monkeypatch, tmp_path
):
    discounts = tmp_path / "discounts.log"
    real = core.numeric_check

    def numeric(*args, **kwargs):
        with discounts.open("a") as f:
            f.write(f"{args[-1]} {os.getpid()}\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(core, "numeric_check", numeric)
    result = engine.verify("sum(softmax(z)) == 1 + 1e-20", VARS, timeout=120)
    assert result.verdict == "fail"
    runs = [line.split() for line in discounts.read_text().splitlines()]
    # the one started ahead assumed a passing exact route; the one reported ran after it failed
    assert [flag for flag, _ in runs][-1] == "False"
    assert result.checks[0].method == "exact" and not result.checks[0].passed


@pytest.fixture
def slow_numeric_route(monkeypatch):
    """The numeric route hangs on claims with a variable named Q (in its own process when run
    side by side: the worker then waits in core._numeric_result)."""
    real = core.numeric_check

    def slow(lhs, rhs, used, *args, **kwargs):
        if "Q" in used:
            time.sleep(3600)
        return real(lhs, rhs, used, *args, **kwargs)

    monkeypatch.setattr(core, "numeric_check", slow)


def test_a_deadline_while_waiting_for_the_numeric_route_names_it(slow_numeric_route):
    result = engine.verify("sum(Q) == sum(Q)", {"Q": "real[n]"}, timeout=2)
    assert result.verdict == "error"
    assert "ran past its 2 s budget (--timeout) in the numeric route" in result.message


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_the_second_process_dies_with_the_worker_at_its_deadline(tmp_path):
    pid_file = tmp_path / "beside.pid"

    def job():
        ahead = budget.beside(lambda: time.sleep(3600))
        pid_file.write_text(str(ahead.pid) if ahead else "none")
        while True:
            pass

    with pytest.raises(budget.BudgetExceeded):
        budget.run(job, 1)
    text = pid_file.read_text()
    if text == "none":
        assert len(os.sched_getaffinity(0)) < 2  # no second core: nothing was started
        return
    end = time.monotonic() + 5
    while _alive(int(text)) and time.monotonic() < end:
        time.sleep(0.05)
    assert not _alive(int(text))


def test_beside_starts_nothing_outside_a_lone_worker():
    assert budget.beside(lambda: 1) is None  # the test process is no worker
    assert budget.run(lambda: budget.beside(lambda: 1) is None, 30) is (
        len(os.sched_getaffinity(0)) < 2
    )
    outcomes = budget.run_all([lambda: budget.beside(lambda: 1)] * 2, 30, parallel=2)
    assert outcomes == [(True, None), (True, None)]  # workers of run_all share the cores


def test_a_value_and_an_exception_come_back_from_beside():
    def job():
        ahead = budget.beside(lambda: os.getpid())
        failing = budget.beside(lambda: 1 / 0)
        if ahead is None or failing is None:
            return None  # one core: nothing is started beside
        raised = False
        try:
            failing.result()
        except ZeroDivisionError:
            raised = True
        value = ahead.result()
        ahead.cancel()  # harmless after result(): once done, cancel does nothing
        return value, ahead.pid, os.getpid(), raised

    outcome = budget.run(job, 30)
    if len(os.sched_getaffinity(0)) < 2:
        assert outcome is None
        return
    value, pid, worker, raised = outcome
    assert raised and value == pid and pid not in (worker, os.getpid())
