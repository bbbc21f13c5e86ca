"""The range check of integer labels (`y: index[B, V]`) in exported code: 0 <= y < V.

An exported function refuses a label outside 0..V-1 with a ValueError naming the argument and the
bound: without the check NumPy's one-hot gives a silent zero row for a label >= V and
take_along_axis wraps a negative label. Under jax.jit the labels are traced and their values
cannot be read, so the check runs only on concrete labels (see `JIT_NOTE`).
"""

from __future__ import annotations

import sympy

_BODY = """    flat = labels.reshape(-1)
    if flat.shape[0] and (int(flat.min()) < 0 or int(flat.max()) >= bound):
        bad = [int(v) for v in flat.tolist() if not 0 <= int(v) < bound][0]
        raise ValueError(
            f"{fn}: argument {name} has the label {bad}, outside 0..{bound - 1} "
            f"(its bound is {bound})"
        )"""

_DOC = '''def _check_labels(fn, name, labels, bound):
    """Integer labels must lie in 0..bound-1: ValueError naming the argument otherwise.'''

CHECK_LABELS = {
    "numpy": _DOC + '"""\n' + _BODY,
    "torch": _DOC + '"""\n' + _BODY,
    "jax": _DOC
    + '''

    Traced labels (under jax.jit) cannot be read, so they pass unchecked.
    """
    if isinstance(labels, jax.core.Tracer):
        return
'''
    + _BODY,
}

JIT_NOTE = (
    "Integer labels outside 0..V-1 raise ValueError, except under jax.jit, where the traced "
    "labels cannot be read and are not checked: there jnp.take_along_axis returns NaN for a "
    "label >= V and counts a negative label from the end, and jax.nn.one_hot gives a zero row; "
    "check the labels before calling a jitted function."
)


def _checkable(env, names: list[str], known: set[str] = frozenset()) -> dict[str, sympy.Expr]:
    """The index arguments whose bound is a number or sizes an axis (or a keyword) gives."""
    axes = {str(d) for v in names for d in env.vars[v].shape if d.is_Symbol} | set(known)
    out = {}
    for v in names:
        bound = getattr(env.vars[v], "bound", None)
        if env.vars[v].vtype != "index" or bound is None:
            continue
        b = sympy.sympify(bound)
        if all(str(s) in axes for s in b.free_symbols):
            out[v] = b
    return out


def label_sizes(env, names: list[str]) -> set[str]:
    """The sizes the label checks need (each read off an argument's axis)."""
    return {str(s) for b in _checkable(env, names).values() for s in b.free_symbols}


def label_checks(
    fn: str, names: list[str], env, arg: dict[str, str], size: dict[str, str], known: set[str]
) -> list[str]:
    """`_check_labels("f", "y", y, V)` for each index argument (empty when there is none);
    `known` are the sizes assigned before (keywords, solved)."""
    out = []
    for v, b in _checkable(env, names, known).items():
        py = {s: sympy.Symbol(size.get(str(s), str(s))) for s in b.free_symbols}
        text = str(int(b)) if b.is_Integer else str(b.subs(py))
        out.append(f'_check_labels("{fn}", "{v}", {arg[v]}, {text})')
    return out
