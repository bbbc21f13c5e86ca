"""README's formula-language table lists every construct of the language: every function of the
registry, every operator, every variable type, and each row gives an example in code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.functions import REGISTRY
from engine.types import TYPES

README = Path(__file__).resolve().parent.parent / "README.md"

# Registry entries without a name of their own in formulas, and the row that writes them.
UNNAMED = {"getitem": "slicing (structure)"}


def language_table() -> list[tuple[str, str]]:
    """The rows (construct, description) of the table under '### The formula language'."""
    text = README.read_text(encoding="utf-8")
    start = text.index("### The formula language")
    section = text[start : text.index("\n### ", start + 1)]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and cells[0] and not set(cells[0]) <= {"-"}:
            rows.append((cells[0], " | ".join(cells[1:])))
    return rows


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def code_words() -> set[str]:
    """Every identifier written in code in the table."""
    words: set[str] = set()
    for _, body in language_table():
        for span in code_spans(body):
            words.update(re.findall(r"[A-Za-z_]\w*", span))
    return words


def code_text() -> str:
    return "\n".join(span for _, body in language_table() for span in code_spans(body))


def test_the_table_is_found():
    rows = language_table()
    assert len(rows) > 20
    assert rows[0][0] == "names"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registry_function_is_in_the_table(name: str):
    spec = REGISTRY[name]
    if spec.public:
        assert name in code_words(), f"README's language table does not write `{name}` in code"
    elif spec.infix:
        assert spec.infix in code_text(), f"README's language table lacks the operator {spec.infix}"
    else:
        row = UNNAMED.get(name)
        assert row is not None, f"{name}: a function with no name or operator; say which row"
        assert row in dict(language_table())


@pytest.mark.parametrize("vtype", sorted(TYPES))
def test_every_type_is_in_the_table(vtype: str):
    assert vtype in code_words(), f"README's language table does not name the type `{vtype}`"


def test_every_row_has_an_example_in_code():
    for construct, body in language_table():
        assert code_spans(body), f"row {construct!r} has no example in code"


def test_a_missing_name_would_be_caught():
    """The check is not vacuous: a name the table does not write is reported missing."""
    assert "no_such_function" not in code_words()
    assert "softplus" in code_words()
