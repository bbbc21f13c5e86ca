"""The book's symbol table: within a note a name has one meaning, and across the notes the common
symbols (p, z, y, T, d, n) keep theirs (issue 11's review found symbols that changed meaning)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.notes.build import load_module
from engine.notes.notation import book_symbols, declared_kind

ROOT = Path(__file__).resolve().parent.parent
NOTES = {f.stem: load_module(f).NOTE for f in sorted((ROOT / "derivations").glob("*.py"))}


_kind = declared_kind

# The book's common symbols: what each must be wherever a note declares it. The table is the
# notation section's (engine/notes/notation.py), so the book states what this test checks.
BOOK_SYMBOLS = book_symbols()


def _declarations(note) -> dict[str, list[tuple[str, str]]]:
    table: dict[str, list[tuple[str, str]]] = {}
    for where in ("vars", "defs", "params", "arrays", "indices"):
        for name, text in getattr(note, where).items():
            table.setdefault(name, []).append((where, str(text)))
    return table


def _meaning(where: str, text: str) -> tuple[str, int | None]:
    """(kind, rank) of one declaration: the same quantity may appear in the formula language
    (vars, defs) and in index notation (arrays, params, indices) with compatible kinds."""
    if where == "defs":
        return "defined", None
    if where == "indices":
        return "counter", 0
    rank = text.count(",") + 1 if "[" in text else 0
    kind = _kind(text)
    return ("counter" if kind in ("positive", "integer") and rank == 0 else kind), rank


def _agree(a: tuple[str, int | None], b: tuple[str, int | None]) -> bool:
    if "defined" in (a[0], b[0]):  # a definition also written as a symbol of index notation
        return True
    return (
        a == b
        or {a[0], b[0]} <= {"counter", "positive", "integer", "real", "unit"}
        and (a[1] == b[1] == 0 and "real" not in (a[0], b[0]))
    )


# Clashes the review found and that are not fixed yet: each is listed so that the test fails
# when a new one appears (and when one of these is fixed, so the list shrinks).
KNOWN_CLASHES: set[tuple[str, str]] = set()


@pytest.mark.parametrize("name", sorted(NOTES))
def test_within_a_note_every_name_has_one_meaning(name):
    for symbol, found in _declarations(NOTES[name]).items():
        meanings = [_meaning(w, t) for w, t in found]
        clash = any(not _agree(meanings[0], m) for m in meanings[1:])
        assert clash == ((name, symbol) in KNOWN_CLASHES), f"{name}: {symbol} is {found}"


@pytest.mark.parametrize("name", sorted(NOTES))
def test_the_common_symbols_keep_their_meaning_in_every_note(name):
    for symbol, declarations in _declarations(NOTES[name]).items():
        if symbol in BOOK_SYMBOLS:
            for where, text in declarations:
                assert BOOK_SYMBOLS[symbol](where, text), (
                    f"{name}: {symbol} is declared in {where} as {text!r}, which is not the "
                    "book's meaning of it"
                )


def test_the_table_is_not_vacuous():
    # every common symbol is used by some note, and a wrong declaration would be refused
    used = {s for note in NOTES.values() for s in _declarations(note)}
    assert {"p", "z", "y", "T", "d"} <= used
    assert not BOOK_SYMBOLS["p"]("vars", "real[n]")
    assert not BOOK_SYMBOLS["z"]("defs", "softmax(x)")
    assert not BOOK_SYMBOLS["T"]("vars", "real")
    assert not BOOK_SYMBOLS["n"]("vars", "real[n]")
    # a scalar and a matrix of one name clash; a vector in both notations does not
    assert not _agree(_meaning("vars", "real"), _meaning("arrays", "real[n, n]"))
    assert _agree(_meaning("vars", "real[n]"), _meaning("arrays", "real[n]"))
