"""Every function of the formula language, each defined once (see `base.Function`)."""

from engine.functions import (
    calculus,
    elementwise,
    linalg,
    ops,
    probability,
    reductions,
    structure,  # slicing, reshape, concat, stack
    tensor,  # tensors of any rank (issue 8)
)
from engine.functions.base import REGISTRY, Function, params_of

# isort: off
# linear algebra of the Matrix Cookbook (det, logdet, inv, solve, norm)
from engine.functions import matrices
# isort: on

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
    "structure",
    "matrices",
    "select",
    "sorting",
    "stable",
    "tensor",
]

# selection, masks and stable elementwise functions (issue 8): registered on import
from engine.functions import select, sorting, stable  # noqa: E402

# isort: off
# integer labels (issue 8): take_along_axis and one_hot over an index variable
from engine.functions import gather  # noqa: E402
# isort: on

__all__ += ["gather"]
