"""NumPy backend: evaluates a tree on float arrays; grad/jacobian by complex-step."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.backends.common import resolve_params
from engine.expr import Call, Const, EngineError, Expr, Ref, Size, Var

COMPLEX_STEP = 1e-20  # no subtractive cancellation, so the step can be tiny
CENTRAL_STEP = 1e-6  # relative step for central differences (error ~ h^2 + eps / h)


def evaluate(
    expr: Expr,
    values: dict[str, np.ndarray],
    sizes: dict[str, int],
    fixed: dict | None = None,
    order: list[Expr] | None = None,
) -> np.ndarray:
    """The value of `expr` at the given variable values and sizes (real or complex arrays);
    `fixed` holds values already known of some nodes (by id), see `independent_values`;
    `order` is `list(expr.walk())` when the caller evaluates `expr` many times."""
    memo: dict[int, np.ndarray] = dict(fixed) if fixed else {}
    for node in order if order is not None else expr.walk():
        if id(node) not in memo:
            memo[id(node)] = _eval_node(node, memo, values, sizes)
    return memo[id(expr)]


def independent_values(f: Expr, x: Var, values, sizes) -> dict[int, np.ndarray]:
    """The values of the nodes of `f` that do not depend on `x`: a derivative along x evaluates
    f once per coordinate, and need not recompute them (the other head of an attention layer)."""
    dependent: set[int] = set()
    memo: dict[int, np.ndarray] = {}
    for node in f.walk():
        if (isinstance(node, Var) and node.name == x.name) or any(
            id(c) in dependent for c in node.children()
        ):
            dependent.add(id(node))
        else:
            memo[id(node)] = _eval_node(node, memo, values, sizes)
    return memo


def _eval_node(node: Expr, memo, values, sizes) -> np.ndarray:
    if isinstance(node, Var):
        if node.name not in values:
            raise EngineError(f"no value given for variable {node.name!r}")
        return np.asarray(values[node.name])
    if isinstance(node, Const):
        return np.asarray(float(node.value))  # float64; long double inputs upcast around it
    if isinstance(node, Size):
        if node.name not in sizes:
            raise EngineError(f"no value given for size {node.name!r}")
        return np.asarray(float(sizes[node.name]))
    if isinstance(node, Ref):
        return memo[id(node.body)]
    assert isinstance(node, Call)
    if node.fn == "grad":
        return gradient(node.args[0], node.args[1], values, sizes)
    if node.fn == "jacobian":
        return jacobian(node.args[0], node.args[1], values, sizes)
    if node.fn == "hessian":
        from engine.functions.calculus import expand_hessians

        inner = expand_hessians(node)
        return jacobian(inner.args[0], inner.args[1], values, sizes)
    args = [memo[id(a)] for a in node.args]
    return np.asarray(node.spec.numpy(*args, **resolve_params(node, sizes)))


def _perturbed(values, name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(values)
    out[name] = x
    return out


# Nested central differences (a Hessian's inner gradient, inside an outer complex step) try the
# steps h0 / 4**k, k = 0..RICHARDSON_LEVELS, extrapolate each neighbouring pair (h^4 truncation)
# and keep the pair whose extrapolations agree best: no single step suits sigmoid at x = 40
# (variation on a scale of 1) and a log-barrier at x = 1e-10 (on a scale of 1e-10).
RICHARDSON_LEVELS = 5


def directional(
    f: Expr,
    x: Var,
    direction: np.ndarray,
    values,
    sizes,
    method: str | None = None,
    fixed: dict | None = None,
    order: list[Expr] | None = None,
) -> np.ndarray:
    """d/dt f(x + t * direction) at t = 0, independently of any symbolic derivative: by
    complex-step, or, inside an outer complex step (a nested derivative), by `_richardson`."""
    if method is None:
        nested = any(np.iscomplexobj(v) for v in values.values())
        method = "richardson" if nested else "complex-step"
    if method == "complex-step":
        x0 = _real(values[x.name])
        xc = x0 + 1j * COMPLEX_STEP * direction
        at = _perturbed(values, x.name, xc)
        return evaluate(f, at, sizes, fixed, order).imag / COMPLEX_STEP
    if method == "richardson":
        return _richardson(f, x, direction, values, sizes, fixed)
    x0 = _real(values[x.name])
    h = CENTRAL_STEP * max(1.0, float(np.max(np.abs(x0))) if x0.size else 1.0)
    plus = evaluate(f, _perturbed(values, x.name, x0 + h * direction), sizes)
    minus = evaluate(f, _perturbed(values, x.name, x0 - h * direction), sizes)
    return np.real(plus - minus) / (2 * h)


def _richardson(f: Expr, x: Var, direction: np.ndarray, values, sizes, fixed=None) -> np.ndarray:
    """Central differences at steps h0 / 4**k, Richardson-extrapolated, the best-agreeing pair
    kept for each entry; x may be complex (inside an outer complex step), and the result keeps
    its imaginary part, which is what the outer derivative reads (so the pair is chosen by it
    when present)."""
    x0 = np.asarray(values[x.name])
    ref = np.abs(np.real(x0))
    support = np.asarray(direction) != 0
    own = float(np.min(ref[support])) if np.any(support) else 0.0
    if x.vtype == "real":
        h0 = 0.1 * max(1.0, own)  # no domain edge: start wide, a function of scale 1 needs it
    else:
        h0 = 0.25 * own if own > 0 else 0.1  # positive, unit, simplex: x_k - h stays inside

    def central(step: float) -> np.ndarray:
        plus = evaluate(f, _perturbed(values, x.name, x0 + step * direction), sizes, fixed)
        minus = evaluate(f, _perturbed(values, x.name, x0 - step * direction), sizes, fixed)
        return (np.asarray(plus) - np.asarray(minus)) / (2 * step)

    d = [central(h0 / 4**k) for k in range(RICHARDSON_LEVELS + 1)]
    r = np.stack([(16 * d[k + 1] - d[k]) / 15 for k in range(RICHARDSON_LEVELS)])
    part = np.imag if np.any(np.imag(r) != 0) else np.real
    # per entry: each entry of the result has its own best step (a large and a tiny Hessian
    # entry of a saturated logistic regression differ by e^45)
    spread = np.nan_to_num(np.abs(part(np.diff(r, axis=0))), nan=np.inf)
    best = np.argmin(spread, axis=0)
    return np.take_along_axis(r[1:], best[None, ...], axis=0)[0]


def _real(x) -> np.ndarray:
    """Real input as float64, or as long double when the caller asked for extended precision."""
    x = np.asarray(x)
    return x.astype(np.longdouble) if x.dtype == np.longdouble else x.astype(float)


def _per_coordinate(f: Expr, x: Var, values, sizes, out_shape) -> np.ndarray:
    x0 = np.asarray(values[x.name])
    fixed = independent_values(f, x, values, sizes)
    order = list(f.walk())  # walked once, evaluated once per coordinate
    columns = []
    for k in range(x0.size):
        e = np.zeros(x0.shape)
        e.flat[k] = 1.0
        columns.append(directional(f, x, e, values, sizes, fixed=fixed, order=order))
    dtype = np.result_type(np.real(x0), *columns) if columns else np.real(x0).dtype
    out = np.empty(out_shape, dtype=dtype)
    for k, column in enumerate(columns):
        out[(..., *np.unravel_index(k, x0.shape))] = column
    return out


def gradient(f: Expr, x: Var, values, sizes) -> np.ndarray:
    """Full gradient of scalar f, one directional derivative per coordinate of x."""
    return _per_coordinate(f, x, values, sizes, np.shape(values[x.name]))


def jacobian(f: Expr, x: Var, values, sizes) -> np.ndarray:
    """Jacobian of f (shape f.shape + x.shape): one directional derivative per coordinate of x."""
    shape = np.shape(evaluate(f, values, sizes)) + np.shape(values[x.name])
    return _per_coordinate(f, x, values, sizes, shape)


def to_numpy(expr: Expr, sizes: dict[str, int] | None = None) -> Callable[..., np.ndarray]:
    """A NumPy callable taking the variables as keyword arguments (sizes inferred if not given)."""
    from engine.backends.common import infer_sizes

    def fn(**arrays: np.ndarray) -> np.ndarray:
        arrays = {k: np.asarray(v, dtype=float) for k, v in arrays.items()}
        return evaluate(expr, arrays, sizes or infer_sizes(expr, arrays))

    return fn
