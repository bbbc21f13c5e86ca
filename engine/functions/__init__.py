"""Every function of the formula language, each defined once (see `base.Function`)."""

from engine.functions import (
    calculus,
    elementwise,
    linalg,
    ops,
    probability,
    reductions,
    tensor,  # tensors of any rank (issue 8)
)
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
    "tensor",
]
