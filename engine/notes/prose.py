"""Numbers for a note's prose, formatted from computed values (never typed)."""

from __future__ import annotations


def sci(x: float) -> str:
    """`x` in scientific notation with two significant digits, as LaTeX: 1.3 \\cdot 10^{-14}."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return rf"{mantissa} \cdot 10^{{{int(exponent)}}}"
