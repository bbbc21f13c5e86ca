"""Every function of the formula language, each defined once (see `base.Function`)."""

from engine.functions import calculus, elementwise, linalg, ops, probability, reductions
from engine.functions.base import REGISTRY, Function, params_of

__all__ = [
    "REGISTRY",
    "Function",
    "params_of",
    "calculus",
    "elementwise",
    "linalg",
    "ops",
    "probability",
    "reductions",
    "select",
    "sorting",
    "stable",
]

# selection, masks and stable elementwise functions (issue 8): registered on import
from engine.functions import select, sorting, stable  # noqa: E402
