"""Numerically stable elementwise functions: log1p, expm1, logsigmoid."""

from __future__ import annotations

import numpy as np
import sympy

from engine.expr import call
from engine.functions.base import latex_fn
from engine.functions.elementwise import _np_softplus, _paren, elementwise


def _np_log1p(x):
    """log(1 + x) without cancellation for tiny x; NaN below -1 (also for complex-step input)."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        x = np.where(x.real < -1, np.nan, x)
    return np.log1p(x)


def _np_logsigmoid(x):
    """log sigmoid(x) = -softplus(-x): no overflow for large |x| (exp(-|x|) only)."""
    return -_np_softplus(-np.asarray(x))


elementwise(
    "log1p",
    _np_log1p,
    lambda x: sympy.log(1 + x),
    lambda n, x: 1 / (1 + x),
    lambda a: rf"\log\left(1 + {a}\right)",
    "log(1 + x), accurate for small x (x > -1)",
)
elementwise(
    "expm1",
    np.expm1,
    lambda x: sympy.exp(x) - 1,
    lambda n, x: call("exp", x),
    _paren(latex_fn("expm1")),
    "exp(x) - 1, accurate for small x",
)
elementwise(
    "logsigmoid",
    _np_logsigmoid,
    lambda x: -sympy.log(1 + sympy.exp(-x)),
    lambda n, x: call("sigmoid", -x),
    _paren(r"\log\sigma"),
    "log sigmoid(x) = -softplus(-x), computed without overflow",
)
