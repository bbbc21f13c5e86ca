"""LaTeX printer: textbook notation for trees, through each function's own LaTeX rule."""

from __future__ import annotations

import re

import sympy

from engine.expr import Call, Const, Expr, Ref, Size, Var
from engine.printing.size_names import expr_name
from engine.printing.text import const_text, precedence

GREEK = {
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "pi",
    "rho",
    "sigma",
    "tau",
    "upsilon",
    "phi",
    "chi",
    "psi",
    "omega",
    "Gamma",
    "Delta",
    "Theta",
    "Lambda",
    "Xi",
    "Pi",
    "Sigma",
    "Phi",
    "Psi",
    "Omega",
}
ALIASES = {"eps": r"\epsilon", "lr": r"\eta", "lam": r"\lambda"}


def latex_name(name: str) -> str:
    """`beta1` -> \\beta_{1}, `dQ` -> \\mathrm{d}Q, `grad_Q` -> \\nabla_{Q}, `xhat` -> \\hat{x}."""
    m = re.fullmatch(r"([A-Za-z]+?)_?(\d+)", name)
    if m:
        return f"{latex_name(m.group(1))}_{{{m.group(2)}}}"
    if name.startswith("grad_") and name[5:].isidentifier():
        return rf"\nabla_{{{latex_name(name[5:])}}}"
    if name.startswith("_") or name.endswith("_"):  # `_x`, `x_`: no subscript to make
        return r"\mathrm{" + name.replace("_", r"\_") + "}"
    if "_" in name:
        head, tail = name.split("_", 1)
        tail = tail.replace("_", r"\_")
        return f"{latex_name(head)}_{{\\mathrm{{{tail}}}}}"
    if name.endswith("hat") and len(name) > 3:
        return rf"\hat{{{latex_name(name[:-3])}}}"
    if name in GREEK:
        return "\\" + name
    if name in ALIASES:
        return ALIASES[name]
    if len(name) == 1:
        return name
    if name[0] == "d" and len(name) > 1 and (name[1].isupper() or len(name) == 2):
        return rf"\mathrm{{d}}{latex_name(name[1:])}"
    return rf"\mathrm{{{name}}}"


def size_latex(name: str) -> str:
    """A size's name: `dh` (a head dimension) is d_{h}, never \\mathrm{d}h, which reads as a
    differential; other sizes as `latex_name`."""
    if len(name) == 2 and name[0] == "d" and name[1].isalpha():
        return f"d_{{{name[1]}}}"
    return latex_name(name)


def const_latex(value: sympy.Expr) -> str:
    """A constant as LaTeX: a typed decimal such as 0.044715 (a finite decimal whose
    denominator is 1000 or more, at most 12 characters long) prints as that decimal; other
    rationals as fractions (1/2 stays \\frac{1}{2}, 1e-8 stays \\frac{1}{100000000})."""
    if value.is_Rational and not value.is_Integer and value.q >= 1000:
        text = const_text(value)
        if "/" not in text and "e" not in text and len(text) <= 12:
            return text
    return sympy.latex(value)


def to_latex(e: Expr) -> str:
    """LaTeX for `e` (`\\operatorname{softmax}`, `\\odot`, `^\\top`); definitions print as names."""
    if isinstance(e, Size):
        return size_latex(e.name)
    if isinstance(e, Var | Ref):
        return latex_name(e.name)
    if isinstance(e, Const):
        return const_latex(e.value)
    assert isinstance(e, Call)
    named = expr_name(e)  # `dh * h` as `d` when a relation d = h * dh is declared
    if named is not None:
        return size_latex(named)

    def sub(child: Expr, prec: int) -> str:
        text = to_latex(child)
        atom = expr_name(child) is not None
        return rf"\left({text}\right)" if precedence(child) < prec and not atom else text

    return e.spec.latex(e, sub)
