"""The book's notation section: one table, printed in the LaTeX book and on the index pages, whose
common symbols are also the table the symbol-table test checks every note against."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# A note declares a name in one of its tables (`vars`, `defs`, `params`, `arrays`, `indices`)
# with a text ("simplex[n]", "softmax(z)", "positive"): (where, text) -> is this the book's meaning?
Declared = Callable[[str, str], bool]


def declared_kind(text: str) -> str:
    """The kind of a declaration without its shape: "simplex[n]" -> "simplex"."""
    return re.sub(r"\[.*", "", text).strip()


@dataclass(frozen=True)
class Notation:
    """One row of the notation section.

    `formula` is formula-language text, printed by the engine's own LaTeX printer (so the section
    shows exactly the form the notes print), declared by `vars`/`defs`; `latex` is given instead
    for notation outside the formula language (the Iverson bracket of index notation). `meaning`
    is prose markup. A common symbol (p, z, y, T, d, n) has `name` and `declared`: what every note
    that declares that name must declare it as (tests/test_symbols.py).
    """

    meaning: str
    formula: str | None = None
    latex: str | None = None
    vars: Mapping[str, str] = field(default_factory=dict)
    defs: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    declared: Declared | None = None

    def symbol_latex(self) -> str:
        """The row's symbol as LaTeX: the printer's form of `formula`, or `latex`."""
        if self.latex is not None:
            return self.latex
        from engine.notes.check import build_environment
        from engine.parser import parse_formula
        from engine.printing.latex import to_latex

        env = build_environment(dict(self.vars), dict(self.defs))
        return to_latex(parse_formula(str(self.formula), env))


OPERATIONS: tuple[Notation, ...] = (
    Notation(
        "The sum of all entries of an array: $\\sum_i x_i$ for a vector, $\\sum_{i,j} A_{ij}$ "
        "for a matrix. A square applies to the whole sum: $\\left(\\textstyle\\sum(x)\\right)^2$.",
        formula="sum(x)",
        vars={"x": "real[n]"},
    ),
    Notation(
        "The sum of each row of a matrix: the vector with entries $\\sum_j A_{ij}$, one per row "
        "($\\textstyle\\sum_{\\text{col}}$ sums each column).",
        formula="sum(A, axis=-1)",
        vars={"A": "real[m, n]"},
    ),
    Notation(
        "A row sum kept as a column (`keepdims`) and combined with a matrix: the row sums times "
        "a row of ones, $\\mathbf{1}_n^\\top$, repeat each row's sum along that row, so entry "
        "$(i, j)$ is $A_{ij} - \\sum_k A_{ik}$. A column sum is repeated down each column, "
        "$\\mathbf{1}_m \\textstyle\\sum_{\\text{col}}(A)$.",
        formula="A - sum(A, axis=-1, keepdims=True)",
        vars={"A": "real[m, n]"},
    ),
    Notation(
        "The entrywise (Hadamard) product: $(u \\odot v)_i = u_i v_i$; a matrix and a vector "
        "broadcast as in NumPy.",
        formula="u * v",
        vars={"u": "real[n]", "v": "real[n]"},
    ),
    Notation(
        "The gradient of a scalar $L$ with respect to $T$: an array of the shape of $T$ holding "
        "$\\partial L / \\partial T_{i}$; for a scalar $T$ (the temperature) it is the ordinary "
        "derivative $\\mathrm{d}L / \\mathrm{d}T$.",
        formula="grad(L, T)",
        vars={"z": "real[n]", "T": "positive"},
        defs={"L": "logsumexp(z / T)"},
    ),
    Notation(
        "The softmax of a vector: entry $i$ is $e^{z_i} / \\sum_k e^{z_k}$, a probability "
        "vector; of a matrix, the softmax of each row.",
        formula="softmax(z)",
        vars={"z": "real[n]"},
    ),
    Notation(
        "The Iverson bracket: $1$ when the statement $P$ is true, else $0$; for example "
        "$[\\,j \\le i\\,]$ is $1$ when key $j$ is visible from query $i$.",
        latex="[\\,P\\,]",
    ),
    Notation(
        "The Kronecker delta: $1$ when $i = j$, else $0$ (the identity matrix's entries).",
        latex="\\delta_{ij}",
    ),
    Notation(
        "A definition: the left side is a name for the right side; a definition is shown, "
        "never numbered.",
        latex="a \\mathrel{:=} b",
    ),
)


def _p(where: str, text: str) -> bool:
    return (where == "vars" and declared_kind(text) == "simplex") or (
        where == "defs" and text.startswith(("softmax(", "exp(log_softmax("))
    )


COMMON_SYMBOLS: tuple[Notation, ...] = (
    Notation(
        "A probability vector (nonnegative entries adding up to 1): a given distribution, or "
        "the softmax of logits, $p = \\operatorname{softmax}(z / T)$.",
        formula="p",
        vars={"p": "simplex[n]"},
        name="p",
        declared=_p,
    ),
    Notation(
        "Logits: a real vector (or a batch of them, one per row), the input of the softmax.",
        formula="z",
        vars={"z": "real[n]"},
        name="z",
        declared=lambda where, text: where in ("vars", "arrays") and declared_kind(text) == "real",
    ),
    Notation(
        "The target: data (a distribution, a one-hot row or real values), never computed.",
        formula="y",
        vars={"y": "simplex[n]"},
        name="y",
        declared=lambda where, text: (
            where in ("vars", "arrays") and declared_kind(text) in ("simplex", "onehot", "real")
        ),
    ),
    Notation(
        "The softmax temperature, a positive scalar: $p = \\operatorname{softmax}(z / T)$.",
        formula="T",
        vars={"T": "positive"},
        name="T",
        declared=lambda where, text: where in ("vars", "params") and text == "positive",
    ),
    Notation(
        "A dimension (the model's or an attention head's width): a positive integer.",
        latex="d",
        name="d",
        declared=lambda where, text: where == "params" and text == "integer",
    ),
    Notation(
        "A length: the number of entries of a vector (the vocabulary size, the number of "
        "keys); a positive integer. A size written in a shape, as in $\\mathbf{1}_n$.",
        latex="n",
        name="n",
        declared=lambda where, text: where == "params" and text == "integer",
    ),
)

NOTATION: tuple[Notation, ...] = OPERATIONS + COMMON_SYMBOLS


def book_symbols() -> dict[str, Declared]:
    """The common symbols and what a note must declare each as (the symbol-table test's table)."""
    return {n.name: n.declared for n in COMMON_SYMBOLS if n.name and n.declared}


def _no_reference(text: str) -> str:
    raise ValueError(f"the notation section cites nothing: [[{text}]] / [@{text}]")


def notation_rows() -> dict[str, list[dict[str, str]]]:
    """The section's two groups of rows: each row's symbol as LaTeX, its meaning as GitHub
    Markdown (`md`) and as LaTeX (`tex`)."""
    from engine.notes.markup import md_inline, tex_inline

    return {
        group: [
            {
                "latex": n.symbol_latex(),
                "md": md_inline(n.meaning, _no_reference, _no_reference),
                "tex": tex_inline(n.meaning, _no_reference, _no_reference),
            }
            for n in rows
        ]
        for group, rows in (("operations", OPERATIONS), ("symbols", COMMON_SYMBOLS))
    }
