"""The layout of generated source: lines past 100 columns split as ruff format would, and the
`# noqa: E741` for the field's single-letter names (O, l, I) wherever one is assigned."""

from __future__ import annotations

import keyword
import re

WIDTH = 100
AMBIGUOUS = ("l", "O", "I")
NOQA = "  # noqa: E741"
_PAIRS = {"(": ")", "[": "]", "{": "}"}
KEYWORDS = "|".join(k for k in keyword.kwlist if k.islower())


def _first_group(code: str) -> tuple[int, int] | None:
    """The first top-level bracket group outside strings: (open index, close index)."""
    depth, start, quote = 0, -1, ""
    for i, c in enumerate(code):
        if quote:
            if c == quote and code[i - 1] != "\\":
                quote = ""
        elif c in "\"'":
            quote = c
        elif c in _PAIRS:
            if depth == 0:
                start = i
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i - start > 2:
                return start, i
    return None


def _split_commas(code: str) -> list[str]:
    """`a, f(b, c), d` -> ["a", "f(b, c)", "d"]: commas at depth 0 outside strings."""
    out, depth, quote, cur = [], 0, "", ""
    for i, c in enumerate(code):
        if quote:
            quote = "" if c == quote and code[i - 1] != "\\" else quote
        elif c in "\"'":
            quote = c
        elif c in _PAIRS:
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
            continue
        cur += c
    if cur.strip():
        out.append(cur.strip())
    return out


def _mark(line: str) -> str:
    """Add the noqa to a line that assigns an ambiguous name (`O = ...`, `O,` in a target)."""
    code = line.strip()
    if NOQA.strip() in line:
        return line
    m = re.match(r"^([A-Za-z_][A-Za-z_0-9]*(?:\s*,\s*[A-Za-z_][A-Za-z_0-9]*)*)\s*,?\s*=[^=]", code)
    names = set(re.split(r"\s*,\s*", m.group(1))) if m else set()
    if code.rstrip(",") in AMBIGUOUS or names & set(AMBIGUOUS):
        return line + NOQA
    return line


def split_line(line: str) -> list[str]:
    """One line of code as ruff format would lay it out within 100 columns."""
    if len(line) <= WIDTH:
        return [line]
    pad = line[: len(line) - len(line.lstrip())]
    code = line.strip()
    m = re.match(r"^([A-Za-z_][\w]*(?:, [A-Za-z_][\w]*)+) = (.+)$", code)
    if m:  # a, b, c = saved: the target in parentheses, one name a line
        items = m.group(1).split(", ")
        out = [pad + "("] + [_mark(f"{pad}    {x},") for x in items]
        return out + [f"{pad}) = {m.group(2)}"]
    group = _first_group(code)
    if group is None:
        return [line]
    a, b = group
    items = _split_commas(code[a + 1 : b])
    before = code[:a].rstrip()
    # `f(`, `x[0](`, `g()(`: a call; `else (`, `return (`: a keyword, then a parenthesized
    # expression (a trailing comma would make it a tuple)
    callee = bool(before) and (before[-1].isalnum() or before[-1] in "_)]")
    called = code[a] == "(" and callee and not re.search(rf"\b({KEYWORDS})$", before)
    subscript = code[a] == "[" and bool(before) and (before[-1].isalnum() or before[-1] in "_)]")
    # A trailing comma only where it cannot change the meaning: in a call's arguments and in a
    # display that already has several items. `(a + b,)` is a tuple and `x[i,]` a tuple index.
    comma = "," if (called or len(items) > 1) and not (subscript and len(items) == 1) else ""
    out = [pad + code[: a + 1]]
    for k, x in enumerate(items):
        last = k == len(items) - 1
        out += split_line(f"{pad}    {x}{comma if last else ','}")
    return out + [pad + code[b:]]


def lay_out(source: str) -> str:
    """Split the long code lines of a generated module and mark its ambiguous assignments;
    docstrings stay as they are."""
    out: list[str] = []
    in_doc = False
    for line in source.split("\n"):
        quotes = line.count('"""')
        if in_doc or (quotes and line.strip().startswith(('"""', 'r"""'))):
            out.append(line)
            if quotes % 2 == 1:
                in_doc = not in_doc
            continue
        lines = split_line(line)
        out += [_mark(lines[0])] if len(lines) == 1 else lines
    return "\n".join(out)
