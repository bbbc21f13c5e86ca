"""The build's output directory: a manifest of what the build wrote, and nothing else touched."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from engine.expr import EngineError
from engine.notes.cache import MAX_RECORD_BYTES, read_regular, write_atomic

MANIFEST = ".llm-math-manifest.json"
# The formats that are not committed (output/pdf/ and output/html/ are git-ignored) are listed in
# a second, git-ignored manifest, so that building them leaves the committed one unchanged.
LOCAL_MANIFEST = ".llm-math-manifest.local.json"
LOCAL_FORMATS = ("pdf", "html")
# Every path a build can write, relative to the output directory, by format.
LAYOUT = {
    "md": re.compile(r"README\.md|md/[^/.][^/]*\.md|md/figures/[^/.][^/]*\.svg"),
    "tex": re.compile(r"tex/[^/.][^/]*\.tex|tex/figures/[^/.][^/]*\.pdf"),
    "pdf": re.compile(r"pdf/[^/.][^/]*\.(?:pdf|log)"),
    "html": re.compile(
        r"html/[^/.][^/]*\.(?:html|css)|html/figures/[^/.][^/]*\.svg|html/mathjax/tex-svg-full\.js"
    ),
}


class OutputError(EngineError):
    """An output directory the build will not write into, or cannot."""


def format_of(rel: str) -> str | None:
    """The format (md, tex, pdf, html) of a relative output path; None if no build writes it."""
    for fmt, pattern in LAYOUT.items():
        if pattern.fullmatch(rel):
            return fmt
    return None


def read_manifest(root: Path) -> set[str] | None:
    """The paths listed in `root`'s manifest and its local manifest (only those a build can
    write); None if there is no manifest or it is not one."""
    listed = _read_list(root / MANIFEST)
    if listed is None:
        return None
    return listed | (_read_list(root / LOCAL_MANIFEST) or set())


def _read_list(path: Path) -> set[str] | None:
    raw = read_regular(path, MAX_RECORD_BYTES)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        return None
    return {f for f in data["files"] if isinstance(f, str) and format_of(f) is not None}


class OutputDirectory:
    """An output directory, checked before anything is written to it.

    The build replaces or removes only files listed in the directory's manifest (files an
    earlier build wrote). A directory that is not empty and holds no manifest is refused unless
    `force`; so is a path that is not a directory. With `force`, files at the paths the build
    writes are replaced, and still nothing unlisted is removed.
    """

    def __init__(self, root: Path | str, force: bool = False):
        if not str(root).strip():
            raise OutputError("--out is empty: give the output directory")
        self.root = Path(root)
        self.force = force
        if os.path.lexists(self.root) and not self.root.is_dir():
            raise OutputError(f"--out {self.root}: not a directory")
        parent = self.root.absolute().parent
        while not os.path.lexists(parent):
            parent = parent.parent
        if not parent.is_dir():
            raise OutputError(f"--out {self.root}: {parent} is not a directory")
        self.listed = read_manifest(self.root) if self.root.is_dir() else None
        if self.listed is None and not force and self._has_files():
            raise OutputError(
                f"--out {self.root}: the directory is not empty and was not written by "
                f"llm-math build (no {MANIFEST}); choose an empty directory or use --force"
            )
        if self.root.is_dir():
            self._probe()

    def _probe(self) -> None:
        """Fail now, not after checking every step, if the directory cannot be written."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=".llm-math-probe.", dir=self.root)
            os.close(fd)
            os.unlink(tmp)
        except OSError as e:
            raise OutputError(f"cannot write {self.root}: {e.strerror or e}") from e

    def _has_files(self) -> bool:
        try:
            return self.root.is_dir() and any(self.root.iterdir())
        except OSError as e:
            raise OutputError(f"--out {self.root}: cannot read the directory: {e.strerror}") from e

    def check(self, files: Iterable[str]) -> None:
        """Refuse, before anything is written, to replace what this tool did not write."""
        listed = self.listed or set()
        for rel in sorted(files):
            target = self.root / rel
            if not os.path.lexists(target):
                continue
            if target.is_dir() or not (target.is_file() or target.is_symlink()):
                raise OutputError(f"cannot write {target}: something other than a file is there")
            if rel not in listed and not self.force:
                raise OutputError(
                    f"--out {self.root}: {rel} exists and was not written by llm-math build; "
                    "move it away or use --force"
                )

    def commit(
        self, files: Mapping[str, bytes], remove_stale: Iterable[str] = ()
    ) -> tuple[list[Path], list[Path]]:
        """Write `files` (atomically, each only if changed); then remove the listed files of
        the formats in `remove_stale` that this build did not write. Returns (written, unchanged).

        The manifest is written first with every path about to be written, so a build that is
        interrupted leaves no file that a later build would not recognise as its own.
        """
        self.check(files)
        listed = set(self.listed or ())
        written, unchanged = [], []
        try:
            self._write_manifest(listed | set(files))
            for rel in sorted(files):
                path = self.root / rel
                (written if write_atomic(path, files[rel]) else unchanged).append(path)
            formats = set(remove_stale)
            stale = {rel for rel in listed - set(files) if format_of(rel) in formats}
            for rel in sorted(stale):
                self._remove(rel)
            self._write_manifest((listed | set(files)) - stale)
        except OSError as e:
            where = e.filename or self.root
            raise OutputError(f"cannot write {where}: {e.strerror or e}") from e
        self.listed = (listed | set(files)) - stale
        return written, unchanged

    def _remove(self, rel: str) -> None:
        path = self.root / rel
        # Never follow a link out of the directory, never remove a directory.
        if not path.resolve().is_relative_to(self.root.resolve()) or path.is_dir():
            return
        path.unlink(missing_ok=True)

    def _write_manifest(self, files: set[str]) -> None:
        local = {f for f in files if format_of(f) in LOCAL_FORMATS}
        for name, listed in ((MANIFEST, files - local), (LOCAL_MANIFEST, local)):
            if name == LOCAL_MANIFEST and not local and not (self.root / name).exists():
                continue
            data = {"written by": "llm-math build", "files": sorted(listed)}
            write_atomic(self.root / name, (json.dumps(data, indent=1) + "\n").encode())
