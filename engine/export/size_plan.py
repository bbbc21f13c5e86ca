"""How an exported function gets each size: read off an axis, solved from a relation, or a keyword.

A size that is the length of an argument's axis is read off it (`n = X.shape[0]`). A size that is
only part of an axis length (dh in an axis of length d = h * dh) is solved from that length once
the other sizes in it are known (`dh = X.shape[1] // h`). A size that no axis determines (h and dh
when every axis has length h * dh; a label bound V of `y: index[B, V]` used as a size) becomes a
keyword-only parameter of the exported function, the first of the relation as written (h in
d = h * dh) before the rest is solved. Every axis whose length combines sizes is then checked
against the sizes (`X.shape[1] != h * dh`: ValueError naming the axis and the sizes), so a head
count that does not divide d is an error, never a silent floor division.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

SIZE_ARG = '''def _size_arg(fn, name, value):
    """A size given as a keyword argument: a positive integer (ValueError otherwise).

    It must be a Python (or NumPy) integer, not an array: under jax.jit make it static, e.g.
    jax.jit(functools.partial(fn, h=4)) or jax.jit(fn, static_argnames="h").
    """
    import operator

    try:
        size = operator.index(value)
    except Exception:  # an array, a float, a traced value
        size = None
    if size is None or isinstance(value, bool) or size < 1:
        raise ValueError(
            f"{fn}: the size {name} must be a positive integer (a static Python int), "
            f"got {value!r}"
        )
    return size'''


@dataclass
class SizePlan:
    """The statements that give an exported function its sizes, and what they mean."""

    params: list[str] = field(default_factory=list)  # sizes taken as keyword-only arguments
    lines: list[str] = field(default_factory=list)  # reads, solutions, then checks
    solved: list[str] = field(default_factory=list)  # "dh = X.shape[1] // h (d = dh*h)" for docs
    solved_sizes: set[str] = field(default_factory=set)
    checks: int = 0  # axis lengths checked against the sizes


def plan_sizes(
    fn: str,
    env,
    names: list[str],
    arg: dict[str, str],
    py: dict[str, str],
    need: list[str],
    first: dict[str, str],
    known: set[str],
    params_allowed: bool = True,
) -> SizePlan:
    """The plan for the sizes `need` (in declaration order) of a function of the arguments
    `names`; `first` maps a size to the axis it can be read off (`X.shape[0]`), `known` are the
    sizes already assigned, `py` the sizes' Python names."""
    plan = SizePlan()
    known = set(known)
    need = list(need)
    order = list(env.sizes)
    relation_of = {sympy.expand(v): k for k, v in env.size_rels.items()}
    renamed = {sympy.Symbol(s, positive=True, integer=True): sympy.Symbol(py[s]) for s in py}
    axes = [
        (v, i, d)
        for v in names
        for i, d in enumerate(env.vars[v].shape)
        if not d.is_Integer and not d.is_Symbol
    ]

    def text(e: sympy.Expr) -> str:
        return str(e.xreplace(renamed))

    def read(s: str) -> None:
        if s not in known and s in first:
            plan.lines.append(f"{py[s]} = {first[s]}")
            known.add(s)

    def unknown_in(d: sympy.Expr) -> list[str]:
        syms = sorted((x.name for x in d.free_symbols), key=order.index)
        return [s for s in syms if s not in known and s not in first]

    def solve_one() -> bool:
        for v, i, d in axes:
            missing = unknown_in(d)
            if len(missing) != 1 or missing[0] not in need:
                continue
            u = missing[0]
            length = sympy.Symbol("_length", positive=True, integer=True)
            target = sympy.Symbol(u, positive=True, integer=True)
            sol = sympy.solve(sympy.Eq(d, length), target)
            if len(sol) != 1:
                continue
            num, den = sympy.fraction(sympy.together(sol[0]))
            if not (num.is_polynomial() and den.is_polynomial()):  # sqrt(...): not exact
                continue
            for s in sorted((x.name for x in d.free_symbols if x.name != u), key=order.index):
                read(s)
            here = f"{arg[v]}.shape[{i}]"
            body = text(num).replace("_length", here)
            rhs = body if den == 1 else f"{_paren(body)} // {_paren(text(den))}"
            plan.lines.append(f"{py[u]} = {rhs}")
            rel = relation_of.get(sympy.expand(d))
            plan.solved.append(f"{py[u]} = {rhs}" + (f" (from {rel} = {text(d)})" if rel else ""))
            known.add(u)
            plan.solved_sizes.add(u)
            return True
        return False

    while True:
        for s in need:
            read(s)
        missing = [s for s in need if s not in known]
        if not missing:
            break
        if solve_one():
            continue
        s = missing[0]
        with_s = [d for _, _, d in axes if s in {x.name for x in d.free_symbols}]
        param = unknown_in(with_s[0])[0] if with_s else s
        if not params_allowed:
            from engine.export.emitter import ExportError

            raise ExportError(
                f"size {param} is not the length of any argument's axis, so this form cannot "
                "read it (export --as function, which takes it as a keyword argument)"
            )
        plan.params.append(param)
        plan.lines.append(f'{py[param]} = _size_arg("{fn}", "{py[param]}", {py[param]})')
        known.add(param)
        if param not in need:
            need.append(param)
    # Every axis length that combines sizes, once per length: the sizes must give it.
    checked: set[sympy.Expr] = set()
    for v, i, d in axes:
        syms = {x.name for x in d.free_symbols}
        if d in checked or not all(s in known or s in first for s in syms):
            continue
        for s in sorted(syms, key=order.index):
            read(s)
        checked.add(d)
        plan.checks += 1
        here = f"{arg[v]}.shape[{i}]"
        rel = relation_of.get(sympy.expand(d))
        what = f"{rel} = {text(d)}" if rel else text(d)
        values = ", ".join(
            f"{py[s]} = {{{py[s]}}}" for s in sorted(syms, key=order.index) if s in py
        )
        solved_here = sorted(syms & plan.solved_sizes, key=order.index)
        cond = f"{here} != {text(d)}" + "".join(f" or {py[s]} < 1" for s in solved_here)
        plan.lines += [
            f"if {cond}:",
            "    raise ValueError(",
            f'        f"{fn}: argument {v} has an axis {i} of length {{{here}}}, "',
            f'        f"declared {what}: no sizes give it with {values}"',
            "    )",
        ]
    return plan


def sizes_paragraph(plan: SizePlan, py: dict[str, str]) -> str:
    """The docstring's account of the sizes: keywords, solved sizes, the check."""
    parts = []
    if plan.params:
        names = ", ".join(py[s] for s in plan.params)
        parts.append(
            f"Sizes: {names} {'is a' if len(plan.params) == 1 else 'are'} keyword-only "
            f"argument{'' if len(plan.params) == 1 else 's'} ({names}=...: no argument's axis "
            "has that length alone; under jax.jit pass it as static)."
        )
    if plan.solved:
        parts.append(("Sizes solved" if not parts else "Solved") + ": " + "; ".join(plan.solved))
        parts[-1] += "."
    if plan.checks:
        parts.append("ValueError when an axis length is not what the sizes give.")
    return " ".join(parts)


def _paren(text: str) -> str:
    """`X.shape[1]` and `h` as they are, `h*k` or `d - 1` in parentheses."""
    simple = text.replace(".", "").replace("_", "").replace("[", "").replace("]", "")
    return text if simple.isalnum() else f"({text})"
