"""Time and memory budgets: each check runs in a forked worker that is stopped at its deadline.

SymPy and mpmath can work for minutes on a short input (nested powers of chained definitions,
`log_softmax` inside an exponent) and cannot be interrupted from inside. A forked child can: the
parent waits for its result until the deadline, then asks the child where it is (a Python stack
dumped by `faulthandler` from a signal handler, which works even inside C code), kills it and
raises `BudgetExceeded` naming the stage that ran out. Fork copies the parent's imported modules,
so the job is any callable (no pickling of the job); only its result or exception is pickled back.
"""

from __future__ import annotations

import contextlib
import contextvars
import faulthandler
import gc
import math
import os
import pickle
import re
import resource
import select
import signal
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

import sympy

from engine.expr import EngineError, Expr, format_shape
from engine.limits import DEFAULT_TIMEOUT  # noqa: F401 - budget.DEFAULT_TIMEOUT
from engine.verify import Result

T = TypeVar("T")

DEFAULT_MEMORY = 4 * 2**30  # bytes of address space a worker may add to what it inherits
WARM_UP_VARS = {"z": "real[n]", "y": "simplex[n]"}
STACK_GRACE = 1.0  # seconds the parent waits for the child's stack dump before killing it


class BudgetExceeded(EngineError):
    """A check that ran past its time or memory budget: an `error`, with the stage named."""

    def __init__(self, message: str, stage: str = "the check"):
        super().__init__(message)
        self.stage = stage


class WorkerCrashed(Exception):
    """The worker died without a result (a signal other than the deadline's): an engine bug."""


# Where the child was when its time ran out: the first rule that matches some frame of its stack
# (file path and function name) names the stage, with advice on how to shrink the input.
STAGES: tuple[tuple[str, str, str], ...] = (
    (
        r"engine/verify.*(exact|rational)",
        "exact route (SymPy at small sizes)",
        "shrink it: fewer nested functions, fewer chained definitions, smaller exponents",
    ),
    (
        r"engine/verify.*(numeric|probe|full_check|noise|localize)",
        "numeric route (NumPy)",
        "use smaller --size values or fewer nested grad()/jacobian()",
    ),
    (r"engine/verify", "verification", "shrink it: fewer nested functions or definitions"),
    (
        r"engine/notes/check.*(index|identity)",
        "exact check of the step",
        "split the step into smaller steps",
    ),
    (
        r"engine/(parser|claims)|tomllib",
        "parse",
        "shorten the formula, the definitions or the claims file",
    ),
    (
        r"engine/derive/simplify",
        "simplification of the derivative",
        "derive a smaller expression, or name parts of it with --def",
    ),
    (
        r"engine/derive",
        "derivation (reverse mode)",
        "derive a smaller expression, or name parts of it with --def",
    ),
    (r"engine/export", "code export", "derive a smaller expression"),
)

# The budget of callers that take no timeout argument (a note build's steps): none in library
# use, where a caller may count or patch what a step does; the command line sets one.
_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "llm_math_timeout", default=None
)


def current_timeout() -> float | None:
    """The budget in force (seconds, None for none): None unless set by `timeout_set`."""
    return _timeout.get()


@contextlib.contextmanager
def timeout_set(seconds: float | None) -> Iterator[None]:
    """Make `seconds` the budget of every `current_timeout()` caller inside the block."""
    token = _timeout.set(seconds)
    try:
        yield
    finally:
        _timeout.reset(token)


def run(
    job: Callable[[], T],
    timeout: float | None,
    what: str = "the check",
    memory: int | None = DEFAULT_MEMORY,
) -> T:
    """`job()`, computed in a forked worker within `timeout` seconds and `memory` extra bytes.

    Returns its value or raises its exception (engine errors keep their type and message); past
    the deadline raises BudgetExceeded. `timeout=None` runs `job` here, unbounded.
    """
    global _lone_worker
    if timeout is None or not hasattr(os, "fork"):
        return job()
    if not (isinstance(timeout, int | float) and timeout > 0 and math.isfinite(timeout)):
        raise EngineError(f"the time budget must be a positive number of seconds, got {timeout!r}")
    _before_fork()
    result_r, result_w = os.pipe()
    stack_r, stack_w = os.pipe()
    with warnings.catch_warnings():
        # JAX, if imported, warns at every fork; the worker never calls into JAX.
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        pid = os.fork()
    if pid == 0:  # the worker: never returns
        os.close(result_r)
        os.close(stack_r)
        _lone_worker = True  # the only check running: `beside` may use a second core
        _worker(job, result_w, stack_w, memory)
    os.close(result_w)
    os.close(stack_w)
    try:
        return _wait(pid, result_r, stack_r, timeout, what)
    finally:
        _reap(pid)
        os.close(result_r)
        os.close(stack_r)


def run_all(
    jobs: list[Callable[[], T]],
    timeout: float | None,
    what: str = "the check",
    parallel: int = 1,
    memory: int | None = DEFAULT_MEMORY,
    done: Callable[[int, tuple[bool, T | BaseException]], None] | None = None,
) -> list[tuple[bool, T | BaseException]]:
    """Every job, up to `parallel` forked workers at a time, each within its own `timeout`.

    Returns, in the order of `jobs`, `(True, value)` or `(False, exception)` — the exception
    `run` would raise for that job (BudgetExceeded past its deadline). `done(i, outcome)` is
    called as job i finishes, in completion order. With `parallel` 1 (or no fork) this is
    `run` for each job in turn. Workers are forked from this (single-threaded) process only;
    Ctrl-C kills them all.
    """
    outcomes: list[tuple[bool, T | BaseException] | None] = [None] * len(jobs)

    def settle(i: int, fn: Callable[[], T]) -> None:
        try:
            outcomes[i] = (True, fn())
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 - returned, as the caller asked
            outcomes[i] = (False, e)
        if done:
            done(i, outcomes[i])

    if parallel <= 1 or len(jobs) <= 1 or not hasattr(os, "fork"):
        for i, job in enumerate(jobs):
            settle(i, lambda job=job: run(job, timeout, what, memory))
        return outcomes  # type: ignore[return-value]
    if timeout is not None and not (
        isinstance(timeout, int | float) and timeout > 0 and math.isfinite(timeout)
    ):
        raise EngineError(f"the time budget must be a positive number of seconds, got {timeout!r}")
    _warm_up()
    pending = list(range(len(jobs)))[::-1]
    running: dict[int, _Running] = {}  # result pipe -> worker
    try:
        while pending or running:
            while pending and len(running) < parallel:
                w = _start(pending.pop(), jobs, memory, timeout)
                running[w.result_r] = w
            now = time.monotonic()
            soonest = min(w.deadline for w in running.values())
            wait = None if soonest == math.inf else max(0.0, soonest - now)
            ready, _, _ = select.select(list(running), [], [], wait)
            for fd in ready:
                w = running[fd]
                chunk = os.read(fd, 1 << 20)
                if chunk:
                    w.chunks.append(chunk)
                    continue
                del running[fd]
                settle(w.index, lambda w=w: _finish(w, what))
            now = time.monotonic()
            for fd, w in list(running.items()):
                if w.deadline <= now:
                    del running[fd]
                    error = _over_budget(w.pid, w.stack_r, timeout or 0.0, what)
                    _close(w)
                    settle(w.index, lambda error=error: _raise(error))
    finally:
        for w in running.values():
            _reap(w.pid)
            _close(w)
    return outcomes  # type: ignore[return-value]


class _Running:
    """A worker of `run_all`: its job's index, process, pipes, deadline and output so far."""

    def __init__(self, index: int, pid: int, result_r: int, stack_r: int, deadline: float):
        self.index, self.pid, self.result_r, self.stack_r = index, pid, result_r, stack_r
        self.deadline = deadline
        self.chunks: list[bytes] = []


def _start(index: int, jobs: list[Callable[[], T]], memory: int | None, timeout) -> _Running:
    result_r, result_w = os.pipe()
    stack_r, stack_w = os.pipe()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        pid = os.fork()
    if pid == 0:
        os.close(result_r)
        os.close(stack_r)
        _worker(jobs[index], result_w, stack_w, memory)
    os.close(result_w)
    os.close(stack_w)
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    return _Running(index, pid, result_r, stack_r, deadline)


def _finish(w: _Running, what: str):
    status = _reap(w.pid)
    _close(w)
    if not w.chunks:
        raise _died(status, what)
    kind, value = pickle.loads(b"".join(w.chunks))
    if kind == "raise":
        raise value
    return value


def _close(w: _Running) -> None:
    for fd in (w.result_r, w.stack_r):
        with contextlib.suppress(OSError):
            os.close(fd)


def _raise(error: BaseException):
    raise error


_warm = False
_forked = False  # `run` has forked a worker before


def _before_fork() -> None:
    """Before `run` forks: the first worker is forked at once, later ones from a warmed parent.

    A warm-up checks a claim here, which pays only when several workers follow: one check (a
    claim or a derivation from the command line) would otherwise be done twice, in this
    process and in the worker (about 0.1 s of `llm-math verify`'s 0.8 s). The first time, the
    objects loaded so far are frozen all the same (`gc.freeze`): the worker's collector then
    leaves their pages uncopied, and this process's collections, the last ones at exit too,
    skip them.
    """
    global _forked
    if _forked:
        _warm_up()
    elif not _warm:
        gc.freeze()
    _forked = True


def _warm_up() -> None:
    """Once per process, before the first fork: load what SymPy and NumPy load lazily.

    Otherwise every worker loads it again and throws it away: a cold worker took 0.34 s on a
    gradient claim that a worker forked from a warmed parent checks in 0.13 s.
    """
    global _warm
    if _warm:
        return
    _warm = True
    from engine.verify import verify

    try:
        verify("grad(cross_entropy(softmax(z), y), z) == softmax(z) - y", WARM_UP_VARS)
    except Exception:  # noqa: BLE001, S110 - warming up is an optimization only
        pass
    gc.freeze()  # objects made so far stay untouched by the workers' collector: fewer page copies


# ---------------------------------------------------------------- a second core for one check

_lone_worker = False  # this process is the worker of `run`: no other check of ours is running
PR_SET_PDEATHSIG = 1  # Linux prctl: a signal the kernel sends a process when its parent dies


class Beside:
    """A job running in a child forked by `beside`: `result()` waits for its value or raises its
    exception, once; `cancel()` kills it if it still runs (any number of times, before or after
    `result()`)."""

    def __init__(self, pid: int, result_r: int, what: str):
        self.pid, self.result_r, self.what = pid, result_r, what
        self.done = False

    def result(self):
        try:
            with os.fdopen(self.result_r, "rb", closefd=False) as f:
                data = f.read()
        finally:
            status = self.cancel()
        if not data:
            raise _died(status, self.what)
        kind, value = pickle.loads(data)
        if kind == "raise":
            raise value
        return value

    def cancel(self) -> int | None:
        if self.done:
            return None
        self.done = True
        status = _reap(self.pid)
        with contextlib.suppress(OSError):
            os.close(self.result_r)
        return status


def beside(job: Callable[[], T], what: str = "the check") -> Beside | None:
    """`job()` started now in a forked child, beside what this process does next; None (the
    caller runs `job` itself) unless this is the lone worker of `run` on a machine with a core
    to spare and the child can be tied to this process.

    The child is killed with this process (PR_SET_PDEATHSIG): a deadline that kills the worker
    kills it too. It inherits the worker's memory limit and adds none of its own.
    """
    global _lone_worker
    if not _lone_worker:
        return None
    try:
        import ctypes

        if len(os.sched_getaffinity(0)) < 2:
            return None
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):  # not Linux
        return None
    parent = os.getpid()
    result_r, result_w = os.pipe()
    stack_r, stack_w = os.pipe()  # _worker's stack dump goes nowhere: no one asks this child
    os.close(stack_r)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        pid = os.fork()
    if pid == 0:
        os.close(result_r)
        _lone_worker = False
        if prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0 or os.getppid() != parent:
            os._exit(70)  # cannot be tied to the worker, or it is gone already: no result
        _worker(job, result_w, stack_w, None)
    os.close(result_w)
    os.close(stack_w)
    return Beside(pid, result_r, what)


def _worker(job: Callable[[], object], result_w: int, stack_w: int, memory: int | None) -> None:
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C ends the worker; the parent reports
        faulthandler.register(signal.SIGUSR1, file=stack_w, all_threads=False, chain=False)
        _limit_memory(memory)
        try:
            payload = ("value", job())
        except BaseException as e:  # noqa: BLE001 - every outcome goes back to the parent
            payload = ("raise", _portable(e))
        try:
            data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001 - an unpicklable value is an engine bug
            data = pickle.dumps(("raise", WorkerCrashed(f"unpicklable result: {e}")))
        with os.fdopen(result_w, "wb") as f:
            f.write(data)
    except BaseException:  # noqa: BLE001 - the worker must exit without running parent code
        code = 70
    finally:
        os._exit(code)


def _portable(e: BaseException) -> BaseException:
    """`e` if it survives pickling with its type and message, else a plain stand-in."""
    try:
        clone = pickle.loads(pickle.dumps(e))
        if type(clone) is type(e) and str(clone) == str(e):
            return e
    except Exception:  # noqa: BLE001, S110 - fall through to the stand-in
        pass
    if isinstance(e, EngineError):
        return EngineError(str(e))
    if isinstance(e, MemoryError | RecursionError | KeyboardInterrupt):
        return type(e)(str(e))
    return WorkerCrashed(f"{type(e).__name__}: {e}")


def _limit_memory(memory: int | None) -> None:
    """Cap the worker's address space at what it inherited plus `memory` bytes."""
    if memory is None:
        return
    try:
        with open("/proc/self/statm") as f:
            inherited = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = inherited + memory
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if soft == resource.RLIM_INFINITY or limit < soft:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError):
        pass  # no /proc or no permission: time still bounds the worker


def _wait(pid: int, result_r: int, stack_r: int, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _over_budget(pid, stack_r, timeout, what)
        ready, _, _ = select.select([result_r], [], [], left)
        if not ready:
            continue
        chunk = os.read(result_r, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    status = _reap(pid)
    if not chunks:
        raise _died(status, what)
    kind, value = pickle.loads(b"".join(chunks))
    if kind == "raise":
        raise value
    return value


def _reap(pid: int) -> int | None:
    """Kill the worker if it is still running; its wait status (None if already reaped)."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        os.kill(pid, signal.SIGKILL)
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None


def _died(status: int | None, what: str) -> Exception:
    sig = os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None
    if sig == signal.SIGINT:
        return KeyboardInterrupt()
    if sig == signal.SIGKILL:  # the kernel's out-of-memory killer
        return BudgetExceeded(
            f"{what} ran out of memory (the worker was killed); shrink the claim or the sizes",
            "memory",
        )
    return WorkerCrashed(f"the worker checking {what} died ({_status_text(status)})")


def _status_text(status: int | None) -> str:
    if status is None:
        return "unknown status"
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _over_budget(pid: int, stack_r: int, timeout: float, what: str) -> BudgetExceeded:
    stage, advice = stage_of(_stack_dump(pid, stack_r))
    _reap(pid)
    return BudgetExceeded(
        f"out of time: {what} ran past its {timeout:g} s budget (--timeout) in the {stage}; "
        f"{advice}",
        stage,
    )


def _stack_dump(pid: int, stack_r: int) -> str:
    """The child's Python stack, dumped by faulthandler on SIGUSR1 ('' if it does not come)."""
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return ""
    text = b""
    end = time.monotonic() + STACK_GRACE
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([stack_r], [], [], min(left, 0.05))
        if ready:
            chunk = os.read(stack_r, 1 << 16)
            if not chunk:
                break
            text += chunk
        elif text:  # the dump is written in one go: a pause after some text means it is done
            break
    return text.decode("utf-8", "replace")


_FRAME = re.compile(r'File "([^"]*)", line \d+ in (\S+)')


def stage_of(stack: str) -> tuple[str, str]:
    """(stage, advice) for a faulthandler stack dump, by the first rule of STAGES it matches."""
    frames = [f"{path.replace(os.sep, '/')}:{fn}" for path, fn in _FRAME.findall(stack)]
    for pattern, stage, advice in STAGES:
        if any(re.search(pattern, frame) for frame in frames):
            return stage, advice
    return "check", "shrink the input"


# ---------------------------------------------------------------- array sizes

MAX_ENTRIES = 2**25  # entries of any one array the numeric route would build (512 MiB complex)
UNGIVEN_SIZE = 64  # a bound on the numeric route's own size values (--size not given)


def check_entries(exprs: Iterable[Expr], numeric_sizes: Mapping[str, int] | None) -> None:
    """Refuse, before any array is built, a claim whose arrays at the numeric sizes are too big.

    Every node of the trees counts (an `outer(z, z)` inside a gradient is built as well); sizes
    not given take UNGIVEN_SIZE, at least the value the numeric route gives them.
    """
    given = dict(numeric_sizes or {})
    seen: set[tuple] = set()
    for expr in exprs:
        for node in expr.walk():
            if node.shape in seen:
                continue
            seen.add(node.shape)
            entries = 1
            for d in node.shape:
                subs = {s: sympy.Integer(given.get(s.name, UNGIVEN_SIZE)) for s in d.free_symbols}
                value = d.xreplace(subs)
                if value.is_Integer:
                    entries *= int(value)
            if entries > MAX_ENTRIES:
                sizes = ", ".join(f"{k}={v}" for k, v in given.items()) or "the default sizes"
                raise EngineError(
                    f"at {sizes} an array of shape {format_shape(node.shape)} would have "
                    f"{entries:.3g} entries (limit {MAX_ENTRIES}); use smaller --size values"
                )


def result_within(job: Callable[[], Result], name: str, timeout: float | None, what: str) -> Result:
    """`run(job, ...)` for a job that returns a verification Result: over budget, an `error`."""
    try:
        return run(job, timeout, what)
    except BudgetExceeded as e:
        return Result(name, "error", str(e))
