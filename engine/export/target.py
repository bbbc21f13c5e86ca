"""What distinguishes one export target from another, beyond the code-form table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """An array library the exporter writes for.

    `column` selects the library's forms in `engine.export.forms.FORMS`; `imports` are always
    emitted; `prelude` lines follow the imports; `convert` turns one argument into a float64
    array (`{0}` is the argument's name).
    """

    name: str
    title: str
    column: str
    imports: tuple[str, ...]
    convert: str
    prelude: tuple[str, ...] = ()
