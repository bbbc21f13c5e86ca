"""SymPy backend: evaluates a tree at concrete sizes on arrays of symbols; grad by `sympy.diff`."""

from __future__ import annotations

import numpy as np
import sympy

from engine.backends.common import concrete_shape, resolve_params
from engine.expr import Call, Const, EngineError, Expr, Ref, Size, Var, free_vars
from engine.functions.base import obj
from engine.types import TYPES


def entry_symbol(name: str, idx: tuple[int, ...], vtype: str) -> sympy.Symbol:
    """The symbol for one entry: `z[1]`, `Q[0,2]`; scalars keep their own name."""
    label = name if not idx else f"{name}[{','.join(map(str, idx))}]"
    return sympy.Symbol(label, **TYPES[vtype].assumptions)


def symbol_arrays(vars: dict[str, Var], sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """One object array of entry symbols per variable, at concrete sizes."""
    out = {}
    for name, var in vars.items():
        shape = concrete_shape(var.shape, sizes)
        arr = np.empty(shape, dtype=object)
        for idx in np.ndindex(shape):
            arr[idx] = entry_symbol(name, idx, var.vtype)
        out[name] = obj(arr)
    return out


# SymPy shares subexpressions, but substituting and evaluating walk them as trees: the tree of
# A @ A @ A @ A at 16 x 16 has 3.4e6 nodes (7 s), A^5 5.4e7 (75 s), and it grows exponentially.
# The shipped examples stay below 1e4. Past this limit the exact check refuses the claim.
MAX_TREE_SIZE = 5_000_000
# sympy.diff walks the tree once per coordinate, at about 5 microseconds a node: grad(sum(A @ A), A)
# at 16 x 16 is 3.2e6 node visits and 21 s. Beyond 1e6 (about 5 s) the exact check refuses.
MAX_DIFF_WORK = 1_000_000


def evaluate(expr: Expr, values: dict[str, np.ndarray], sizes: dict[str, int]) -> np.ndarray:
    """The value of `expr` as an object array of SymPy expressions (0-d for a scalar)."""
    memo: dict[int, np.ndarray] = {}
    sizes_seen: dict[int, int] = {}
    for node in expr.walk():
        memo[id(node)] = value = _eval_node(node, memo, values, sizes)
        if sum(tree_size(v, sizes_seen) for v in value.flat) > MAX_TREE_SIZE:
            raise too_large(MAX_TREE_SIZE, "terms")
    return memo[id(expr)]


# The exact route's own evaluation (engine/verify/exact.py: one mpmath pass and one reverse sweep
# over the distinct subexpressions) costs what the DAG costs, not the tree: a pre-LN transformer
# block at the small sizes has a tree of more than 1e12 nodes and a DAG of about 1e5. Its limit is
# on distinct nodes (memory: about 1 kB each with SymPy's caches).
MAX_DAG_SIZE = 2_000_000


def dag_size(e, seen: set[int]) -> int:
    """Nodes of `e` not yet in `seen` (by identity), each counted once; adds them to `seen`."""
    if not isinstance(e, sympy.Basic) or id(e) in seen:
        return 0
    count = 0
    stack = [e]
    seen.add(id(e))
    while stack:
        node = stack.pop()
        count += 1
        for a in node.args:
            if id(a) not in seen:
                seen.add(id(a))
                stack.append(a)
    return count


def too_large(limit: int, what: str) -> EngineError:
    """The one-line refusal of a claim whose SymPy expressions exceed `limit` (`what`)."""
    return EngineError(
        f"the claim is too large for the exact check: its SymPy expressions exceed {limit} "
        f"{what} at the small sizes (a long chain of matrix products?)"
    )


def tree_size(e, memo: dict[int, int]) -> int:
    """Nodes in the expression tree of `e` with shared subexpressions counted each time."""
    if not isinstance(e, sympy.Basic):
        return 1
    stack = [(e, False)]
    while stack:
        node, expanded = stack.pop()
        if id(node) in memo:
            continue
        if expanded:
            memo[id(node)] = 1 + sum(memo[id(a)] for a in node.args)
        else:
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if id(a) not in memo)
    return memo[id(e)]


def _eval_node(node: Expr, memo, values, sizes) -> np.ndarray:
    if isinstance(node, Var):
        if node.name not in values:
            raise EngineError(f"no value given for variable {node.name!r}")
        return obj(values[node.name])
    if isinstance(node, Const):
        return obj(node.value)
    if isinstance(node, Size):
        return obj(sympy.Integer(sizes[node.name]))
    if isinstance(node, Ref):
        return memo[id(node.body)]
    assert isinstance(node, Call)
    if node.fn in ("grad", "jacobian"):
        return _derivative(node, memo, values)
    if node.fn == "hessian":
        from engine.functions.calculus import expand_hessians

        return evaluate(expand_hessians(node), values, sizes)
    args = [memo[id(a)] for a in node.args]
    return obj(node.spec.sympy(*args, **resolve_params(node, sizes)))


def _derivative(node: Call, memo, values) -> np.ndarray:
    f = memo[id(node.args[0])]
    xs = obj(values[node.args[1].name])
    if any(not isinstance(s, sympy.Symbol) for s in xs.flat):
        raise EngineError("grad/jacobian need symbolic inputs in the SymPy backend")
    coords = xs.size
    work = coords * sum(tree_size(v, {}) for v in f.flat)
    if work > MAX_DIFF_WORK:
        raise EngineError(
            f"{node.fn}() is too large for the exact check ({work} node visits to differentiate, "
            f"limit {MAX_DIFF_WORK}); use size symbols instead of large literal sizes"
        )
    if node.fn == "grad":
        scalar = f[()]
        out = np.empty(xs.shape, dtype=object)
        for idx in np.ndindex(xs.shape):
            out[idx] = _diff(scalar, xs[idx], node)
        return obj(out)
    out = np.empty(f.shape + xs.shape, dtype=object)
    for i in np.ndindex(f.shape):
        for j in np.ndindex(xs.shape):
            out[i + j] = _diff(f[i], xs[j], node)
    return out


def _diff(f: sympy.Expr, x: sympy.Symbol, node: Call) -> sympy.Expr:
    """d f / d x. The kinked functions (relu, abs, step, sign) are SymPy functions with their own
    `fdiff` (engine/functions/elementwise.py), so SymPy never leaves their derivative
    unevaluated; anything else it leaves unevaluated is reported cleanly."""
    d = sympy.diff(f, x)
    if d.has(sympy.Derivative):
        raise EngineError(
            f"{node.fn}(): SymPy cannot differentiate this exactly (is an argument complex, "
            "e.g. a log of a negative value?)"
        )
    return d


def to_sympy(expr: Expr, sizes: dict[str, int]) -> sympy.Expr | sympy.ImmutableMatrix:
    """The expression at concrete sizes: a SymPy scalar, or a Matrix for vectors and matrices.

    Entries of a variable `Q` are the symbols `Q[i,j]`; vectors become column matrices.
    """
    value = evaluate(expr, symbol_arrays(free_vars(expr), sizes), sizes)
    if value.ndim == 0:
        return value[()]
    if value.ndim == 1:
        return sympy.ImmutableMatrix(value.tolist())
    if value.ndim == 2:
        return sympy.ImmutableMatrix(value.tolist())
    return sympy.ImmutableDenseNDimArray(value.tolist())
