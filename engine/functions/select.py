"""Selection and masks: maximum, minimum, clip, where, tril/triu, max/min/argmax, cumsum.

Kinks follow PyTorch's derivative conventions in every backend (NumPy's complex-step forms, the
SymPy forms' `fdiff`, the VJPs), so a gradient claim is decided the same way at a tie:
- `maximum(a, b)`, `minimum(a, b)`: at a tie a = b each argument gets half the gradient
  (torch.maximum/minimum); elsewhere the larger (smaller) one gets all of it.
- `clip(x, lo, hi)` = minimum(maximum(x, lo), hi) as np.clip and torch.clamp: x gets the gradient
  where lo <= x <= hi (inclusive at both ends), lo where x < lo (and lo < hi), hi where x > hi
  (or hi < lo). relu6 = clip(x, 0, 6) therefore has slope 1 at 0 and 6 (torch.clamp), unlike
  relu'(0) = 0.
- `max(x, axis)`, `min(x, axis)`: the gradient is shared equally between tied maximal entries
  (torch.amax/amin).
- `where(mask, a, b)`: a where mask != 0, else b; no gradient reaches the mask.
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy

from engine.expr import Call, Const, EngineError, Expr, Shape, ShapeError, call
from engine.functions.base import (
    Function,
    broadcast,
    latex_fn,
    need_rank,
    normalize_axis,
    obj,
    params_of,
    register,
)
from engine.functions.elementwise import (
    Sign,
    Step,
    compared_all,
    compared_with_zero,
    evalf_continuous,
)
from engine.functions.ops import unbroadcast
from engine.functions.reductions import REDUCE_PARAMS, _reduce_latex, _reduce_shape, expand_back
from engine.printing.size_names import dim_latex

half = Const(sympy.Rational(1, 2))


def _real(x):
    """The real part for comparisons: complex-step input is split on its real part."""
    x = np.asarray(x)
    return x if x.dtype == object else x.real


# ---------------------------------------------------------------- SymPy forms


class Maximum(sympy.Function):
    """max(a, b) with d/da = (1 + sign(a - b)) / 2: half the gradient each at a tie (PyTorch)."""

    is_real = True
    mp_compared = staticmethod(compared_all)
    mp_jump = False

    @classmethod
    def eval(cls, a, b):
        if a.is_number and b.is_number and a.is_comparable and b.is_comparable:
            return a if a >= b else b
        if a == b:
            return a
        return None

    def fdiff(self, argindex=1):
        a, b = self.args
        s = Sign(a - b) if argindex == 1 else Sign(b - a)
        return (1 + s) / 2

    def _eval_evalf(self, prec):
        return evalf_continuous(self, prec)

    # value and partials at mpmath numbers, for the exact route's fast evaluation and adjoint
    @staticmethod
    def mp_value(a, b):
        return a if a >= b else b

    @staticmethod
    def mp_partials(v, a, b):
        return [1, 0] if a > b else [0, 1] if a < b else [0.5, 0.5]


class Minimum(sympy.Function):
    """min(a, b) with d/da = (1 - sign(a - b)) / 2: half the gradient each at a tie (PyTorch)."""

    is_real = True
    mp_compared = staticmethod(compared_all)
    mp_jump = False

    @classmethod
    def eval(cls, a, b):
        if a.is_number and b.is_number and a.is_comparable and b.is_comparable:
            return a if a <= b else b
        if a == b:
            return a
        return None

    def fdiff(self, argindex=1):
        a, b = self.args
        s = Sign(a - b) if argindex == 1 else Sign(b - a)
        return (1 - s) / 2

    def _eval_evalf(self, prec):
        return evalf_continuous(self, prec)

    @staticmethod
    def mp_value(a, b):
        return a if a <= b else b

    @staticmethod
    def mp_partials(v, a, b):
        return [1, 0] if a < b else [0, 1] if a > b else [0.5, 0.5]


def _ge(a, b):
    """1 where a >= b, else 0 (as 1 - step(b - a))."""
    return 1 - Step(b - a)


class Clip(sympy.Function):
    """min(max(x, lo), hi) with torch.clamp's derivatives: x where lo <= x <= hi, lo where x < lo
    and lo < hi, hi where x > hi or hi < lo."""

    is_real = True
    mp_compared = staticmethod(compared_all)
    mp_jump = False

    @classmethod
    def eval(cls, x, lo, hi):
        if all(v.is_number and v.is_comparable for v in (x, lo, hi)):
            r = lo if x < lo else x
            return hi if r > hi else r
        return None

    def fdiff(self, argindex=1):
        x, lo, hi = self.args
        if argindex == 1:
            return _ge(x, lo) * _ge(hi, x)
        if argindex == 2:
            return Step(lo - x) * Step(hi - lo)
        return 1 - _ge(hi, x) * _ge(hi, lo)

    def _eval_evalf(self, prec):
        return evalf_continuous(self, prec)

    @staticmethod
    def mp_value(x, lo, hi):
        r = lo if x < lo else x
        return hi if r > hi else r

    @staticmethod
    def mp_partials(v, x, lo, hi):
        dx = 1 if lo <= x <= hi else 0
        dlo = 1 if x < lo < hi else 0
        dhi = 1 - (1 if x <= hi and lo <= hi else 0)
        return [dx, dlo, dhi]


class Where(sympy.Function):
    """a where the mask m is nonzero, else b; evaluates once m is a number (so -oo in the other
    branch never meets a 0 * oo)."""

    mp_compared = staticmethod(compared_with_zero)  # the mask
    mp_jump = True

    @classmethod
    def eval(cls, m, a, b):
        if m.is_number:
            return b if m.is_zero else a
        if a == b:
            return a
        return None

    def fdiff(self, argindex=1):
        m, a, b = self.args
        if argindex == 1:
            return sympy.Integer(0)
        return Where(m, 1, 0) if argindex == 2 else Where(m, 0, 1)

    @staticmethod
    def mp_value(m, a, b):
        return a if m != 0 else b

    @staticmethod
    def mp_partials(v, m, a, b):
        return [None, 1 if m != 0 else 0, 0 if m != 0 else 1]  # None: a jump in the mask


class MaxOf(sympy.Function):
    """The largest argument; the derivative is shared equally by tied largest arguments
    (torch.amax). Cheaper than sympy.Max, which compares its symbolic arguments pairwise."""

    is_real = True
    mp_compared = staticmethod(compared_all)
    mp_jump = False
    largest = True

    @classmethod
    def eval(cls, *xs):
        if len(xs) == 1:
            return xs[0]
        if all(x.is_number and x.is_comparable for x in xs):
            return max(xs) if cls.largest else min(xs)
        return None

    def fdiff(self, argindex=1):
        hits = [1 - Step(self - x) if self.largest else 1 - Step(x - self) for x in self.args]
        return hits[argindex - 1] / sympy.Add(*hits)

    def _eval_evalf(self, prec):
        return evalf_continuous(self, prec)

    @classmethod
    def mp_value(cls, *xs):
        return max(xs) if cls.largest else min(xs)

    @classmethod
    def mp_partials(cls, v, *xs):
        hits = [1 if x == v else 0 for x in xs]
        # at the caller's working precision: 1 / 3 in Python is a float64, 17 digits where the
        # exact route's bounds assume 50 (a tie of three then failed a right claim by 1.85e-17)
        return [mpmath.mpf(h) / sum(hits) for h in hits]


class MinOf(MaxOf):
    """The smallest argument; ties share the derivative equally (torch.amin)."""

    largest = False


def _first_extreme(xs, largest: bool) -> int:
    """The index of the first largest (smallest) of xs: numbers that compare (SymPy or mpmath)."""
    best = 0
    for i, x in enumerate(xs):
        if (x > xs[best]) if largest else (x < xs[best]):
            best = i
    return best


class ArgMax(sympy.Function):
    """The index of the first largest argument; evaluates once every argument is a number."""

    mp_compared = staticmethod(compared_all)
    mp_jump = True
    largest = True

    @classmethod
    def eval(cls, *xs):
        if all(x.is_number and x.is_comparable for x in xs):
            return sympy.Integer(_first_extreme(xs, cls.largest))
        return None

    def fdiff(self, argindex=1):
        raise EngineError("argmax() is not differentiable (its value is an index)")

    # At mpmath numbers, for the exact route's adjoint: an index is piecewise constant, so its
    # partials are 0 (a claim that differentiates through argmax is refused before the check;
    # the adjoint meets argmax(q) where the sweep takes every symbol of the point, q included).
    @classmethod
    def mp_value(cls, *xs):
        return mpmath.mpf(_first_extreme(xs, cls.largest))

    @staticmethod
    def mp_partials(v, *xs):
        return [0] * len(xs)


class ArgMin(ArgMax):
    """The index of the first smallest argument."""

    largest = False


def _sym_pairwise(f):
    uf = np.frompyfunc(f, 2, 1)
    return lambda a, b: obj(uf(obj(a), obj(b)))


_sym_clip_u = np.frompyfunc(Clip, 3, 1)
_sym_where_u = np.frompyfunc(Where, 3, 1)


def _sym_reduce_along(f, x, axis=None, keepdims=False):
    """f(*entries) along an axis (or over every entry) of an object array."""
    x = obj(x)
    if axis is None:
        v = f(*x.ravel().tolist())
        return obj(v) if not keepdims else np.full((1,) * x.ndim, v, dtype=object)
    moved = np.moveaxis(x, axis, -1)
    out = np.empty(moved.shape[:-1], dtype=object)
    for idx in np.ndindex(out.shape):
        out[idx] = f(*moved[idx].tolist())
    if keepdims:
        out = np.expand_dims(out, axis)
    return obj(out)


# ---------------------------------------------------------------- NumPy forms (complex-step safe)


def _np_maximum(a, b):
    a, b = np.asarray(a), np.asarray(b)
    ra, rb = _real(a), _real(b)
    return np.where(ra > rb, a, np.where(ra < rb, b, (a + b) / 2))


def _np_minimum(a, b):
    a, b = np.asarray(a), np.asarray(b)
    ra, rb = _real(a), _real(b)
    return np.where(ra < rb, a, np.where(ra > rb, b, (a + b) / 2))


def _np_clip(x, lo, hi):
    x, lo, hi = np.asarray(x), np.asarray(lo), np.asarray(hi)
    r = np.where(_real(x) < _real(lo), lo, x)
    return np.where(_real(r) > _real(hi), hi, r)


def _np_where(m, a, b):
    return np.where(np.asarray(m) != 0, a, b)


def _np_reduce_extreme(largest: bool):
    def f(x, axis=None, keepdims=False):
        x = np.asarray(x)
        if x.dtype == object:  # the verifier's high-precision numbers
            pick = max if largest else min
            return np.asarray(_obj_reduce(pick, x, axis, keepdims))
        r = x.real
        m = (np.max if largest else np.min)(r, axis=axis, keepdims=True)
        if not np.iscomplexobj(x):
            return np.asarray(m if keepdims else np.squeeze(m, axis=axis))
        # complex-step: the mean of the tied extreme entries (torch.amax's shared gradient)
        hit = r == m
        out = np.sum(np.where(hit, x, 0), axis=axis, keepdims=True) / np.sum(
            hit, axis=axis, keepdims=True
        )
        return np.asarray(out if keepdims else np.squeeze(out, axis=axis))

    return f


def _obj_reduce(pick, x, axis, keepdims):
    """max or min of object entries; tied extremes averaged (their complex steps shared)."""
    plain = pick

    def pick(vals):  # noqa: F811 (the averaging wrapper of `plain`)
        best = plain(vals)
        tied = [v for v in vals if not (v < best) and not (v > best)]
        return best if len(tied) == 1 else sum(tied[1:], tied[0]) / len(tied)

    if axis is None:
        v = pick(x.ravel().tolist())
        return np.full((1,) * x.ndim, v, dtype=object) if keepdims else obj(v)
    moved = np.moveaxis(x, axis, -1)
    out = np.empty(moved.shape[:-1], dtype=object)
    for idx in np.ndindex(out.shape):
        out[idx] = pick(moved[idx].tolist())
    return np.expand_dims(out, axis) if keepdims else out


def _np_arg(largest: bool):
    def f(x, axis=None, keepdims=False):
        x = np.asarray(x)
        r = np.asarray(np.vectorize(float, otypes=[float])(x)) if x.dtype == object else x.real
        out = (np.argmax if largest else np.argmin)(r, axis=axis, keepdims=keepdims)
        return np.asarray(out, dtype=float)

    return f


def _np_cumsum(x, axis=None):
    x = np.asarray(x)
    return np.cumsum(x, axis=axis if x.ndim else None).reshape(x.shape)


def _sym_cumsum(x, axis=None):
    x = obj(x)
    if x.ndim == 0:
        return x
    a = 0 if axis is None else axis
    moved = np.moveaxis(x, a, -1)
    out = np.empty(moved.shape, dtype=object)
    for idx in np.ndindex(moved.shape[:-1]):
        total = sympy.Integer(0)
        for j, v in enumerate(moved[idx]):
            total = total + v
            out[idx + (j,)] = total
    return obj(np.moveaxis(out, -1, a))


# ---------------------------------------------------------------- shape rules and VJPs


def _broadcast_shape(fname: str):
    def rule(shapes, p) -> Shape:
        return broadcast(*shapes)

    return rule


def _pair_kinks(n: Call) -> list[Expr]:
    return [n.args[0] - n.args[1]]


def _clip_kinks(n: Call) -> list[Expr]:
    x, lo, hi = n.args
    return [x - lo, x - hi]


def _maximum_vjp(n: Call, g: Expr, i: int) -> Expr:
    """g (1 + sign(a - b)) / 2 for a, g (1 - sign(a - b)) / 2 for b."""
    a, b = n.args
    s = call("sign", a - b) if i == 0 else call("sign", b - a)
    return unbroadcast(g * (1 + s) * half, n.args[i].shape)


def _minimum_vjp(n: Call, g: Expr, i: int) -> Expr:
    """g (1 - sign(a - b)) / 2 for a, g (1 - sign(b - a)) / 2 for b."""
    a, b = n.args
    s = call("sign", a - b) if i == 0 else call("sign", b - a)
    return unbroadcast(g * (1 - s) * half, n.args[i].shape)


def _ge_expr(a: Expr, b: Expr) -> Expr:
    """1 where a >= b, else 0."""
    return 1 - call("step", b - a)


def _clip_vjp(n: Call, g: Expr, i: int) -> Expr:
    """x: g [lo <= x <= hi]; lo: g [x < lo] [lo < hi]; hi: g (1 - [x <= hi] [lo <= hi])."""
    x, lo, hi = n.args
    if i == 0:
        d = _ge_expr(x, lo) * _ge_expr(hi, x)
    elif i == 1:
        d = call("step", lo - x) * call("step", hi - lo)
    else:
        d = 1 - _ge_expr(hi, x) * _ge_expr(hi, lo)
    return unbroadcast(g * d, n.args[i].shape)


def _where_shape(shapes, p) -> Shape:
    return broadcast(*shapes)


def _where_vjp(n: Call, g: Expr, i: int) -> Expr:
    """mask: 0 (a selector); a: where(mask, g, 0); b: where(mask, 0, g)."""
    m = n.args[0]
    if i == 0:
        return 0 * unbroadcast(g, m.shape)
    zero = Const(0)
    d = call("where", m, g, zero) if i == 1 else call("where", m, zero, g)
    return unbroadcast(d, n.args[i].shape)


def _extreme_vjp(name: str):
    def vjp(n: Call, g: Expr, i: int) -> Expr:
        """g shared equally by the tied extreme entries: hit = [x == max], g * hit / sum(hit)."""
        x = n.args[0]
        axis = params_of(n)["axis"]
        keep = {} if axis is None else {"axis": axis, "keepdims": True}
        m = call(name, x, **keep)
        if axis is None and x.shape:
            m = call(name, x, keepdims=True)
        hit = 1 - call("step", m - x) if name == "max" else 1 - call("step", x - m)
        total = call("sum", hit, **keep) if axis is not None else call("sum", hit)
        return expand_back(g, n) * hit / total

    return vjp


def _cumsum_shape(shapes, p) -> Shape:
    (s,) = shapes
    axis = p["axis"]
    if axis is None:
        if len(s) > 1:
            raise ShapeError(
                f"cumsum() needs axis= for an array of rank {len(s)} (NumPy would flatten it)"
            )
        return s
    need_rank("cumsum", s, tuple(range(1, 9)), "an array (not a scalar) when axis is given")
    normalize_axis(axis, len(s), "cumsum")
    return s


def _cumsum_vjp(n: Call, g: Expr, i: int) -> Expr:
    """The reverse cumulative sum: sum_{j >= i} g_j = sum(g) - cumsum(g) + g along the axis."""
    axis = params_of(n)["axis"]
    if axis is None:
        return call("sum", g) - call("cumsum", g) + g
    return call("sum", g, axis=axis, keepdims=True) - call("cumsum", g, axis=axis) + g


# ---------------------------------------------------------------- tril / triu


def _tri_shape(fname: str):
    def rule(shapes, p) -> Shape:
        dims = p["dims"]
        if not 1 <= len(dims) <= 2:
            raise ShapeError(f"{fname}() takes 1 to 2 sizes, got {len(dims)}")
        d = tuple(sympy.Integer(v) if isinstance(v, int) else v for v in dims)
        return d * 2 if len(d) == 1 else d

    return rule


def _np_tri(lower: bool):
    def f(dims, k=0):
        n, m = (dims[0], dims[0]) if len(dims) == 1 else dims
        return np.tri(n, m, k) if lower else 1.0 - np.tri(n, m, k - 1)

    return f


def _sym_tri(lower: bool):
    def f(dims, k=0):
        return obj(
            np.vectorize(sympy.Integer, otypes=[object])(_np_tri(lower)(dims, k).astype(int))
        )

    return f


def _tri_latex(name: str):
    def rule(n: Call, s) -> str:
        p = params_of(n)
        dims = r" \times ".join(dim_latex(d) for d in p["dims"])
        k = p["k"]
        off = "" if k == 0 else rf",\,k={k}"
        return rf"{latex_fn(name)}_{{{dims}{off}}}"

    return rule


# ---------------------------------------------------------------- registration

register(
    Function(
        name="maximum",
        nargs=2,
        shape=_broadcast_shape("maximum"),
        numpy=_np_maximum,
        sympy=_sym_pairwise(Maximum),
        latex=lambda n, s: rf"\max\left({s(n.args[0], 0)}, {s(n.args[1], 0)}\right)",
        vjp=_maximum_vjp,
        doc="entrywise maximum of two arrays (broadcast); half the gradient each at a tie",
        kinks=_pair_kinks,
    )
)
register(
    Function(
        name="minimum",
        nargs=2,
        shape=_broadcast_shape("minimum"),
        numpy=_np_minimum,
        sympy=_sym_pairwise(Minimum),
        latex=lambda n, s: rf"\min\left({s(n.args[0], 0)}, {s(n.args[1], 0)}\right)",
        vjp=_minimum_vjp,
        doc="entrywise minimum of two arrays (broadcast); half the gradient each at a tie",
        kinks=_pair_kinks,
    )
)
register(
    Function(
        name="clip",
        nargs=3,
        shape=_broadcast_shape("clip"),
        numpy=_np_clip,
        sympy=lambda x, lo, hi: obj(_sym_clip_u(obj(x), obj(lo), obj(hi))),
        latex=lambda n, s: (
            rf"{latex_fn('clip')}\left({s(n.args[0], 0)}, {s(n.args[1], 0)}, {s(n.args[2], 0)}"
            r"\right)"
        ),
        vjp=_clip_vjp,
        doc="min(max(x, lo), hi) as np.clip; slope 1 on lo <= x <= hi (torch.clamp)",
        kinks=_clip_kinks,
    )
)
register(
    Function(
        name="where",
        nargs=3,
        shape=_where_shape,
        numpy=_np_where,
        sympy=lambda m, a, b: obj(_sym_where_u(obj(m), obj(a), obj(b))),
        latex=lambda n, s: (
            rf"{latex_fn('where')}\left({s(n.args[0], 0)}, {s(n.args[1], 0)}, {s(n.args[2], 0)}"
            r"\right)"
        ),
        vjp=_where_vjp,
        doc="a where mask != 0, else b (broadcast); -inf in the unselected branch is harmless",
    )
)
for _name, _lower, _doc in (
    ("tril", True, "lower-triangular 0/1 matrix: 1 where j <= i + k"),
    ("triu", False, "upper-triangular 0/1 matrix: 1 where j >= i + k"),
):
    register(
        Function(
            name=_name,
            nargs=0,
            shape=_tri_shape(_name),
            numpy=_np_tri(_lower),
            sympy=_sym_tri(_lower),
            latex=_tri_latex(_name),
            params={"dims": (), "k": 0},
            doc=_doc,
        )
    )

for _name, _largest, _doc in (
    ("max", True, "largest entry (all, or along axis); ties share the gradient equally"),
    ("min", False, "smallest entry (all, or along axis); ties share the gradient equally"),
):
    register(
        Function(
            name=_name,
            nargs=1,
            shape=_reduce_shape(_name),
            numpy=_np_reduce_extreme(_largest),
            sympy=lambda x, axis=None, keepdims=False, _f=(MaxOf if _largest else MinOf): (
                _sym_reduce_along(_f, x, axis, keepdims)
            ),
            latex=_reduce_latex(r"\max" if _largest else r"\min"),
            vjp=_extreme_vjp(_name),
            params=dict(REDUCE_PARAMS),
            doc=_doc,
        )
    )
for _name, _largest, _doc in (
    ("argmax", True, "index of the first largest entry (a value only: not differentiable)"),
    ("argmin", False, "index of the first smallest entry (a value only: not differentiable)"),
):
    register(
        Function(
            name=_name,
            nargs=1,
            shape=_reduce_shape(_name),
            numpy=_np_arg(_largest),
            sympy=lambda x, axis=None, keepdims=False, _f=(ArgMax if _largest else ArgMin): (
                _sym_reduce_along(_f, x, axis, keepdims)
            ),
            latex=_reduce_latex(
                r"\operatorname{arg\,max}" if _largest else r"\operatorname{arg\,min}"
            ),
            params=dict(REDUCE_PARAMS),
            doc=_doc,
            nondifferentiable="its value is an index",
        )
    )
register(
    Function(
        name="cumsum",
        nargs=1,
        shape=_cumsum_shape,
        numpy=_np_cumsum,
        sympy=_sym_cumsum,
        latex=_reduce_latex(latex_fn("cumsum")),
        vjp=_cumsum_vjp,
        params={"axis": None},
        doc="cumulative sum along an axis (required for rank >= 2); VJP the reverse cumsum",
    )
)
