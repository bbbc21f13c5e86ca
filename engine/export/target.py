"""What distinguishes one export target from another, beyond the code-form table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """An array library the exporter writes for.

    `column` selects the library's forms in `engine.export.forms.FORMS`; `imports` are always
    emitted; `helpers` (source text) follow the imports. Every exported function starts with
    `setup` (`{0}` is the argument list that decides the dtype), which defines the locals `dtype`
    (and, for PyTorch, `device`) that the forms use, then `convert` turns one argument into an
    array of that dtype (and device) (`{0}` is the argument's name). Nothing in a module changes
    process-wide configuration.
    """

    name: str
    title: str
    column: str
    imports: tuple[str, ...]
    convert: str
    setup: str
    helpers: tuple[str, ...] = ()
    prelude: tuple[str, ...] = ()
    # An index argument (integer labels, issue 8) becomes an integer array, never the floating
    # dtype (bfloat16 holds integers exactly only up to 256); `{0}` is the argument's name.
    convert_index: str = ""
