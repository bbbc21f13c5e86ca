"""What every evaluating backend shares: resolving size parameters and walking in order."""

from __future__ import annotations

import functools
from typing import Any

import sympy

from engine.expr import Call, EngineError, size_symbol


def resolve_params(node: Call, sizes: dict[str, int]) -> dict[str, Any]:
    """A call's parameters with sizes (e.g. `dims=(n,)`) replaced by integers."""
    out: dict[str, Any] = {}
    for k, v in node.params:
        if isinstance(v, tuple) and any(isinstance(d, sympy.Expr) for d in v):
            out[k] = tuple(concrete_dim(d, sizes) for d in v)
        else:
            out[k] = v
    return out


def concrete_dim(d: sympy.Expr, sizes: dict[str, int]) -> int:
    if isinstance(d, int):
        return d
    if d.is_Integer:
        return int(d)
    # the numeric route evaluates each node thousands of times at one assignment of sizes
    return _concrete_dim(d, tuple(sorted(sizes.items())))


@functools.lru_cache(maxsize=4096)
def _concrete_dim(d: sympy.Expr, sizes: tuple[tuple[str, int], ...]) -> int:
    with sympy.evaluate(True):  # (the exact route may build its values unevaluated)
        value = d.xreplace({size_symbol(k): sympy.Integer(v) for k, v in sizes})
    if not value.is_Integer:
        raise EngineError(f"no value given for size {d}")
    return int(value)


def concrete_shape(shape, sizes: dict[str, int]) -> tuple[int, ...]:
    return tuple(concrete_dim(d, sizes) for d in shape)


def infer_sizes(expr, arrays: dict) -> dict[str, int]:
    """Size values read off the shapes of the arrays passed for the variables."""
    from engine.expr import format_shape, free_vars

    sizes: dict[str, int] = {}
    for name, var in free_vars(expr).items():
        if name not in arrays:
            raise EngineError(f"no value given for variable {name!r}")
        shape = arrays[name].shape
        if len(shape) != len(var.shape):
            raise EngineError(f"{name} should have shape {format_shape(var.shape)}, got {shape}")
        for d, actual in zip(var.shape, shape, strict=True):
            if d.is_Integer:
                if int(d) != actual:
                    raise EngineError(f"{name}: expected length {d}, got {actual}")
            elif sizes.setdefault(str(d), actual) != actual:
                raise EngineError(
                    f"size {d} is {sizes[str(d)]} in one place and {actual} in another"
                )
    return sizes
