"""The build cache: records that each certify exactly one claim, validated before use."""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import mpmath
import numpy as np
import sympy

from engine.notes.files import read_regular, write_atomic  # noqa: F401 - used and re-exported
from engine.notes.model import Note, Step
from engine.verify import CheckReport, Result

RECORD_FORMAT = 2  # bump when the record layout changes: older records are then discarded
MAX_RECORD_BYTES = 1 << 20  # a step record is a few hundred bytes; anything larger is corrupt
MAX_FIGURE_BYTES = 32 << 20
SVG_ROOT_TAGS = ("svg", "{http://www.w3.org/2000/svg}svg")
# A cached pass must say how it was verified: both routes, every one of them passed.
REQUIRED_METHODS = frozenset({"exact", "numeric"})
CHECK_FIELDS = frozenset({"method", "passed", "detail", "max_error"})


# ---------------------------------------------------------------- the engine's fingerprint


def checker_sources(start: Path | None = None, root: Path | None = None) -> list[Path]:
    """The engine source files a check can run: check.py and everything it imports from the
    engine, transitively (found statically, lazy imports inside functions and relative imports
    included).

    The code generator, `derive`, the renderer and the CLI are not among them, so editing
    those does not throw away cached verification results. (`start` and `root`, the engine
    package's directory, are for tests.)
    """
    root = root or Path(__file__).resolve().parent.parent
    todo, seen = [start or Path(__file__).resolve().parent / "check.py"], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            for base, parts in _imported(node, path, root):
                for candidate in (
                    base.joinpath(*parts).with_suffix(".py") if parts else base / "__init__.py",
                    base.joinpath(*parts, "__init__.py"),
                ):
                    if candidate.exists():
                        todo.append(candidate.resolve())
    return sorted(seen)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` except those under `if TYPE_CHECKING:` (imports for annotations
    only, never run, so they are not part of what a check executes)."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _imported(node: ast.AST, path: Path, root: Path) -> list[tuple[Path, list[str]]]:
    """(directory, module path parts) of each engine module or package `node` may import."""
    if isinstance(node, ast.Import):
        names = [a.name.split(".") for a in node.names]
        return [(root, n[1:]) for n in names if n[0] == "engine" and len(n) > 1]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level == 0:
        parts = (node.module or "").split(".")
        if parts[0] != "engine":
            return []
        # `from engine import verify` is verify, not the whole package's __init__.
        named = [(root, [*parts[1:], a.name]) for a in node.names]
        return ([(root, parts[1:])] if len(parts) > 1 else []) + named
    else:  # relative: `from . import x`, `from ..verify import y`
        base = path.parent
        for _ in range(node.level - 1):
            base = base.parent
        if not base.is_relative_to(root):
            return []
        parts = node.module.split(".") if node.module else []
    return [(base, parts)] + [(base, [*parts, a.name]) for a in node.names]


def engine_fingerprint() -> str:
    """A hash of the checker's engine sources (see `checker_sources`) and of the Python, SymPy,
    NumPy and mpmath versions: a change to any of them invalidates every cached result."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    python = ".".join(map(str, sys.version_info[:2]))
    versions = (
        f"python {python} sympy {sympy.__version__} numpy {np.__version__} "
        f"mpmath {mpmath.__version__}"
    )
    h.update(versions.encode())
    for path in checker_sources():
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------- what a record certifies


def _side_key(side: Any, note_source: str) -> str:
    if isinstance(side, str):
        return "text:" + side
    if isinstance(side, sympy.Basic):
        return "sympy:" + sympy.srepr(side)
    # A callable: its source and the whole module's source (closures may use module names).
    try:
        src = inspect.getsource(side)
    except (OSError, TypeError):
        src = repr(side)
    return "callable:" + src + hashlib.sha256(note_source.encode()).hexdigest()


def step_claim(note: Note, step: Step, fingerprint: str, note_source: str = "") -> dict[str, Any]:
    """What a cached result of `step` certifies: its claim and kind, the note's declarations
    and seed, and the engine it was checked with (as plain JSON data)."""
    lhs, rhs = step.sides()
    claim = {
        "format": RECORD_FORMAT,
        "engine": fingerprint,
        "kind": step.resolved_kind,
        "lhs": _side_key(lhs, note_source),
        "rhs": _side_key(rhs, note_source),
        "vars": sorted(note.vars.items()),
        "defs": sorted(note.defs.items()),
        "arrays": sorted(note.arrays.items()),
        "indices": sorted(note.indices.items()),
        "params": sorted(note.params.items()),
        "seed": note.seed,
    }
    if step.numeric is not None:  # only then, so records of other steps keep their keys
        claim["numeric"] = _side_key(step.numeric, note_source)
    if note.sizes:  # only when declared, so the records of notes without size relations stay
        claim["sizes"] = sorted(note.sizes.items())
    return json.loads(_canonical(claim))  # tuples become lists, as they come back from disk


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, ensure_ascii=True, allow_nan=False)


def claim_key(claim: dict[str, Any]) -> str:
    """The file name (a hash) under which the record of `claim` is stored."""
    return hashlib.sha256(_canonical(claim).encode()).hexdigest()


def step_key(note: Note, step: Step, fingerprint: str, note_source: str = "") -> str:
    """The cache key of a step: the hash of what its record certifies (see `step_claim`)."""
    return claim_key(step_claim(note, step, fingerprint, note_source))


def _checks_of(result: Any) -> tuple[CheckReport, ...] | None:
    """The checks of a stored passing result, or None if it is not exactly that."""
    if not isinstance(result, dict) or result.get("verdict") != "pass":
        return None
    checks = result.get("checks")
    if not isinstance(checks, list) or not checks:
        return None
    out = []
    for c in checks:
        if not isinstance(c, dict) or set(c) != CHECK_FIELDS:
            return None
        method, passed, detail, error = c["method"], c["passed"], c["detail"], c["max_error"]
        if not (isinstance(method, str) and isinstance(detail, str) and detail and passed is True):
            return None
        if isinstance(error, bool) or not isinstance(error, int | float):
            return None
        if not (math.isfinite(error) and error >= 0):
            return None
        out.append(CheckReport(method, True, detail, float(error)))
    if not REQUIRED_METHODS <= {c.method for c in out}:
        return None
    return tuple(out)


# ---------------------------------------------------------------- files


def remove_any(path: Path) -> None:
    """Remove whatever is at `path` (a file, a link, a directory tree); nothing if absent."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def make_directory(directory: Path, root: Path) -> bool:
    """Make `directory` (at or under the cache root `root`) a directory, replacing whatever
    non-directory stands in the way; False if that is not possible (the cache is then skipped).

    The cache root belongs to llm-math: a corrupted cache is rebuilt, not reported.
    """
    try:
        chain = [root, *(root / p for p in _prefixes(directory.relative_to(root)))]
        for p in chain:
            if os.path.lexists(p) and not p.is_dir():
                p.unlink()
            p.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError):
        return False
    return True


def _prefixes(rel: Path) -> list[Path]:
    parts = rel.parts
    return [Path(*parts[: k + 1]) for k in range(len(parts))]


# ---------------------------------------------------------------- step results


class ResultCache:
    """Passing results on disk, one JSON record per step: `{"certifies": claim, "result": ...}`.

    A record is used only if it parses, has exactly that layout, certifies exactly the claim
    being checked (claim text, kind, declarations, seed, engine fingerprint) and reports a pass
    by every route. Anything else is ignored, the step is checked again and the record
    replaced. Failures are never stored.
    """

    def __init__(self, directory: Path | None, root: Path | None = None):
        self.directory = directory
        self.root = root if root is not None else directory
        self._ready = False

    def get(self, claim: dict[str, Any], name: str) -> Result | None:
        """The cached passing result for `claim` (renamed `name`), or None."""
        if self.directory is None:
            return None
        raw = read_regular(self.directory / f"{claim_key(claim)}.json", MAX_RECORD_BYTES)
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested beyond reason
            return None
        if not isinstance(data, dict) or set(data) != {"certifies", "result"}:
            return None
        try:
            if _canonical(data["certifies"]) != _canonical(claim):
                return None
        except (ValueError, TypeError, RecursionError):
            return None
        checks = _checks_of(data["result"])
        return None if checks is None else Result(name, "pass", "verified", None, checks)

    def put(self, claim: dict[str, Any], result: Result) -> None:
        """Store a passing result for `claim`; a cache that cannot be written is skipped."""
        if self.directory is None or not result.passed:
            return
        if not self._ready:
            self._ready = make_directory(self.directory, self.root or self.directory)
            if not self._ready:
                return
        path = self.directory / f"{claim_key(claim)}.json"
        record = {"certifies": claim, "result": result.to_json()}
        try:
            if os.path.lexists(path) and not path.is_file():
                remove_any(path)  # a directory, FIFO or dangling link where a record belongs
            write_atomic(path, _canonical(record).encode())
        except OSError:
            return


# ---------------------------------------------------------------- figures


def valid_svg(data: bytes | None) -> bool:
    """True if `data` is a non-empty XML document whose root element is <svg>."""
    if not data or len(data) > MAX_FIGURE_BYTES or b"<!ENTITY" in data:
        return False  # matplotlib declares no entities; a file that does is not one of ours
    try:
        root = ElementTree.fromstring(data)
    except (ElementTree.ParseError, ValueError, RecursionError):
        return False
    return root.tag in SVG_ROOT_TAGS


def valid_pdf(data: bytes | None) -> bool:
    """True if `data` starts with a PDF header and ends with an end-of-file marker."""
    if not data or len(data) > MAX_FIGURE_BYTES:
        return False
    return data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]


class FigureCache:
    """SVG and PDF bytes of drawn figures, one directory per figure and source.

    Each directory holds `certifies.json` (what was drawn: note, figure, a hash of the note's
    source, engine and matplotlib), `f.svg` and `f.pdf`. A figure is taken from the cache only
    if all three are there, the record matches and both files are well-formed; else it is
    drawn again and the directory rewritten.
    """

    def __init__(self, directory: Path | None, root: Path | None = None):
        self.directory = directory
        self.root = root if root is not None else directory
        self._ready = False

    def get(self, claim: dict[str, Any]) -> tuple[bytes, bytes] | None:
        if self.directory is None:
            return None
        path = self.directory / claim_key(claim)
        record = read_regular(path / "certifies.json", MAX_RECORD_BYTES)
        try:
            if record is None or _canonical(json.loads(record)) != _canonical(claim):
                return None
        except (ValueError, TypeError, RecursionError):
            return None
        svg = read_regular(path / "f.svg", MAX_FIGURE_BYTES)
        pdf = read_regular(path / "f.pdf", MAX_FIGURE_BYTES)
        if not (valid_svg(svg) and valid_pdf(pdf)):
            return None
        return svg, pdf  # type: ignore[return-value]

    def put(self, claim: dict[str, Any], svg: bytes, pdf: bytes) -> None:
        if self.directory is None:
            return
        if not self._ready:
            self._ready = make_directory(self.directory, self.root or self.directory)
            if not self._ready:
                return
        path = self.directory / claim_key(claim)
        try:
            remove_any(path)  # only reached when the cached entry was missing or invalid
            path.mkdir()
            write_atomic(path / "f.svg", svg)
            write_atomic(path / "f.pdf", pdf)
            write_atomic(path / "certifies.json", _canonical(claim).encode())  # last: complete
        except OSError:
            return
