"""Names in a derived program: each new one distinct from every other, as written and in LaTeX."""

from __future__ import annotations

import keyword
from collections.abc import Iterable, Iterator
from itertools import count

from engine.parser import RESERVED
from engine.printing.latex import latex_name

# Longest stem a fresh name is built on: the parser takes names of up to 40 characters, and a
# numbered fresh name adds a suffix.
MAX_STEM = 34


class Names:
    """The names a program holds, and fresh ones that collide with none of them.

    A name is free when no variable, definition, size symbol or earlier step is called that,
    when it is not a function, constant or keyword of the formula language, and when its LaTeX
    (`dX_1` and `dX1` both print as dX_1) is not already some other name's: read top to bottom,
    in text or in LaTeX, a printed program then never rebinds a name it also uses.
    """

    def __init__(self, names: Iterable[str] = ()):
        self.text: set[str] = set()
        self.latex: set[str] = set()
        self.update(names)

    def add(self, name: str) -> None:
        self.text.add(name)
        self.latex.add(latex_name(name))

    def update(self, names: Iterable[str]) -> None:
        for name in names:
            self.add(name)

    def copy(self) -> Names:
        other = Names()
        other.text, other.latex = set(self.text), set(self.latex)
        return other

    def __contains__(self, name: object) -> bool:
        return name in self.text

    def free(self, name: str) -> bool:
        """Not taken, not a word of the language, and not printed in LaTeX like a taken name."""
        return (
            name.isidentifier()
            and not name.startswith("__")
            and not keyword.iskeyword(name)
            and name not in RESERVED
            and name not in self.text
            and latex_name(name) not in self.latex
        )

    def first_free(self, candidates: Iterable[str]) -> str:
        """The first free name among `candidates` (an endless supply), now taken."""
        for name in candidates:
            if self.free(name):
                self.add(name)
                return name
        raise AssertionError("unreachable: the candidates are endless")

    def fresh(self, stem: str) -> str:
        """`stem` if free, else `stem2`, `stem3`, ... (`P`, `P2`; `dS`, `dS2`)."""
        stem = stem[:MAX_STEM]
        return self.first_free(_then_numbered(stem, stem, start=2))

    def numbered(self, stem: str) -> str:
        """The first free of `stem1`, `stem2`, ... (temporaries: t1, t2, ...)."""
        stem = stem[:MAX_STEM]
        return self.first_free(f"{stem}{k}" for k in count(1))

    def gradient(self, var: str, kind: str = "grad") -> str:
        """The name of the gradient of `var`: `dX`, else `grad_X`, else `dX_1`, `dX_2`, ...

        A Jacobian is `J`, else `J_z`, else `J_z_1`, ...; a Hessian `H`, `H_z`, ... A variable
        named `dX` (an upstream gradient, as in CS231n) thus leaves the gradient of X the name
        `grad_X`.
        """
        if len(var) > MAX_STEM:
            return self.numbered({"grad": "grad", "hessian": "H"}.get(kind, "J"))
        if kind == "jacobian":
            return self.first_free(_then_numbered(f"J_{var}_", "J", f"J_{var}"))
        if kind == "hessian":
            return self.first_free(_then_numbered(f"H_{var}_", "H", f"H_{var}"))
        return self.first_free(_then_numbered(f"d{var}_", f"d{var}", f"grad_{var}"))


def _then_numbered(stem: str, *first: str, start: int = 1) -> Iterator[str]:
    yield from first
    for k in count(start):
        yield f"{stem}{k}"


__all__ = ["Names"]
