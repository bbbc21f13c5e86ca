"""Rewrite rules for integer labels (engine/functions/gather.py): one_hot's rows sum to one.

Each rule is a small named function whose docstring states its identity; they join the
rewriter's table (`engine.derive.simplify.RULES`) at its end, and tests/test_simplify_rules.py
turns every example into a claim for the verifier.
"""

from __future__ import annotations

from engine.expr import Call, Const, Expr, call
from engine.functions.base import params_of


def sum_one_hot(n: Call) -> Expr | None:
    """sum(one_hot(y, axis=a), axis=a) = 1: each label has exactly one 1 along the class axis."""
    (x,) = n.args
    if n.fn != "sum" or not (isinstance(x, Call) and x.fn == "one_hot"):
        return None
    rank = len(x.shape)
    hot = params_of(x)["axis"] % rank
    axis = params_of(n)["axis"]
    if isinstance(axis, tuple) and len(axis) == 1:
        axis = axis[0]
    if (axis is None and rank == 1) or (isinstance(axis, int) and axis % rank == hot):
        return call("ones", dims=tuple(n.shape)) if n.shape else Const(1)
    return None
