"""`llm-math list` without loading the engine: an index of the notes keyed by their sources.

The index (name, checked steps, title per note) is recomputed by loading the note modules
whenever any byte of derivations/*.py or of the note format's code (engine/notes/*.py)
changes, and read from the build cache otherwise.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engine.notes.files import read_regular, write_atomic
from engine.notes.paths import CACHE, DERIVATIONS

INDEX_FORMAT = 1
MAX_INDEX_BYTES = 1 << 20


def sources_key(directory: Path) -> str:
    """A hash of every note module and of the code that defines what a note's steps are."""
    h = hashlib.sha256(f"notes index {INDEX_FORMAT}".encode())
    format_code = sorted(Path(__file__).resolve().parent.glob("*.py"))
    for path in sorted(directory.glob("*.py")) + format_code:
        h.update(str(path.name).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def note_index(directory: Path | None = None, cache: Path | None = None) -> list[dict]:
    """[{"name", "steps", "title"}, ...] in build order, from the cache when still current."""
    directory = DERIVATIONS if directory is None else directory
    cache = CACHE if cache is None else cache
    key = sources_key(directory)
    path = cache / "notes-index.json"
    cached = _read(path, key)
    if cached is not None:
        return cached
    from engine.notes.build import load_notes

    entries = [
        {"name": x.note.name, "steps": len(x.note.steps()), "title": x.note.title}
        for x in load_notes(directory)
    ]
    try:
        write_atomic(path, json.dumps({"key": key, "notes": entries}).encode())
    except OSError:
        pass  # a read-only cache: listing still works, it is only slower next time
    return entries


def _read(path: Path, key: str) -> list[dict] | None:
    raw = read_regular(path, MAX_INDEX_BYTES)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("key") != key:
        return None
    notes = data.get("notes")
    if not isinstance(notes, list):
        return None
    for entry in notes:
        if not (
            isinstance(entry, dict)
            and set(entry) == {"name", "steps", "title"}
            and isinstance(entry["name"], str)
            and isinstance(entry["title"], str)
            and type(entry["steps"]) is int
        ):
            return None
    return notes
