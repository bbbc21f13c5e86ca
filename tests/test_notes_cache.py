"""The build cache certifies exactly one claim: corrupted, forged or mismatched records are
discarded and the step is checked again (never a traceback, never a PASS from the cache)."""

from __future__ import annotations

import builtins
import json
import os
import shutil
from pathlib import Path

import pytest

from engine.notes import Note, Section, Step
from engine.notes.cache import (
    FigureCache,
    ResultCache,
    checker_sources,
    claim_key,
    step_claim,
    valid_pdf,
    valid_svg,
)
from engine.notes.check import check_note

FP = "fingerprint"
RIGHT = Step("sum(p) == 1", "probabilities sum to one")
WRONG = Step("sum(p) == 2", "a wrong step")


def note_with(*steps: Step) -> Note:
    return Note(
        name="t",
        order=1,
        title="T",
        summary="s",
        sections=(Section("S", *steps),),
        vars={"z": "real[n]"},
        defs={"p": "softmax(z)"},
    )


def record_path(cache: ResultCache, note: Note, step: Step) -> Path:
    return cache.directory / f"{claim_key(step_claim(note, step, FP))}.json"


def genuine_record(tmp_path: Path, note: Note, step: Step) -> bytes:
    """The record a real check of a passing `step` stores."""
    cache = ResultCache(tmp_path / "genuine")
    [sr] = [sr for sr in check_note(note, cache, FP) if sr.step == step]
    assert sr.result.passed
    return record_path(cache, note, step).read_bytes()


def forged(claim: dict, result: object) -> bytes:
    return json.dumps({"certifies": claim, "result": result}).encode()


def good_check(**changes) -> dict:
    check = {"method": "exact", "passed": True, "detail": "exact at n=2", "max_error": 0.0}
    return {**check, **changes}


def corruptions(claim: dict) -> dict[str, bytes | None]:
    """Every kind of bad record, as the bytes of the file (None: no file, see below)."""
    numeric = good_check(method="numeric", detail="numeric at n=64")
    passing = {"name": "x", "verdict": "pass", "message": "verified", "counterexample": None}
    return {
        "empty file": b"",
        "[]": b"[]",
        "null": b"null",
        "a number": b"1",
        "a string": b'"pass"',
        "{}": b"{}",
        "truncated": forged(claim, {**passing, "checks": [good_check(), numeric]})[:-7],
        "not utf-8": b"\xff\xfe{\x00",
        "nested JSON": b"[" * 100_000 + b"]" * 100_000,
        "nested object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "old layout forged": b'{"verdict": "pass", "checks": []}',
        "old layout full": json.dumps({**passing, "checks": [good_check(), numeric]}).encode(),
        "no checks": forged(claim, {**passing, "checks": []}),
        "checks missing": forged(claim, passing),
        "checks not a list": forged(claim, {**passing, "checks": "exact"}),
        "check not a dict": forged(claim, {**passing, "checks": [1, 2]}),
        "check missing a field": forged(
            claim, {**passing, "checks": [{"method": "exact", "passed": True}, numeric]}
        ),
        "check with an extra field": forged(
            claim, {**passing, "checks": [good_check(extra=1), numeric]}
        ),
        "passed as text": forged(
            claim, {**passing, "checks": [good_check(passed="true"), numeric]}
        ),
        "a failed check": forged(claim, {**passing, "checks": [good_check(passed=False), numeric]}),
        "error as text": forged(claim, {**passing, "checks": [good_check(max_error="0"), numeric]}),
        "error negative": forged(claim, {**passing, "checks": [good_check(max_error=-1), numeric]}),
        "error a bool": forged(
            claim, {**passing, "checks": [good_check(max_error=False), numeric]}
        ),
        "detail empty": forged(claim, {**passing, "checks": [good_check(detail=""), numeric]}),
        "detail a number": forged(claim, {**passing, "checks": [good_check(detail=5), numeric]}),
        "method a list": forged(claim, {**passing, "checks": [good_check(method=[]), numeric]}),
        "only one route": forged(claim, {**passing, "checks": [good_check()]}),
        "verdict fail": forged(claim, {**passing, "verdict": "fail", "checks": [good_check()]}),
        "verdict PASS": forged(claim, {**passing, "verdict": "PASS", "checks": [good_check()]}),
        "result a list": forged(claim, [passing]),
        "no certifies": json.dumps({"result": {**passing, "checks": [good_check()]}}).encode(),
        "certifies null": forged(None, {**passing, "checks": [good_check(), numeric]}),
        "certifies another engine": forged(
            {**claim, "engine": "other"}, {**passing, "checks": [good_check(), numeric]}
        ),
        "certifies another claim": forged(
            {**claim, "rhs": "text:42"}, {**passing, "checks": [good_check(), numeric]}
        ),
        "extra top-level key": json.dumps(
            {
                "certifies": claim,
                "result": {**passing, "checks": [good_check(), numeric]},
                "x": 1,
            }
        ).encode(),
    }


def test_a_well_formed_record_of_the_claim_is_used(tmp_path):
    # The control for the corpus below: the forged layout is otherwise right, so each
    # corruption is rejected for its own defect.
    note = note_with(WRONG)
    claim = step_claim(note, WRONG, FP)
    cache = ResultCache(tmp_path / "steps")
    cache.directory.mkdir()
    numeric = good_check(method="numeric", detail="numeric at n=64")
    result = {"name": "x", "verdict": "pass", "message": "m", "counterexample": None}
    path = record_path(cache, note, WRONG)
    path.write_bytes(forged(claim, {**result, "checks": [good_check(), numeric]}))
    [sr] = check_note(note, cache, FP)
    assert sr.cached and sr.result.passed
    assert sr.result.name == "t: step #1 sum(p) == 2"  # named after the step, not the record


@pytest.mark.parametrize("kind", sorted(corruptions({})))
def test_a_corrupted_record_of_a_wrong_step_never_passes(tmp_path, kind):
    note = note_with(WRONG)
    cache = ResultCache(tmp_path / "steps")
    cache.directory.mkdir()
    record_path(cache, note, WRONG).write_bytes(corruptions(step_claim(note, WRONG, FP))[kind])
    [sr] = check_note(note, cache, FP)
    assert not sr.cached
    assert sr.result.verdict == "fail", sr.result.report()


@pytest.mark.parametrize("kind", sorted(corruptions({})))
def test_a_corrupted_record_of_a_right_step_is_rechecked_and_replaced(tmp_path, kind):
    note = note_with(RIGHT)
    cache = ResultCache(tmp_path / "steps")
    cache.directory.mkdir()
    path = record_path(cache, note, RIGHT)
    path.write_bytes(corruptions(step_claim(note, RIGHT, FP))[kind])
    [first] = check_note(note, cache, FP)
    assert not first.cached and first.result.passed
    [second] = check_note(note, cache, FP)
    assert second.cached and second.result.passed  # the record was rewritten
    assert second.result.checks == first.result.checks


def test_a_genuine_pass_copied_under_a_wrong_steps_key_does_not_certify_it(tmp_path):
    note = note_with(RIGHT, WRONG)
    genuine = genuine_record(tmp_path, note, RIGHT)
    cache = ResultCache(tmp_path / "steps")
    cache.directory.mkdir()
    record_path(cache, note, WRONG).write_bytes(genuine)
    results = check_note(note, cache, FP)
    assert [sr.result.verdict for sr in results] == ["pass", "fail"]
    assert [sr.cached for sr in results] == [False, False]


def test_a_genuine_pass_of_the_same_text_under_other_declarations_does_not_certify_it(tmp_path):
    # "sum(p) == 1" passes when p = softmax(z); the record must not carry over to p = z.
    note = note_with(RIGHT)
    genuine = genuine_record(tmp_path, note, RIGHT)
    other = Note(**{**note.__dict__, "defs": {"p": "z"}})
    cache = ResultCache(tmp_path / "steps")
    cache.directory.mkdir()
    record_path(cache, other, RIGHT).write_bytes(genuine)
    [sr] = check_note(other, cache, FP)
    assert not sr.cached and sr.result.verdict == "fail"


def test_a_genuine_pass_from_another_engine_or_seed_is_not_used(tmp_path):
    note = note_with(RIGHT)
    genuine = genuine_record(tmp_path, note, RIGHT)
    cache = ResultCache(tmp_path / "steps")
    cache.directory.mkdir()
    reseeded = Note(**{**note.__dict__, "seed": 7})
    record_path(cache, reseeded, RIGHT).write_bytes(genuine)
    [sr] = check_note(reseeded, cache, FP)
    assert not sr.cached and sr.result.passed
    path = cache.directory / f"{claim_key(step_claim(note, RIGHT, 'new engine'))}.json"
    path.write_bytes(genuine)
    [sr] = check_note(note, cache, "new engine")
    assert not sr.cached and sr.result.passed


def test_a_directory_where_a_record_belongs_is_replaced(tmp_path):
    note = note_with(WRONG, RIGHT)
    cache = ResultCache(tmp_path / "steps")
    for step in (WRONG, RIGHT):
        (record_path(cache, note, step) / "nested").mkdir(parents=True)
    results = check_note(note, cache, FP)
    assert [sr.result.verdict for sr in results] == ["fail", "pass"]
    assert record_path(cache, note, RIGHT).is_file()
    assert check_note(note, cache, FP)[1].cached


def test_a_fifo_or_device_where_a_record_belongs_is_not_read(tmp_path):
    note = note_with(WRONG, RIGHT)
    cache = ResultCache(tmp_path / "steps")
    cache.directory.mkdir()
    os.mkfifo(record_path(cache, note, WRONG))  # reading it would block forever
    record_path(cache, note, RIGHT).symlink_to("/dev/zero")  # reading it would never end
    results = check_note(note, cache, FP)
    assert [sr.result.verdict for sr in results] == ["fail", "pass"]
    assert record_path(cache, note, RIGHT).is_file()  # the link was replaced by a record


@pytest.mark.parametrize("replaced", ["root", "steps"])
def test_a_cache_directory_replaced_by_a_file_is_rebuilt(tmp_path, replaced):
    root = tmp_path / "cache"
    if replaced == "root":
        root.write_text("not a directory")
    else:
        root.mkdir()
        (root / "steps").write_text("not a directory")
    note = note_with(WRONG, RIGHT)
    cache = ResultCache(root / "steps", root)
    results = check_note(note, cache, FP)
    assert [sr.result.verdict for sr in results] == ["fail", "pass"]
    assert (root / "steps").is_dir()
    assert [sr.cached for sr in check_note(note, cache, FP)] == [False, True]


def test_an_unreadable_record_is_rechecked(tmp_path, monkeypatch):
    note = note_with(RIGHT)
    genuine = genuine_record(tmp_path, note, RIGHT)
    cache = ResultCache(tmp_path / "steps")
    cache.directory.mkdir()
    path = record_path(cache, note, RIGHT)
    path.write_bytes(genuine)
    real_open = builtins.open

    def no_read(file, mode="r", *args, **kwargs):
        if Path(file) == path and "r" in mode:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_read)  # root ignores chmod, so deny in Python
    [sr] = check_note(note, cache, FP)
    assert not sr.cached and sr.result.passed


def test_an_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    monkeypatch.setattr("tempfile.mkstemp", denied)
    note = note_with(RIGHT)
    [sr] = check_note(note, ResultCache(tmp_path / "steps"), FP)
    assert sr.result.passed and not sr.cached


# ---------------------------------------------------------------- figures

SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\n'
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
BAD_SVG = {
    "empty": b"",
    "garbage": b"\x00\x01garbage",
    "text": b"not xml at all",
    "truncated": SVG[:40],
    "html": b"<html><body>x</body></html>",
    "svg in another namespace": b'<svg xmlns="urn:x"/>',
    "entity bomb": (
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(b'<!ENTITY %c "%s">' % (98 + k, b"&%c;" % (97 + k) * 10) for k in range(8))
        + b']><svg xmlns="http://www.w3.org/2000/svg">&i;</svg>'
    ),
}
BAD_PDF = {
    "empty": b"",
    "garbage": b"garbage",
    "no header": PDF[5:],
    "truncated": PDF[:-7],
    "an svg": SVG,
}


def test_figure_validation_accepts_real_files_and_refuses_bad_ones():
    assert valid_svg(SVG) and valid_pdf(PDF)
    for kind, data in BAD_SVG.items():
        assert not valid_svg(data), kind
    for kind, data in BAD_PDF.items():
        assert not valid_pdf(data), kind


CLAIM = {"salt": "s", "note": "t", "figure": "f", "source": "h"}


def stored_figure(tmp_path: Path) -> tuple[FigureCache, Path]:
    cache = FigureCache(tmp_path / "figures", tmp_path)
    cache.put(CLAIM, SVG, PDF)
    assert cache.get(CLAIM) == (SVG, PDF)
    return cache, cache.directory / claim_key(CLAIM)


@pytest.mark.parametrize("kind", sorted(BAD_SVG))
def test_a_bad_cached_svg_is_not_used(tmp_path, kind):
    cache, path = stored_figure(tmp_path)
    (path / "f.svg").write_bytes(BAD_SVG[kind])
    assert cache.get(CLAIM) is None


@pytest.mark.parametrize("kind", sorted(BAD_PDF))
def test_a_bad_cached_pdf_is_not_used(tmp_path, kind):
    cache, path = stored_figure(tmp_path)
    (path / "f.pdf").write_bytes(BAD_PDF[kind])
    assert cache.get(CLAIM) is None


def test_a_figure_record_of_another_figure_or_a_broken_entry_is_not_used(tmp_path):
    cache, path = stored_figure(tmp_path)
    assert cache.get({**CLAIM, "source": "edited"}) is None
    (path / "certifies.json").write_text(json.dumps({**CLAIM, "figure": "g"}))
    assert cache.get(CLAIM) is None
    (path / "certifies.json").unlink()
    assert cache.get(CLAIM) is None  # an entry left half-written
    shutil.rmtree(path)
    path.write_text("a file where the entry's directory belongs")
    assert cache.get(CLAIM) is None
    cache.put(CLAIM, SVG, PDF)  # rebuilt
    assert cache.get(CLAIM) == (SVG, PDF)
    shutil.rmtree(cache.directory)
    cache.directory.write_text("the figures directory replaced by a file")
    fresh = FigureCache(tmp_path / "figures", tmp_path)
    assert fresh.get(CLAIM) is None
    fresh.put(CLAIM, SVG, PDF)
    assert fresh.get(CLAIM) == (SVG, PDF)


def test_the_fingerprint_follows_relative_imports_into_a_package(tmp_path):
    # The verifier may become a package whose modules import each other relatively: editing
    # any of them must still invalidate the cache.
    files = {
        "notes/check.py": "from engine.verify import verify\nfrom engine import types\n",
        "verify/__init__.py": "from .exact import a\nfrom . import numeric\n",
        "verify/exact.py": "from ..printing import latex\n",
        "verify/numeric.py": "x = 1\n",
        "printing/__init__.py": "",
        "printing/latex.py": "",
        "types.py": "",
        "__init__.py": "import engine.derive\n",  # the package's own __init__: not the checker's
        "derive.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = checker_sources(tmp_path / "notes" / "check.py", tmp_path)
    names = {str(p.relative_to(tmp_path.resolve())) for p in found}
    assert names == set(files) - {"__init__.py", "derive.py"}


def test_the_fingerprint_skips_imports_for_annotations_only(tmp_path):
    # `if TYPE_CHECKING:` imports never run: a module imported only there (the derive package,
    # for an annotation) is not part of the checker, but a lazy import inside a function is.
    files = {
        "notes/check.py": (
            "from typing import TYPE_CHECKING\nimport typing\n"
            "if TYPE_CHECKING:\n    from engine.derive import program\n"
            "if typing.TYPE_CHECKING:\n    import engine.export\nelse:\n    import engine.types\n"
            "def f():\n    from engine import numeric\n"
        ),
        "derive/program.py": "",
        "export.py": "",
        "types.py": "",
        "numeric.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = checker_sources(tmp_path / "notes" / "check.py", tmp_path)
    names = {str(p.relative_to(tmp_path.resolve())) for p in found}
    assert names == {"notes/check.py", "types.py", "numeric.py"}
