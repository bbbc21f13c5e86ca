"""SymPy building blocks for index-notation steps and identities, and their readable LaTeX."""

from __future__ import annotations

import sympy
from sympy.core.sympify import _sympify
from sympy.printing.latex import LatexPrinter

from engine.expr import size_symbol
from engine.printing.latex import latex_name


def size(name: str) -> sympy.Symbol:
    """A size symbol such as n (the same symbol the formula language uses)."""
    return size_symbol(name)


def indices(names: str) -> tuple[sympy.Symbol, ...]:
    """Index symbols, e.g. `i, j, k = indices("i j k")` (plain integer Symbols, not Idx)."""
    out = sympy.symbols(names, integer=True, nonnegative=True, seq=True)
    return tuple(out)


def array(name: str) -> sympy.IndexedBase:
    """An array such as z, used as z[i]; declare its type in `Note.arrays`."""
    return sympy.IndexedBase(name)


def param(name: str, kind: str = "real") -> sympy.Symbol:
    """A scalar parameter; declare the same kind in `Note.params`."""
    assumptions = {
        "real": {"real": True},
        "positive": {"positive": True},
        "unit": {"positive": True},
        "integer": {"integer": True, "positive": True},
    }[kind]
    return sympy.Symbol(name, **assumptions)


def total(expr: sympy.Expr, index: sympy.Symbol, n: sympy.Expr) -> sympy.Sum:
    """sum over index = 1..n of expr (stored 0-based; printed as \\sum_{index})."""
    return sympy.Sum(expr, (index, 0, n - 1))


def delta(i: sympy.Expr, j: sympy.Expr) -> sympy.Expr:
    """Kronecker delta, printed \\delta_{ij}."""
    return sympy.KroneckerDelta(i, j, evaluate=False)


class Named(sympy.Expr):
    """A named quantity with its definition, e.g. p_i := exp(z_i) / sum_k exp(z_k).

    Prints as its name with the indices as subscripts; `doit()` unfolds the definition, so a
    step may differentiate it: `sympy.Derivative(p(i), z[j])` prints as dp_i/dz_j.
    """

    is_commutative = True

    def __new__(cls, name: str | sympy.Symbol, body: sympy.Expr, *idx: sympy.Expr):
        label = sympy.Symbol(name) if isinstance(name, str) else name
        # Strict: a body or index given as text is refused, never parsed (SymPy would eval it).
        return sympy.Expr.__new__(cls, label, _sympify(body), *map(_sympify, idx))

    @property
    def label(self) -> str:
        return self.args[0].name

    @property
    def body(self) -> sympy.Expr:
        return self.args[1]

    @property
    def idx(self) -> tuple[sympy.Expr, ...]:
        return self.args[2:]

    def doit(self, **hints):
        return self.body.doit(**hints) if hints.get("deep", True) else self.body

    def _eval_is_real(self):
        return self.body.is_real

    def _sympystr(self, printer) -> str:
        idx = ",".join(printer._print(i) for i in self.idx)
        return f"{self.label}[{idx}]" if idx else self.label

    def _latex(self, printer) -> str:
        name = latex_name(self.label)
        if not self.idx:
            return name
        return f"{name}_{{{''.join(printer._print(i) for i in self.idx)}}}"


class NoteLatexPrinter(LatexPrinter):
    """SymPy's printer with index notation kept plain: z_{i}, \\delta_{ij}, \\sum_{k}."""

    def __init__(self, settings=None):
        super().__init__({"mul_symbol": None, "fold_short_frac": True, **(settings or {})})

    shown: dict = {}
    sizes: frozenset = frozenset()
    aliases = {"ell": r"\ell", "eps": r"\epsilon", "mu": r"\mu"}

    def _print_Symbol(self, expr, style="plain"):
        if expr in self.shown:
            return self.shown[expr]
        return self.aliases.get(expr.name) or latex_name(expr.name)

    def _print_Indexed(self, expr):
        base = latex_name(expr.base.label.name)
        return f"{base}_{{{''.join(self._print(i) for i in expr.indices)}}}"

    def _print_IndexedBase(self, expr):
        return latex_name(expr.label.name)

    def _print_KroneckerDelta(self, expr, exp=None):
        i, j = (self._print(a) for a in expr.args[:2])
        out = rf"\delta_{{{i}{j}}}"
        return f"{out}^{{{exp}}}" if exp else out

    def _print_Sum(self, expr):
        """A sum over a whole index range 0..n-1 of a size n prints as \\sum_{k}; any other
        range (a sum up to a parameter, a causal sum up to i) prints its limits, 1-based."""
        heads = []
        for var, lo, hi in expr.limits:
            full = lo == 0 and (hi + 1).is_Symbol and (hi + 1).name in self.sizes
            if full:
                heads.append(rf"\sum_{{{self._print(var)}}}")
            else:
                heads.append(
                    rf"\sum_{{{self._print(var)}={self._print(lo)}}}^{{{self._print(hi)}}}"
                )
        body = self._print(expr.function)
        if expr.function.is_Add:
            body = rf"\left({body}\right)"
        return " ".join(heads) + " " + body

    def _print_Derivative(self, expr):
        inner = expr.expr
        wrt = "".join(rf"\partial {self._print(v)}" for v, c in expr.variable_count for _ in [c])
        if _atomic(inner) or (isinstance(inner, sympy.log) and _atomic(inner.args[0])):
            return rf"\frac{{\partial {self._print(inner)}}}{{{wrt}}}"
        return rf"\frac{{\partial}}{{{wrt}}} \left({self._print(inner)}\right)"

    def _print_log(self, expr, exp=None):
        arg = expr.args[0]
        body = self._print(arg) if _atomic(arg) else rf"\left({self._print(arg)}\right)"
        body = f"({self._print(arg)})" if _atomic(arg) else body
        head = r"\log" if exp is None else rf"\log^{{{exp}}}"
        return f"{head}{body}"

    def _print_Add(self, expr, order=None):
        """Terms in SymPy's order, but a positive term first when there is one (a - b)."""
        terms = list(self._as_ordered_terms(expr, order=order))
        positive = [t for t in terms if not t.could_extract_minus_sign()]
        terms = positive + [t for t in terms if t.could_extract_minus_sign()]
        out = ""
        for n, term in enumerate(terms):
            if term.could_extract_minus_sign():
                out += " - " if n else "- "
                term = -term
            elif n:
                out += " + "
            text = self._print(term)
            out += rf"\left({text}\right)" if term.is_Add else text
        return out

    def _print_Piecewise(self, expr):  # never leak guards into a note
        raise ValueError("a Piecewise reached the printer: evaluate sums only at concrete sizes")


def _atomic(e: sympy.Basic) -> bool:
    return isinstance(e, Named | sympy.Indexed | sympy.Symbol)


def _hide_named(expr: sympy.Basic, sizes: frozenset) -> tuple[sympy.Basic, dict]:
    """Named quantities as plain symbols, so the printer treats p_i like z_i (no brackets)."""
    shown: dict[sympy.Symbol, str] = {}
    printer = NoteLatexPrinter()
    printer.sizes = sizes

    def swap(node):
        sym = sympy.Symbol(f"{node.label}[{','.join(map(str, node.idx))}]", real=True)
        shown[sym] = printer._print(node)
        return sym

    out = expr.replace(lambda e: isinstance(e, Named), swap)
    return out, shown


def sympy_latex(expr: sympy.Basic, sizes: frozenset[str] | set[str] = frozenset()) -> str:
    """LaTeX for a SymPy expression in a note; `sizes` are the names of the size symbols."""
    hidden, shown = _hide_named(expr, frozenset(sizes))
    printer = NoteLatexPrinter()
    printer.shown = shown
    printer.sizes = frozenset(sizes)
    return printer.doprint(hidden)
