"""Start-up cost: the command line and `import engine` load only what they use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {name.split(".")[0] for name in out}


@pytest.mark.parametrize(
    "code",
    [
        "import engine",
        "import engine.api",
        "from engine import verify, derive, assert_claim",
        "import engine.verify, engine.derive.core, engine.parser",
        "from engine.claims import load_claims",
    ],
)
def test_engine_does_not_import_plotting_or_scipy(code: str):
    loaded = _modules_after(code)
    assert "matplotlib" not in loaded
    assert "scipy" not in loaded


def test_the_command_line_loads_no_engine_before_a_command_runs():
    loaded = _modules_after("import engine, engine.cli")
    assert not loaded & {"sympy", "numpy", "scipy", "matplotlib", "mpmath", "jinja2"}


def test_help_runs_without_sympy():
    code = (
        "import sys\n"
        "from engine.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "assert 'sympy' not in sys.modules, 'sympy'\n"
        "cli.main(['derive', '--help'], standalone_mode=False)\n"
        "assert 'sympy' not in sys.modules, 'sympy after derive --help'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_public_names_resolve_to_the_api():
    code = (
        "import engine.derive.core, engine.verify.core\n"  # subpackages imported first
        "import engine\n"
        "from engine import derive, verify\n"
        "assert callable(derive) and callable(verify)\n"
        "assert derive.__module__ == 'engine.api' and verify.__module__ == 'engine.api'\n"
        "assert engine.derive is derive and engine.verify is verify\n"
        "assert set(engine.__all__) <= set(dir(engine))\n"
        "for name in engine.__all__:\n    getattr(engine, name)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_list_reads_the_index_without_loading_the_engine(tmp_path):
    env = {**__import__("os").environ, "LLM_MATH_CACHE": str(tmp_path)}
    code = (
        "import sys\n"
        "from engine.cli import cli\n"
        "try:\n    cli.main(['list'], standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print('SYMPY' if 'sympy' in sys.modules else 'NO-SYMPY')\n"
    )

    def run() -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.splitlines()

    first, second = run(), run()
    assert first[-1] == "SYMPY"  # no index yet: the notes were loaded
    assert second[-1] == "NO-SYMPY"  # the index answered
    assert first[:-1] == second[:-1] and any("steps" in line for line in first)


def test_the_index_follows_the_note_sources(tmp_path):
    from engine.notes.listing import note_index

    src, cache = tmp_path / "derivations", tmp_path / "cache"
    src.mkdir()
    note = (
        "from engine.notes import Note, Section, Step\n"
        "NOTE = Note(name='tiny', order=1, title='{title}', summary='s', vars={{'z': 'real[n]'}},"
        " sections=(Section('S', Step('sum(softmax(z)) == 1', 'normalization', label='n')),))\n"
    )
    (src / "tiny.py").write_text(note.format(title="First"))
    assert note_index(src, cache) == [{"name": "tiny", "steps": 1, "title": "First"}]
    (src / "tiny.py").write_text(note.format(title="Second"))
    assert note_index(src, cache)[0]["title"] == "Second"  # a changed source is reloaded
    (cache / "notes-index.json").write_text('{"key": "x", "notes": [{"name": 1}]}')
    assert note_index(src, cache)[0]["title"] == "Second"  # a stale or corrupt index is ignored
    (cache / "notes-index.json").write_bytes(b"\xff\x00garbage")
    assert note_index(src, cache)[0]["name"] == "tiny"


# issue 13, verify start-up: one claim is checked once, in the worker; the engine loads frozen


def test_the_first_worker_is_forked_without_a_warm_up_and_the_second_after_one(monkeypatch):
    from engine import budget

    warmed: list[bool] = []
    monkeypatch.setattr(budget, "_forked", False)
    monkeypatch.setattr(budget, "_warm", False)
    monkeypatch.setattr(budget, "_warm_up", lambda: warmed.append(True))
    monkeypatch.setattr(budget.gc, "freeze", lambda: None)  # keep the test process collectable
    assert budget.run(lambda: 1, 30) == 1
    assert warmed == []  # one check alone: nothing checked here before the fork
    assert budget.run(lambda: 2, 30) == 2
    assert warmed == [True]  # several workers: the parent is warmed up once, before the second
    assert budget.run(lambda: 3, 30) == 3
    assert len(warmed) == 2  # _warm_up itself returns at once once done (it is stubbed here)


def test_verifying_one_claim_from_the_command_line_checks_it_only_in_the_worker():
    code = (
        "import gc, sys\n"
        "from engine.verify import core\n"
        "calls = []\n"
        "real = core.verify_sides\n"
        "core.verify_sides = lambda *a, **k: calls.append(1) or real(*a, **k)\n"
        "import engine.claims\n"
        "engine.claims.verify_sides = core.verify_sides\n"
        "from engine.cli import cli\n"
        "try:\n"
        "    cli.main(['verify', '--var', 'z=real[n]', '--var', 'y=simplex[n]',\n"
        "              'grad(cross_entropy(softmax(z), y), z) == softmax(z) - y'],\n"
        "             standalone_mode=False)\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        "print('PARENT-CHECKS', len(calls))\n"
        "print('GC', gc.isenabled(), gc.get_freeze_count() > 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "PASS claim" in out  # the worker checked it (both routes: the report names them)
    assert "exact at" in out and "numeric at" in out
    assert "PARENT-CHECKS 0" in out  # no warm-up check of the same claim in the parent
    assert "GC True True" in out  # the collector is back on; the loaded engine is frozen


def test_loading_the_engine_pauses_the_collector_and_restores_it():
    import gc

    from engine.cli_options import loading_the_engine

    assert gc.isenabled()
    with loading_the_engine():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with loading_the_engine():
            pass
        assert not gc.isenabled()  # a caller's own setting is kept
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("claim", "status", "said"),
    [
        ("grad(sum(z * z), z) == 2 * z", 0, "PASS claim"),
        ("grad(sum(z * z), z) == 3 * z", 1, "FAIL claim"),
        ("grad(sum(z * z), z) == 2 * w", 2, "w"),  # an unknown name: a one-line error
    ],
)
def test_the_command_exits_without_teardown_but_with_its_status_output_and_exit_handlers(
    tmp_path, claim, status, said
):
    """`engine.cli.main` ends with os._exit (the interpreter's teardown costs a tenth of a
    one-claim verify): the exit status is the command's, all output reaches a file (not a tty:
    buffered), and exit handlers run (a temporary directory's finalizer removes it)."""
    marker = tmp_path / "left-behind"
    code = (
        "import sys, tempfile, pathlib\n"
        f"keep = tempfile.TemporaryDirectory(dir={str(tmp_path)!r})\n"
        f"pathlib.Path(keep.name, 'x').write_text('x')\n"
        f"pathlib.Path({str(marker)!r}).write_text(keep.name)\n"
        "sys.argv = ['llm-math', 'verify', '--var', 'z=real[n]', sys.argv[1]]\n"
        "from engine.cli import main\n"
        "main()\n"
        "raise AssertionError('main returned')\n"
    )
    out_file = tmp_path / "out.txt"
    with out_file.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-c", code, claim], stdout=out, stderr=subprocess.PIPE, text=True
        )
    text = out_file.read_text() + proc.stderr
    assert proc.returncode == status, text
    assert said in text
    assert "Traceback" not in text
    if status != 2:
        assert text.rstrip().splitlines()[-1].startswith(f"{1 - status} passed, {status} failed")
    assert not Path(marker.read_text()).exists()  # the finalizer ran
