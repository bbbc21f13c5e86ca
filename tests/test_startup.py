"""Start-up cost: the command line and `import engine` load only what they use."""

from __future__ import annotations

import subprocess
import sys

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
