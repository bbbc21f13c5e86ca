"""NumPy backend: evaluates a tree on float arrays; grad/jacobian by complex-step."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.backends.common import resolve_params
from engine.expr import Call, Const, EngineError, Expr, Ref, Size, Var, contains_derivative

COMPLEX_STEP = 1e-20  # no subtractive cancellation, so the step can be tiny
CENTRAL_STEP = 1e-6  # relative step for central differences (error ~ h^2 + eps / h)


def evaluate(expr: Expr, values: dict[str, np.ndarray], sizes: dict[str, int]) -> np.ndarray:
    """The value of `expr` at the given variable values and sizes (real or complex arrays)."""
    memo: dict[int, np.ndarray] = {}
    for node in expr.walk():
        memo[id(node)] = _eval_node(node, memo, values, sizes)
    return memo[id(expr)]


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
    args = [memo[id(a)] for a in node.args]
    return np.asarray(node.spec.numpy(*args, **resolve_params(node, sizes)))


def _perturbed(values, name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    out = dict(values)
    out[name] = x
    return out


def derivative_method(f: Expr) -> str:
    """Complex-step (machine precision) unless f nests a derivative: then central differences."""
    return "central" if contains_derivative(f) else "complex-step"


def directional(
    f: Expr, x: Var, direction: np.ndarray, values, sizes, method: str | None = None
) -> np.ndarray:
    """d/dt f(x + t * direction) at t = 0, independently of any symbolic derivative."""
    x0 = _real(values[x.name])
    method = method or derivative_method(f)
    if method == "complex-step":
        xc = x0 + 1j * COMPLEX_STEP * direction
        return evaluate(f, _perturbed(values, x.name, xc), sizes).imag / COMPLEX_STEP
    h = CENTRAL_STEP * max(1.0, float(np.max(np.abs(x0))) if x0.size else 1.0)
    plus = evaluate(f, _perturbed(values, x.name, x0 + h * direction), sizes)
    minus = evaluate(f, _perturbed(values, x.name, x0 - h * direction), sizes)
    return np.real(plus - minus) / (2 * h)


def _real(x) -> np.ndarray:
    """Real input as float64, or as long double when the caller asked for extended precision."""
    x = np.asarray(x)
    return x.astype(np.longdouble) if x.dtype == np.longdouble else x.astype(float)


def _per_coordinate(f: Expr, x: Var, values, sizes, out_shape) -> np.ndarray:
    x0 = _real(values[x.name])
    out = np.empty(out_shape, dtype=x0.dtype)
    for k in range(x0.size):
        e = np.zeros(x0.shape)
        e.flat[k] = 1.0
        out[(..., *np.unravel_index(k, x0.shape))] = directional(f, x, e, values, sizes)
    return out


def gradient(f: Expr, x: Var, values, sizes) -> np.ndarray:
    """Full gradient of scalar f, one directional derivative per coordinate of x."""
    return _per_coordinate(f, x, values, sizes, np.shape(values[x.name]))


def jacobian(f: Expr, x: Var, values, sizes) -> np.ndarray:
    """Jacobian of vector f: one directional derivative per column."""
    m = np.shape(evaluate(f, values, sizes))[0]
    return _per_coordinate(f, x, values, sizes, (m, np.size(values[x.name])))


def to_numpy(expr: Expr, sizes: dict[str, int] | None = None) -> Callable[..., np.ndarray]:
    """A NumPy callable taking the variables as keyword arguments (sizes inferred if not given)."""
    from engine.backends.common import infer_sizes

    def fn(**arrays: np.ndarray) -> np.ndarray:
        arrays = {k: np.asarray(v, dtype=float) for k, v in arrays.items()}
        return evaluate(expr, arrays, sizes or infer_sizes(expr, arrays))

    return fn
