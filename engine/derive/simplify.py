"""Rule-based rewriter for derived expressions: local algebra rules iterated to a fixed point.

Every rule works on the expression tree (whole vectors and matrices) and keeps the shape of the
node it rewrites; sympy.simplify is never used. Each rule is an identity wherever its left side
is defined (x * y / x -> y needs x != 0, as the left side does). Besides the local rules, a
product is read as a monomial (constant, numerator and denominator factors) and regrouped:
factors cancel, reach a definition X = u / w, leave a reduction they are constant along, and
sum(A) / N becomes mean(A); a sum of two terms with a common divisor is written over it. These
take cross-entropy of softmax to p - y and LayerNorm/RMSNorm to their textbook forms from the
plain VJPs. Soundness does not rest on the rules alone: every derived program is checked by
the verifier before it is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sympy

from engine.expr import Call, Const, EngineError, Expr, Ref, Var, call, map_calls
from engine.functions.base import broadcast, params_of
from engine.functions.linalg import MAX_ONES_RANK
from engine.types import TYPES

MAX_PASSES = 30  # whole-tree passes before giving up on a fixed point
MAX_LOCAL = 50  # rule applications at one node in one pass

ZERO, ONE = sympy.Integer(0), sympy.Integer(1)


def is_const(e: Expr, value: int | sympy.Expr | None = None) -> bool:
    return isinstance(e, Const) and (value is None or e.value == value)


def unref(e: Expr) -> Expr:
    """See through named definitions to the expression they stand for."""
    while isinstance(e, Ref):
        e = e.body
    return e


def is_call(e: Expr, *fns: str) -> bool:
    return isinstance(e, Call) and e.fn in fns


def is_scalar(e: Expr) -> bool:
    return e.shape == ()


def _fits(e: Expr, shape: tuple) -> bool:
    """True if `e` may stand where a value of `shape` stood (it has exactly that shape)."""
    return e.shape == tuple(shape)


def _broadcasts_to(small: tuple, big: tuple) -> bool:
    try:
        return broadcast(small, big) == tuple(big)
    except EngineError:
        return False


def _fold(fn: str, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
    """Exact constant folding; None when the result would not be a rational number."""
    try:
        if fn == "add":
            v = a + b
        elif fn == "sub":
            v = a - b
        elif fn == "mul":
            v = a * b
        elif fn == "div":
            if b == 0:
                return None
            v = a / b
        elif fn == "pow":
            if a == 0 and b.is_negative:
                return None
            v = a**b
        else:
            return None
    except (ZeroDivisionError, ValueError):
        return None
    return v if v.is_Rational else None


def _axis(node: Call) -> int | tuple[int, ...] | None:
    axis = params_of(node).get("axis")
    if isinstance(axis, tuple):  # reduced axes, sorted (tensors of any rank)
        return tuple(sorted(a % len(node.args[0].shape) for a in axis))
    return None if axis is None else axis % len(node.args[0].shape)


def _keepdims(node: Call) -> bool:
    return bool(params_of(node).get("keepdims", False))


def sums_to_one_over(node: Call) -> bool:
    """`sum(y)` or `sum(y, axis=-1)` of a simplex/onehot variable: the row sums are 1."""
    x = node.args[0]
    if not isinstance(x, Var) or not TYPES[x.vtype].sums_to_one:
        return False
    axis = _axis(node)
    rank = len(x.shape)
    return axis == rank - 1 or (axis is None and rank == 1)


def zeros(shape: tuple) -> Expr:
    """A zero of the given shape: 0, or 0 * ones(...)."""
    return Const(0) if not shape else Const(0) * call("ones", dims=tuple(shape))


def is_zero(e: Expr) -> bool:
    return is_const(e, 0) or (is_call(e, "mul") and is_const(e.args[0], 0))


def ones_like_shape(shape: tuple) -> Expr:
    return Const(1) if not shape else call("ones", dims=tuple(shape))


Rule = Callable[[Call], Expr | None]

REDUCTIONS = ("sum", "mean", "var", "logsumexp")


def _drop_vector_keepdims(n: Call) -> Expr | None:
    """v - sum(v, axis=-1, keepdims=True) -> v - sum(v) for vectors: a scalar broadcasts alike."""
    if len(n.shape) != 1:
        return None
    for i, x in enumerate(n.args):
        other = n.args[1 - i]
        if is_call(x, *REDUCTIONS) and _keepdims(x) and len(x.args[0].shape) == 1:
            if other.shape == n.shape:
                args = list(n.args)
                args[i] = call(x.fn, x.args[0])
                return call(n.fn, *args)
    return None


def _drop_broadcast_ones(n: Call) -> Expr | None:
    """a - ones(n) * s -> a - s when a alone has the full shape (broadcasting does the rest)."""
    if not is_call(n, "add", "sub"):
        return None
    for i, x in enumerate(n.args):
        other = n.args[1 - i]
        if not is_call(x, "mul") or other.shape != n.shape:
            continue
        for o, s in (x.args, x.args[::-1]):
            if is_call(o, "ones") and not is_call(s, "ones") and _broadcasts_to(s.shape, n.shape):
                args = list(n.args)
                args[i] = s
                return call(n.fn, *args)
    return None


def _elementwise_binary(rule: Rule) -> Rule:
    def wrapped(n: Call) -> Expr | None:
        return _drop_vector_keepdims(n) or _drop_broadcast_ones(n) or rule(n)

    return wrapped


def _coefficient(e: Expr) -> tuple[sympy.Expr, Expr]:
    """`c * X` -> (c, X); `-X` -> (-1, X); else (1, e)."""
    if is_call(e, "mul") and is_const(e.args[0]) and not is_const(e.args[1]):
        return e.args[0].value, e.args[1]
    if is_call(e, "neg"):
        c, core = _coefficient(e.args[0])
        return -c, core
    return ONE, e


def _collect(n: Call) -> Expr | None:
    """c X + d X -> (c + d) X and c X - d X -> (c - d) X (same X, so the same shape)."""
    a, b = n.args
    if is_const(a) or is_const(b):
        return None
    (ca, xa), (cb, xb) = _coefficient(a), _coefficient(b)
    if xa != xb:
        return None
    c = ca + cb if n.fn == "add" else ca - cb
    if c == 0:
        return Const(0) if is_scalar(xa) else zeros(xa.shape)
    return xa if c == 1 else Const(c) * xa


def _rule_add(n: Call) -> Expr | None:
    a, b = n.args
    collected = _collect(n)
    if collected is not None:
        return collected
    if is_const(a) and is_const(b):
        v = _fold("add", a.value, b.value)
        return None if v is None else Const(v)
    if is_zero(a) and _fits(b, n.shape):
        return b
    if is_zero(b) and _fits(a, n.shape):
        return a
    if is_call(b, "neg"):
        return a - b.args[0]
    if is_call(a, "neg"):
        return b - a.args[0]
    if is_const(b) and b.value.is_negative:
        return a - Const(-b.value)
    if a == b:
        return Const(2) * a
    return None


def _rule_sub(n: Call) -> Expr | None:
    a, b = n.args
    collected = _collect(n)
    if collected is not None:
        return collected
    if is_const(a) and is_const(b):
        v = _fold("sub", a.value, b.value)
        return None if v is None else Const(v)
    if is_zero(b) and _fits(a, n.shape):
        return a
    if is_zero(a) and _fits(b, n.shape):
        return -b
    if is_call(b, "neg"):
        return a + b.args[0]
    if is_call(a, "neg"):
        return -(a.args[0] + b)
    if is_const(b) and b.value.is_negative:
        return a + Const(-b.value)
    if a == b and is_scalar(a):
        return Const(0)
    if is_call(a, "sub") and _nodes(b) < _nodes(a.args[1]):
        # (a - B) - c -> (a - c) - B: the shorter subtrahend first, as textbooks write it.
        return (a.args[0] - b) - a.args[1]
    return None


def _nodes(e: Expr) -> int:
    return sum(1 for _ in e.walk())


def _scalar_factor(e: Expr) -> tuple[str, Expr, Expr] | None:
    """Split `s * A`, `A * s` or `A / s` with s a scalar and A not: (op, s, A)."""
    if is_call(e, "mul"):
        a, b = e.args
        if is_scalar(a) and not is_scalar(b):
            return "mul", a, b
        if is_scalar(b) and not is_scalar(a):
            return "mul", b, a
    if is_call(e, "div"):
        a, b = e.args
        if is_scalar(b) and not is_scalar(a):
            return "div", b, a
    return None


def _vector_axis(e: Expr) -> tuple[Expr, int] | None:
    """`expand_dims(v, axis)` of a vector v: (v, axis in 0..1)."""
    if is_call(e, "expand_dims") and len(e.args[0].shape) == 1:
        return e.args[0], params_of(e)["axis"] % 2
    return None


def _matrix_product_rule(a: Expr, b: Expr) -> Expr | None:
    """eye * v -> diag(v); v[:, None] * w[None, :] -> outer(v, w); distribute over eye terms."""
    for x, y in ((a, b), (b, a)):
        if is_call(x, "eye") or (is_call(x, "diag") and len(x.args[0].shape) == 1):
            # eye * v is diag(v); diag(v) * w (a row, a column or a vector) is diag(v * w).
            col = _vector_axis(y)
            w = col[0] if col is not None else (y if len(y.shape) == 1 else None)
            if w is not None and w.shape[0] == x.shape[0]:
                return call("diag", w if is_call(x, "eye") else x.args[0] * w)
    # A plain vector in a matrix product broadcasts as a row.
    ca = _vector_axis(a) or ((a, 0) if len(a.shape) == 1 else None)
    cb = _vector_axis(b) or ((b, 0) if len(b.shape) == 1 else None)
    if ca is not None and cb is not None and ca[1] != cb[1]:
        col, row = (ca, cb) if ca[1] == 1 else (cb, ca)
        return call("outer", col[0], row[0])
    for x, y in ((a, b), (b, a)):
        if is_call(x, "add", "sub") and len(x.shape) == 2:
            terms = [_matrix_product_rule(t, y) for t in x.args]
            if any(t is not None for t in terms):
                pairs = zip(terms, x.args, strict=True)
                left, right = (t if t is not None else u * y for t, u in pairs)
                return left + right if x.fn == "add" else left - right
    return None


def _rule_mul(n: Call) -> Expr | None:
    a, b = n.args
    if len(n.shape) == 2:
        out = _matrix_product_rule(a, b)
        if out is not None and out.shape == n.shape:
            return out
    if is_const(a) and is_const(b):
        v = _fold("mul", a.value, b.value)
        return None if v is None else Const(v)
    for x, y in ((a, b), (b, a)):
        if is_const(x, 1) and _fits(y, n.shape):
            return y
        if is_const(x, -1) and _fits(y, n.shape):
            return -y
        if is_const(x, 0) and (is_scalar(y) or not is_call(y, "ones")):
            return zeros(n.shape) if len(n.shape) <= MAX_ONES_RANK else None
        if is_call(x, "ones") and _broadcasts_to(x.shape, y.shape) and _fits(y, n.shape):
            return y
    if is_call(a, "neg"):
        return -(a.args[0] * b)
    if is_call(b, "neg"):
        return -(a * b.args[0])
    if is_const(b) and not is_const(a):
        return b * a
    # Constants gather at the front: c * (d * x) -> (c d) * x, (c * x) * y -> c * (x * y).
    if is_const(a) and is_call(b, "mul") and is_const(b.args[0]):
        return (a * b.args[0]) * b.args[1]
    if is_call(a, "mul") and is_const(a.args[0]) and not is_const(b):
        return a.args[0] * (a.args[1] * b)
    if not is_const(a) and is_call(b, "mul") and is_const(b.args[0]):
        return b.args[0] * (a * b.args[1])
    # (x / s) * y -> (x * y) / s for a scalar s (the quotient goes outside, as in textbooks).
    # (p / q) * r -> (p * r) / q: the quotient goes outside, as in textbooks.
    if is_call(a, "div"):
        return (a.args[0] * b) / a.args[1]
    if is_call(b, "div"):
        return (a * b.args[0]) / b.args[1]
    if a == b:
        return a ** Const(2)
    return _cancel_into_sum(n)


def _cancel_into_sum(n: Call) -> Expr | None:
    """x * (A - B / x) -> x * A - B (and +, and either order): distribute only to cancel.

    An identity wherever the quotient is defined (x != 0); the product is only distributed when
    a term is a quotient by the same x, so factored forms like P * (dP - sum(P * dP)) stay.
    """
    a, b = n.args
    for x, s in ((a, b), (b, a)):
        if not is_call(s, "add", "sub"):
            continue
        terms = list(s.args)
        hit = [is_call(t, "div") and t.args[1] == x and _fits(t.args[0], n.shape) for t in terms]
        if not any(hit):
            continue
        out = [t.args[0] if h else x * t for t, h in zip(terms, hit, strict=True)]
        if any(o.shape != n.shape for o in out):
            continue
        return out[0] + out[1] if s.fn == "add" else out[0] - out[1]
    return None


def _rule_div(n: Call) -> Expr | None:
    a, b = n.args
    if is_const(a) and is_const(b):
        v = _fold("div", a.value, b.value)
        return None if v is None else Const(v)
    if is_const(b, 1) and _fits(a, n.shape):
        return a
    if is_call(a, "ones") and _fits(b, n.shape):
        return Const(1) / b
    if is_const(a, 0) and is_scalar(b):
        return Const(0)
    if is_call(a, "neg"):
        return -(a.args[0] / b)
    if is_const(b) and b.value != 0 and not is_scalar(a):
        return Const(1 / b.value) * a
    if is_call(a, "div") and is_scalar(b) and is_scalar(a.args[1]):
        return a.args[0] / (a.args[1] * b)
    if is_call(a, "mul"):
        # (x * y) / x -> y wherever the quotient is defined (x != 0).
        for u, v in (a.args, a.args[::-1]):
            if u == b and _fits(v, n.shape):
                return v
    return None


def _rule_pow(n: Call) -> Expr | None:
    a, b = n.args
    if is_const(a) and is_const(b):
        v = _fold("pow", a.value, b.value)
        return None if v is None else Const(v)
    if is_const(b, 1):
        return a
    if is_call(a, "pow") and is_const(b) and b.value.is_Integer and is_const(a.args[1]):
        # (x^a)^k = x^(a k) for an integer k; (x^2)^(1/2) is |x|, not x.
        return a.args[0] ** Const(a.args[1].value * b.value)
    return None


def _rule_neg(n: Call) -> Expr | None:
    (a,) = n.args
    if is_call(a, "neg"):
        return a.args[0]
    if is_const(a):
        return Const(-a.value)
    if is_call(a, "sub"):
        return a.args[1] - a.args[0]
    if is_call(a, "mul") and is_const(a.args[0]):
        return Const(-a.args[0].value) * a.args[1]
    return None


def _pull_scalars(n: Call, rebuild: Callable[[Expr, Expr], Expr]) -> Expr | None:
    """Move scalar factors and signs out of a bilinear operation: (s A) @ B -> s (A @ B)."""
    a, b = n.args
    for i, x in enumerate((a, b)):
        other = b if i == 0 else a

        def put(y: Expr, i=i, other=other) -> Expr:
            return rebuild(y, other) if i == 0 else rebuild(other, y)

        if is_call(x, "neg") and not is_scalar(x):
            return -put(x.args[0])
        split = _scalar_factor(x)
        if split is not None:
            op, s, inner = split
            return s * put(inner) if op == "mul" else put(inner) / s
    return None


def _rule_matmul(n: Call) -> Expr | None:
    a, b = n.args
    if is_call(a, "eye"):
        return b
    if is_call(b, "eye"):
        return a
    return _pull_scalars(n, lambda x, y: x @ y)


def _rule_outer(n: Call) -> Expr | None:
    return _pull_scalars(n, lambda x, y: call("outer", x, y))


def _rule_transpose(n: Call) -> Expr | None:
    (a,) = n.args
    if len(a.shape) <= 1 or is_call(a, "diag", "eye"):
        return a
    if is_call(a, "transpose"):
        return a.args[0]
    if is_call(a, "matmul") and len(a.args[0].shape) == 2 and len(a.args[1].shape) == 2:
        return a.args[1].T @ a.args[0].T
    if is_call(a, "outer"):
        return call("outer", a.args[1], a.args[0])
    if is_call(a, "add", "sub") and len(a.shape) == 2:
        parts = [_transpose_term(t, a.shape) for t in a.args]
        if all(p is not None and not is_call(p, "transpose") for p in parts):
            return parts[0] + parts[1] if a.fn == "add" else parts[0] - parts[1]
    if is_call(a, "neg"):
        return -(a.args[0].T)
    split = _scalar_factor(a)
    if split is not None:
        op, s, inner = split
        return s * inner.T if op == "mul" else inner.T / s
    return None


def _transpose_term(t: Expr, shape: tuple) -> Expr | None:
    """The transpose of one summand of a matrix of `shape`, as it broadcasts there.

    A vector broadcasts as a row, so its transpose is a column; a scalar stays.
    """
    if t.shape == ():
        return t
    if len(t.shape) == 1:
        return call("expand_dims", t, axis=-1) if t.shape[0] == shape[1] else None
    if t.shape != tuple(shape):
        return None
    return _rule_transpose(Call("transpose", (t,), (), (shape[1], shape[0])))


def _rule_reduce(n: Call) -> Expr | None:
    (x,) = n.args
    p = dict(n.params)
    axis, keep = _axis(n), _keepdims(n)
    if len(x.shape) == 1 and axis is not None and not keep:
        # Along the only axis of a vector: the plain reduction.
        return call(n.fn, x)
    if axis is not None and keep and x.shape[axis] == 1 and n.fn in ("sum", "mean"):
        return x  # an axis of length 1 (left by unbroadcast) needs no reduction
    if n.fn == "sum" and sums_to_one_over(n):
        return ones_like_shape(n.shape)
    if n.fn in ("sum", "mean"):
        if is_call(x, "neg"):
            return -call(n.fn, x.args[0], **p)
        split = _scalar_factor(x)
        if split is not None:
            op, s, inner = split
            red = call(n.fn, inner, **p)
            return s * red if op == "mul" else red / s
        if n.fn == "sum" and is_call(x, "ones") and axis is None:
            return _count(x.shape)
        if n.fn == "sum" and is_call(x, "eye") and axis is not None:
            return call("ones", dims=n.shape)
        if n.fn == "sum" and is_call(x, "diag") and len(x.shape) == 2 and axis is not None:
            v = x.args[0]
            return call("expand_dims", v, axis=axis) if keep else v
    return None


def _count(shape: tuple) -> Expr:
    from engine.expr import Size

    total: Expr = Const(1)
    for d in shape:
        term: Expr = Const(d) if d.is_Integer else Size(str(d))
        total = term if is_const(total, 1) else total * term
    return total


def _rule_expand_dims(n: Call) -> Expr | None:
    (x,) = n.args
    if is_call(x, "ones"):
        return call("ones", dims=n.shape) if len(n.shape) <= MAX_ONES_RANK else None
    if is_call(x, "neg"):
        return -call("expand_dims", x.args[0], **dict(n.params))
    split = _scalar_factor(x)
    if split is not None:
        op, s, inner = split
        inner = call("expand_dims", inner, **dict(n.params))
        return s * inner if op == "mul" else inner / s
    return None


def _rule_softmax(n: Call) -> Expr | None:
    (x,) = n.args
    if len(x.shape) == 1 and dict(n.params).get("axis", -1) not in (-1,):
        return call(n.fn, x)
    return None


def _rule_elementwise(n: Call) -> Expr | None:
    (x,) = n.args
    if n.fn == "log" and is_call(x, "exp"):
        return x.args[0]
    if n.fn == "exp" and is_call(x, "log_softmax"):
        return Call("softmax", x.args, x.params, x.shape)
    if n.fn == "log" and is_call(unref(x), "softmax"):
        return call("log_softmax", unref(x).args[0], **dict(unref(x).params))
    if n.fn == "sqrt" and is_const(x):
        v = sympy.sqrt(x.value)
        return Const(v) if v.is_Rational else None
    return None


RULES: dict[str, Rule] = {
    "add": _elementwise_binary(_rule_add),
    "sub": _elementwise_binary(_rule_sub),
    "mul": _elementwise_binary(_rule_mul),
    "div": _elementwise_binary(_rule_div),
    "pow": _rule_pow,
    "neg": _rule_neg,
    "matmul": _rule_matmul,
    "outer": _rule_outer,
    "transpose": _rule_transpose,
    "sum": _rule_reduce,
    "mean": _rule_reduce,
    "var": _rule_reduce,
    "logsumexp": _rule_reduce,
    "softmax": _rule_softmax,
    "log_softmax": _rule_softmax,
    "log": _rule_elementwise,
    "exp": _rule_elementwise,
    "sqrt": _rule_elementwise,
    "expand_dims": _rule_expand_dims,
}


# ---------------------------------------------------------------- terms as monomials


Monomial = tuple[sympy.Expr, list[Expr], list[Expr]]  # coefficient, numerator, denominator


def monomial(e: Expr) -> Monomial:
    """`c * f1 * f2 / (h1 * h2)` as (c, [f1, f2], [h1, h2]); x ** k with 1 <= k <= 4 is k factors.

    The factors broadcast together to the shape of `e` (products and quotients are elementwise),
    so any regrouping of them that keeps the shape is the same value.
    """
    if isinstance(e, Const):
        return e.value, [], []
    if is_call(e, "neg"):
        c, num, den = monomial(e.args[0])
        return -c, num, den
    if is_call(e, "mul"):
        ca, na, da = monomial(e.args[0])
        cb, nb, db = monomial(e.args[1])
        return ca * cb, na + nb, da + db
    if is_call(e, "div"):
        ca, na, da = monomial(e.args[0])
        cb, nb, db = monomial(e.args[1])
        if cb != 0:
            return ca / cb, na + db, da + nb
    if is_call(e, "pow") and is_const(e.args[1]) and e.args[1].value in (1, 2, 3, 4):
        return ONE, [e.args[0]] * int(e.args[1].value), []
    return ONE, [e], []


def from_monomial(c: sympy.Expr, num: list[Expr], den: list[Expr]) -> Expr:
    """The product of the numerator factors (constant first) over the product of the rest."""
    top = _product_of(num)
    if top is None:
        top = Const(c)
    elif c != 1:
        top = Const(c) * top
    bottom = _product_of(den)
    return top if bottom is None else top / bottom


def _product_of(factors: list[Expr]) -> Expr | None:
    """f1 * f2 * ..., a repeated factor written once as a power (in order of first use)."""
    counts: dict[Expr, int] = {}
    for f in factors:
        counts[f] = counts.get(f, 0) + 1
    out: Expr | None = None
    for f, k in counts.items():
        term = f if k == 1 else f ** Const(k)
        out = term if out is None else out * term
    return out


def _remove(items: list[Expr], item: Expr) -> bool:
    for i, x in enumerate(items):
        if x == item:
            del items[i]
            return True
    return False


def _constant_along(f: Expr, red: Call) -> bool:
    """`f` is constant along the axes `red` reduces, and broadcasts against its result."""
    x = red.args[0]
    axis = _axis(red)
    if axis is None or not _keepdims(red):
        return is_scalar(f)
    return _broadcasts_to(f.shape, red.shape) and len(f.shape) <= len(x.shape)


def _span(factors: list[Expr]) -> tuple:
    """The shape the factors broadcast to together."""
    return broadcast(*(f.shape for f in factors)) if factors else ()


def _cancel(num: list[Expr], den: list[Expr], shape: tuple) -> bool:
    """x ... / (x ...) -> ... (where x != 0), and drop ones(...) factors other factors cover.

    A factor goes only if the rest still broadcasts to the term's shape.
    """
    changed = False
    for f in list(num):
        if f in den and _span([g for g in num + den if g is not f]) == tuple(shape):
            trial_num, trial_den = list(num), list(den)
            _remove(trial_num, f)
            _remove(trial_den, f)
            if _span(trial_num + trial_den) == tuple(shape):
                num[:], den[:] = trial_num, trial_den
                changed = True
    for f in list(num):
        if is_call(f, "ones"):
            rest = list(num)
            _remove(rest, f)
            if _span(rest + den) == tuple(shape):
                num[:] = rest
                changed = True
    return changed


class Rewriter:
    """Bottom-up rewriting with the local rules, then the user's definitions, to a fixed point."""

    def __init__(self, defs: Mapping[str, Ref] | None = None):
        # A body seen again is replaced by its definition's name; later definitions build on
        # earlier ones, so the bottom-up pass finds nested definitions too.
        self.defs = {ref.body: ref for ref in (defs or {}).values() if isinstance(ref.body, Call)}
        self.steps = 0

    def name_defs(self, e: Expr) -> Expr:
        """Only replace subexpressions equal to a definition's body by its name."""
        return map_calls(e, lambda n: self.defs.get(n, n))

    def simplify(self, e: Expr) -> Expr:
        for _ in range(MAX_PASSES):
            memo: dict[int, Expr] = {}
            out = self._pass(e, memo)
            if out == e:
                return out
            e = out
        return e

    def _pass(self, e: Expr, memo: dict[int, Expr]) -> Expr:
        key = id(e)
        if key in memo:
            return memo[key]
        if isinstance(e, Call) and e.args:
            args = tuple(self._pass(a, memo) for a in e.args)
            node = e if args == e.args else Call(e.fn, args, e.params, e.shape)
            node = self._local(node)
        else:
            node = e
        if node in self.defs:
            node = self.defs[node]
        memo[key] = node
        return node

    def _local(self, node: Expr) -> Expr:
        for _ in range(MAX_LOCAL):
            if not isinstance(node, Call):
                return node
            rule = RULES.get(node.fn)
            if rule is None:
                return node
            out = rule(node)
            if out is None or out == node:
                out = self._terms(node)
            if out is None or out == node:
                return node
            if out.shape != node.shape:
                return node  # a rule must never change a shape; keep the original
            self.steps += 1
            if isinstance(out, Call) and out.args:
                # Re-simplify the children a rule built.
                args = tuple(self._local(a) for a in out.args)
                if args != out.args:
                    out = Call(out.fn, args, out.params, out.shape)
            if out in self.defs:
                out = self.defs[out]
            node = out
        return node

    # ------------------------------------------------------------ whole-term rules

    def _quotient_defs(self) -> list[tuple[Expr, Expr, Ref]]:
        """Definitions `X = u / w`: the numerator, the denominator and the name."""
        return [(b.args[0], b.args[1], r) for b, r in self.defs.items() if is_call(b, "div")]

    def _fold(self, num: list[Expr], den: list[Expr]) -> bool:
        """u ... / (w ...) -> X ... for each definition X = u / w; True if one was used."""
        used = False
        for u, w, ref in self._quotient_defs():
            while u in num and w in den:
                _remove(num, u)
                _remove(den, w)
                num.append(ref)
                used = True
        return used

    def _reduction(self, red: Call, num: list[Expr], den: list[Expr]) -> tuple[Expr, bool]:
        """One reduction factor of a term, regrouped with the term's other factors.

        Factors constant along the reduced axes leave it (sum(s * A) = s * sum(A)); a divisor
        of the term moves in when that makes a definition appear (sum(g * c) / w = sum(g * X)
        for X = c / w); sum(A) / N = mean(A) for N the count of the reduced entries.
        """
        c, inner_num, inner_den = monomial(red.args[0])
        out_num, out_den = list(num), list(den)  # the term's other factors, changed on success
        for side, outer in ((inner_num, out_num), (inner_den, out_den)):
            for f in list(side):
                if _constant_along(f, red):
                    _remove(side, f)
                    outer.append(f)
        changed = False
        for w in list(out_den):
            if not _constant_along(w, red):
                continue
            trial_num, trial_den = list(inner_num), inner_den + [w]
            if self._fold(trial_num, trial_den):
                inner_num, inner_den = trial_num, trial_den
                _remove(out_den, w)
                changed = True
        fn, params = red.fn, dict(red.params)
        if fn == "sum":
            from engine.functions.reductions import count

            _, n_factors, _ = monomial(count(red))
            if n_factors and all(out_den.count(f) >= n_factors.count(f) for f in n_factors):
                for f in n_factors:
                    _remove(out_den, f)
                fn, changed = "mean", True
                axis = _axis(red)
                if axis is not None and axis == len(red.args[0].shape) - 1:
                    params["axis"] = -1
        inner = from_monomial(c, inner_num, inner_den)
        if not changed or inner.shape != red.args[0].shape:
            return red, False
        num[:], den[:] = out_num, out_den
        return call(fn, inner, **params), True

    def _product(self, node: Call) -> Expr | None:
        c, num, den = monomial(node)
        changed = self._fold(num, den)
        for f in list(num):
            if is_call(f, "sum", "mean"):
                _remove(num, f)
                red, moved = self._reduction(f, num, den)
                num.append(red)
                changed = changed or moved
        changed = self._fold(num, den) or changed
        changed = _cancel(num, den, node.shape) or changed
        if not changed:
            return None
        return from_monomial(c, num, den)

    def _common_denominator(self, node: Call) -> Expr | None:
        """a / w + b / (w v) -> (a + b / v) / w for a factor w both terms divide by."""
        a, b = node.args
        ca, na, da = monomial(a)
        cb, nb, db = monomial(b)
        common = []
        for w in da:
            if not isinstance(w, Const) and w in db and w not in common:
                common.append(w)
        if not common:
            return None
        for w in common:
            _remove(da, w)
            _remove(db, w)
        left, right = from_monomial(ca, na, da), from_monomial(cb, nb, db)
        inner = left + right if node.fn == "add" else left - right
        return inner / from_monomial(ONE, common, [])

    def _terms(self, node: Call) -> Expr | None:
        if node.fn in ("mul", "div"):
            return self._product(node)
        if node.fn in ("add", "sub"):
            return self._common_denominator(node)
        return None


def simplify(e: Expr, defs: Mapping[str, Ref] | None = None) -> Expr:
    """Simplify `e` with the local rules; subexpressions equal to a definition become its name."""
    return Rewriter(defs).simplify(e)


# ---------------------------------------------------------------- tensors of any rank (issue 8)
from engine.derive.tensor_rules import tensor_rules  # noqa: E402

RULES.update(tensor_rules(RULES))
