"""Information-theoretic losses: cross-entropy, entropy and KL divergence."""

from __future__ import annotations

import numpy as np
import sympy

from engine.expr import Call, Expr, call
from engine.functions.base import Function, broadcast, obj, register, sym_sum
from engine.functions.ops import unbroadcast


def _pair_shape(fname: str):
    def rule(shapes, p):
        broadcast(*shapes)
        return ()

    return rule


def _ce_vjp(n: Call, g: Expr, i: int) -> Expr:
    p, y = n.args
    if i == 0:
        return unbroadcast(-(g * y) / p, p.shape)
    return unbroadcast(-g * call("log", p), y.shape)


def _kl_vjp(n: Call, g: Expr, i: int) -> Expr:
    p, q = n.args
    if i == 0:
        return unbroadcast(g * (call("log", p / q) + 1), p.shape)
    return unbroadcast(-(g * p) / q, q.shape)


class XLogY(sympy.Function):
    """x * log(y) with 0 * log(y) = 0 for every y, so 0 * log 0 = 0 in the exact route too."""

    @classmethod
    def eval(cls, x, y):
        if x.is_zero:
            return sympy.Integer(0)
        if x.is_number and y.is_number:
            return x * sympy.log(y)
        return None

    def fdiff(self, argindex=1):
        x, y = self.args
        return sympy.log(y) if argindex == 1 else x / y


_xlogy_sym = np.frompyfunc(XLogY, 2, 1)


def _sym_xlogy(x, y) -> np.ndarray:
    """Entrywise XLogY of two object arrays, broadcast as NumPy does."""
    return obj(_xlogy_sym(obj(x), obj(y)))


def _xlogy(x, y):
    """x * log(y) with 0 * log(0) = 0: a probability that underflowed to 0 adds 0, not nan."""
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype == object or y.dtype == object:  # the verifier's high-precision numbers
        return np.frompyfunc(lambda a, b: 0 * b if a == 0 else a * b.log(), 2, 1)(x, y)
    zero = x == 0
    return np.where(zero, 0, x * np.log(np.where(zero, 1, y)))


register(
    Function(
        name="cross_entropy",
        nargs=2,
        shape=_pair_shape("cross_entropy"),
        numpy=lambda p, y: np.asarray(-np.sum(_xlogy(y, p))),
        sympy=lambda p, y: obj(-sym_sum(_sym_xlogy(y, p))[()]),
        latex=lambda n, s: rf"\operatorname{{CE}}\left({s(n.args[0], 0)}, {s(n.args[1], 0)}\right)",
        vjp=_ce_vjp,
        doc="cross-entropy -sum(y * log(p)) of predictions p against targets y",
    )
)
register(
    Function(
        name="entropy",
        nargs=1,
        shape=lambda s, p: (),
        numpy=lambda p: np.asarray(-np.sum(_xlogy(p, p))),
        sympy=lambda p: obj(-sym_sum(_sym_xlogy(p, p))[()]),
        latex=lambda n, s: rf"H\left({s(n.args[0], 0)}\right)",
        vjp=lambda n, g, i: -g * (call("log", n.args[0]) + 1),
        doc="Shannon entropy -sum(p * log(p))",
    )
)
register(
    Function(
        name="kl",
        nargs=2,
        shape=_pair_shape("kl"),
        numpy=lambda p, q: np.asarray(np.sum(_xlogy(p, p / q))),
        sympy=lambda p, q: obj(sym_sum(_sym_xlogy(p, obj(p / q)))[()]),
        latex=lambda n, s: (
            rf"D_{{\mathrm{{KL}}}}\left({s(n.args[0], 0)} \,\middle\|\, {s(n.args[1], 0)}\right)"
        ),
        vjp=_kl_vjp,
        doc="Kullback-Leibler divergence sum(p * log(p / q))",
    )
)
