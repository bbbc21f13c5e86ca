"""The decimal numbers a rendered note states in its prose (issue 11: prose numbers are
computed, never typed). Display blocks, check marks and the references are left out."""

from __future__ import annotations

import re

DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


def prose_decimals(markdown: str) -> set[str]:
    """Every decimal literal in the prose, figure captions included."""
    found: set[str] = set()
    in_block = False
    for line in markdown.split("## References")[0].splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        if in_block or line.startswith("✓") or line.startswith("!["):
            continue
        found.update(DECIMAL.findall(line))
    return found
