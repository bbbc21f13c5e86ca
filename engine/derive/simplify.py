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

The rules are data: `RULES` lists every rule (a `Rule`: name, the functions it rewrites, the
rewrite, whose docstring states the identity, and example formulas) in the order it is tried;
tests/test_simplify_rules.py checks each rule's examples and random instances of them with the
verifier. Presentation rules (`final=True`) run once on a finished program (`present`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sympy

from engine.expr import Call, Const, EngineError, Expr, Ref, Size, Var, call, map_calls
from engine.functions.base import broadcast, params_of
from engine.functions.elementwise import Sign, Step
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


RewriteFn = Callable[[Call], Expr | None]

REDUCTIONS = ("sum", "mean", "var", "logsumexp")


@dataclass(frozen=True)
class Rule:
    """One rewrite rule: a name, the functions whose nodes it rewrites, the rewrite, instances.

    `rewrite(node)` returns an expression equal to `node` (wherever `node` is defined) or None
    when the rule does not apply; its docstring's first line states the identity. `examples`
    are formulas (over EXAMPLE_VARS and EXAMPLE_DEFS) whose root node the rule rewrites (or
    builders of a node the parser would fold, like -(2)):
    tests/test_simplify_rules.py turns each, and random instances of it, into a claim
    `node == rewrite(node)` for the verifier. A `term` rule regroups a whole term with the
    user's definitions (`rewrite(node, rewriter)`); it runs after the local rules of its node.
    """

    name: str
    fns: tuple[str, ...]
    rewrite: Callable[..., Expr | None]
    examples: tuple[str | Callable[[], Expr], ...]
    term: bool = False
    final: bool = False  # a presentation rule: applied once to a finished program (`present`)

    @property
    def doc(self) -> str:
        """The identity the rule applies, in one line."""
        return (self.rewrite.__doc__ or "").strip().splitlines()[0]

    def apply(self, node: Call, rewriter: Rewriter | None = None) -> Expr | None:
        """The rewritten node, or None when the rule does not apply."""
        if self.term:
            return self.rewrite(rewriter or Rewriter(), node)
        return self.rewrite(node)


def _drop_vector_keepdims(n: Call) -> Expr | None:
    """v - sum(v, axis=-1, keepdims=True) = v - sum(v) for vectors: a scalar broadcasts alike."""
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
    """a - ones(n) * s = a - s when a alone has the full shape (broadcasting does the rest)."""
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


def _coefficient(e: Expr) -> tuple[sympy.Expr, Expr]:
    """`c * X` -> (c, X); `-X` -> (-1, X); else (1, e)."""
    if is_call(e, "mul") and is_const(e.args[0]) and not is_const(e.args[1]):
        return e.args[0].value, e.args[1]
    if is_call(e, "neg"):
        c, core = _coefficient(e.args[0])
        return -c, core
    return ONE, e


def _collect(n: Call) -> Expr | None:
    """c X + d X = (c + d) X and c X - d X = (c - d) X (same X, so the same shape)."""
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


def _fold_constants(n: Call) -> Expr | None:
    """c op d = the rational number it equals, for constants c, d (op: + - * / **)."""
    a, b = n.args
    if is_const(a) and is_const(b):
        v = _fold(n.fn, a.value, b.value)
        return None if v is None else Const(v)
    return None


def _jump_of_constant(n: Call) -> Expr | None:
    """sign(c) and step(c) of a rational constant c are the numbers they equal (sign(0) = 0,
    step(0) = 0: the kink convention of the language)."""
    (a,) = n.args
    if is_zero(a):  # a zero array too: sign(0 * ones(n)) = 0 * ones(n)
        return a
    if is_const(a) and a.value.is_Rational:
        return Const((Sign if n.fn == "sign" else Step)(a.value))
    return None


def _sign_negation(n: Call) -> Expr | None:
    """sign(-x) = -sign(x) (sign is odd, sign(0) = 0 included)."""
    (a,) = n.args
    return -call("sign", a.args[0]) if is_call(a, "neg") else None


def _select_self(n: Call) -> Expr | None:
    """maximum(x, x) = x and minimum(x, x) = x."""
    a, b = n.args
    return a if a == b and a.shape == n.shape else None


def _add_zero(n: Call) -> Expr | None:
    """0 + b = b and a + 0 = a (when the other term alone has the full shape)."""
    a, b = n.args
    if is_zero(a) and _fits(b, n.shape):
        return b
    if is_zero(b) and _fits(a, n.shape):
        return a
    return None


def _add_negation(n: Call) -> Expr | None:
    """a + (-b) = a - b and (-a) + b = b - a."""
    a, b = n.args
    if is_call(b, "neg"):
        return a - b.args[0]
    if is_call(a, "neg"):
        return b - a.args[0]
    return None


def _add_negative_constant(n: Call) -> Expr | None:
    """a + c = a - |c| for a negative constant c."""
    a, b = n.args
    if is_const(b) and b.value.is_negative:
        return a - Const(-b.value)
    return None


def _add_self(n: Call) -> Expr | None:
    """a + a = 2 a."""
    a, b = n.args
    return Const(2) * a if a == b else None


def _sub_zero(n: Call) -> Expr | None:
    """a - 0 = a and 0 - b = -b (when the other term alone has the full shape)."""
    a, b = n.args
    if is_zero(b) and _fits(a, n.shape):
        return a
    if is_zero(a) and _fits(b, n.shape):
        return -b
    return None


def _sub_negation(n: Call) -> Expr | None:
    """a - (-b) = a + b and (-a) - b = -(a + b)."""
    a, b = n.args
    if is_call(b, "neg"):
        return a + b.args[0]
    if is_call(a, "neg"):
        return -(a.args[0] + b)
    return None


def _sub_negative_constant(n: Call) -> Expr | None:
    """a - c = a + |c| for a negative constant c."""
    a, b = n.args
    if is_const(b) and b.value.is_negative:
        return a + Const(-b.value)
    return None


def _sub_self(n: Call) -> Expr | None:
    """s - s = 0 for a scalar s."""
    a, b = n.args
    return Const(0) if a == b and is_scalar(a) else None


def _sub_shorter_first(n: Call) -> Expr | None:
    """(a - B) - c = (a - c) - B: the shorter subtrahend first, as textbooks write it."""
    a, b = n.args
    if is_call(a, "sub") and _nodes(b) < _nodes(a.args[1]):
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


def _mul_matrix_forms(n: Call) -> Expr | None:
    """eye * v = diag(v), diag(v) * w = diag(v * w), v[:, None] * w[None, :] = outer(v, w)."""
    if len(n.shape) == 2:
        out = _matrix_product_rule(*n.args)
        if out is not None and out.shape == n.shape:
            return out
    return None


def _mul_one(n: Call) -> Expr | None:
    """1 * y = y and y * 1 = y."""
    for x, y in (n.args, n.args[::-1]):
        if is_const(x, 1) and _fits(y, n.shape):
            return y
    return None


def _mul_minus_one(n: Call) -> Expr | None:
    """(-1) * y = -y and y * (-1) = -y."""
    for x, y in (n.args, n.args[::-1]):
        if is_const(x, -1) and _fits(y, n.shape):
            return -y
    return None


def _mul_zero(n: Call) -> Expr | None:
    """0 * y = 0 (of the product's shape) and y * 0 = 0."""
    for x, y in (n.args, n.args[::-1]):
        if is_const(x, 0) and (is_scalar(y) or not is_call(y, "ones")):
            return zeros(n.shape) if len(n.shape) <= MAX_ONES_RANK else None
    return None


def _mul_ones(n: Call) -> Expr | None:
    """ones(...) * y = y when ones broadcasts to the shape of y."""
    for x, y in (n.args, n.args[::-1]):
        if is_call(x, "ones") and _broadcasts_to(x.shape, y.shape) and _fits(y, n.shape):
            return y
    return None


def _mul_negation(n: Call) -> Expr | None:
    """(-a) * b = -(a b) and a * (-b) = -(a b)."""
    a, b = n.args
    if is_call(a, "neg"):
        return -(a.args[0] * b)
    if is_call(b, "neg"):
        return -(a * b.args[0])
    return None


def _mul_constant_first(n: Call) -> Expr | None:
    """a * c = c * a for a constant c: constants are written first."""
    a, b = n.args
    if is_const(b) and not is_const(a):
        return b * a
    return None


def _mul_gather_constants(n: Call) -> Expr | None:
    """c (d x) = (c d) x, (c x) y = c (x y) and x (c y) = c (x y) for constants c, d."""
    a, b = n.args
    if is_const(a) and is_call(b, "mul") and is_const(b.args[0]):
        return (a * b.args[0]) * b.args[1]
    if is_call(a, "mul") and is_const(a.args[0]) and not is_const(b):
        return a.args[0] * (a.args[1] * b)
    if not is_const(a) and is_call(b, "mul") and is_const(b.args[0]):
        return b.args[0] * (a * b.args[1])
    return None


def _mul_quotient_outside(n: Call) -> Expr | None:
    """(p / q) r = (p r) / q and r (p / q) = (r p) / q: the quotient goes outside."""
    a, b = n.args
    if is_call(a, "div"):
        return (a.args[0] * b) / a.args[1]
    if is_call(b, "div"):
        return (a * b.args[0]) / b.args[1]
    return None


def _mul_square(n: Call) -> Expr | None:
    """a * a = a ** 2."""
    a, b = n.args
    return a ** Const(2) if a == b else None


def _cancel_into_sum(n: Call) -> Expr | None:
    """x (A - B / x) = x A - B (and +, either order), where x != 0: distribute only to cancel.

    The product is only distributed when a term is a quotient by the same x, so factored forms
    like P * (dP - sum(P * dP)) stay.
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


def _div_one(n: Call) -> Expr | None:
    """a / 1 = a."""
    a, b = n.args
    return a if is_const(b, 1) and _fits(a, n.shape) else None


def _div_ones(n: Call) -> Expr | None:
    """ones(...) / b = 1 / b when b has the quotient's shape."""
    a, b = n.args
    return Const(1) / b if is_call(a, "ones") and _fits(b, n.shape) else None


def _div_zero_numerator(n: Call) -> Expr | None:
    """0 / b = 0 for a scalar b (where b != 0)."""
    a, b = n.args
    return Const(0) if is_const(a, 0) and is_scalar(b) else None


def _div_negation(n: Call) -> Expr | None:
    """(-a) / b = -(a / b)."""
    a, b = n.args
    return -(a.args[0] / b) if is_call(a, "neg") else None


def _div_by_constant(n: Call) -> Expr | None:
    """A / c = (1 / c) A for a nonzero constant c and an array A."""
    a, b = n.args
    if is_const(b) and b.value != 0 and not is_scalar(a):
        return Const(1 / b.value) * a
    return None


def _div_nested(n: Call) -> Expr | None:
    """(a / s) / t = a / (s t) for scalars s, t."""
    a, b = n.args
    if is_call(a, "div") and is_scalar(b) and is_scalar(a.args[1]):
        return a.args[0] / (a.args[1] * b)
    return None


def _div_cancel(n: Call) -> Expr | None:
    """(x y) / x = y and (y x) / x = y, where x != 0."""
    a, b = n.args
    if is_call(a, "mul"):
        for u, v in (a.args, a.args[::-1]):
            if u == b and _fits(v, n.shape):
                return v
    return None


def _pow_one(n: Call) -> Expr | None:
    """a ** 1 = a."""
    a, b = n.args
    return a if is_const(b, 1) else None


def _pow_of_pow(n: Call) -> Expr | None:
    """(x ** a) ** k = x ** (a k) for an integer k; (x ** 2) ** (1/2) is |x|, not x."""
    a, b = n.args
    if is_call(a, "pow") and is_const(b) and b.value.is_Integer and is_const(a.args[1]):
        return a.args[0] ** Const(a.args[1].value * b.value)
    return None


def _neg_neg(n: Call) -> Expr | None:
    """-(-a) = a."""
    (a,) = n.args
    return a.args[0] if is_call(a, "neg") else None


def _neg_constant(n: Call) -> Expr | None:
    """-(c) = the constant -c."""
    (a,) = n.args
    return Const(-a.value) if is_const(a) else None


def _neg_difference(n: Call) -> Expr | None:
    """-(a - b) = b - a."""
    (a,) = n.args
    return a.args[1] - a.args[0] if is_call(a, "sub") else None


def _neg_scaled(n: Call) -> Expr | None:
    """-(c x) = (-c) x for a constant c."""
    (a,) = n.args
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


def _matmul_identity(n: Call) -> Expr | None:
    """I @ B = B and A @ I = A."""
    a, b = n.args
    if is_call(a, "eye"):
        return b
    if is_call(b, "eye"):
        return a
    return None


def _matmul_scalars_out(n: Call) -> Expr | None:
    """(s A) @ B = s (A @ B), (A / s) @ B = (A @ B) / s and (-A) @ B = -(A @ B), either side."""
    return _pull_scalars(n, lambda x, y: x @ y)


def _outer_scalars_out(n: Call) -> Expr | None:
    """outer(s u, v) = s outer(u, v), outer(u / s, v) = outer(u, v) / s, either side."""
    return _pull_scalars(n, lambda x, y: call("outer", x, y))


def _transpose_symmetric(n: Call) -> Expr | None:
    """v.T = v for a scalar or vector, diag(v).T = diag(v) and eye(n).T = eye(n)."""
    (a,) = n.args
    return a if len(a.shape) <= 1 or is_call(a, "diag", "eye") else None


def _transpose_transpose(n: Call) -> Expr | None:
    """(A.T).T = A."""
    (a,) = n.args
    return a.args[0] if is_call(a, "transpose") else None


def _transpose_matmul(n: Call) -> Expr | None:
    """(A @ B).T = B.T @ A.T for matrices A, B."""
    (a,) = n.args
    if is_call(a, "matmul") and len(a.args[0].shape) == 2 and len(a.args[1].shape) == 2:
        return a.args[1].T @ a.args[0].T
    return None


def _transpose_outer(n: Call) -> Expr | None:
    """outer(u, v).T = outer(v, u)."""
    (a,) = n.args
    return call("outer", a.args[1], a.args[0]) if is_call(a, "outer") else None


def _transpose_sum(n: Call) -> Expr | None:
    """(A + B).T = A.T + B.T (a broadcast row's transpose is a column), when no .T remains."""
    (a,) = n.args
    if is_call(a, "add", "sub") and len(a.shape) == 2:
        parts = [_transpose_term(t, a.shape) for t in a.args]
        if all(p is not None and not is_call(p, "transpose") for p in parts):
            return parts[0] + parts[1] if a.fn == "add" else parts[0] - parts[1]
    return None


def _transpose_negation(n: Call) -> Expr | None:
    """(-A).T = -(A.T)."""
    (a,) = n.args
    return -(a.args[0].T) if is_call(a, "neg") else None


def _transpose_scalar_out(n: Call) -> Expr | None:
    """(s A).T = s A.T and (A / s).T = A.T / s for a scalar s."""
    (a,) = n.args
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
    return _first_local(Call("transpose", (t,), (), (shape[1], shape[0])))


def _reduce_vector_axis(n: Call) -> Expr | None:
    """r(v, axis=0) = r(v) for a vector v: along the only axis, the plain reduction."""
    (x,) = n.args
    if len(x.shape) == 1 and _axis(n) is not None and not _keepdims(n):
        return call(n.fn, x)
    return None


def _reduce_unit_axis(n: Call) -> Expr | None:
    """sum(X, axis=k, keepdims=True) = X when axis k has length 1 (and so does mean)."""
    (x,) = n.args
    axis = _axis(n)
    if axis is not None and _keepdims(n) and x.shape[axis] == 1 and n.fn in ("sum", "mean"):
        return x
    return None


def _sum_simplex(n: Call) -> Expr | None:
    """sum(y, axis=-1) = 1 for y a declared simplex or one-hot variable (rows sum to one)."""
    if n.fn == "sum" and sums_to_one_over(n):
        return ones_like_shape(n.shape)
    return None


def _reduce_negation(n: Call) -> Expr | None:
    """sum(-X) = -sum(X) and mean(-X) = -mean(X), along any axes."""
    (x,) = n.args
    if n.fn in ("sum", "mean") and is_call(x, "neg"):
        return -call(n.fn, x.args[0], **dict(n.params))
    return None


def _reduce_scalar_out(n: Call) -> Expr | None:
    """sum(s X) = s sum(X) and sum(X / s) = sum(X) / s for a scalar s (mean alike)."""
    (x,) = n.args
    if n.fn not in ("sum", "mean"):
        return None
    split = _scalar_factor(x)
    if split is not None:
        op, s, inner = split
        red = call(n.fn, inner, **dict(n.params))
        return s * red if op == "mul" else red / s
    return None


def _sum_ones(n: Call) -> Expr | None:
    """sum(ones(n, k)) = n k: the count of its entries."""
    (x,) = n.args
    if n.fn == "sum" and is_call(x, "ones") and _axis(n) is None:
        return _count(x.shape)
    return None


def _sum_eye(n: Call) -> Expr | None:
    """sum(eye(n), axis=k) = ones(n): every row and column of I sums to one."""
    (x,) = n.args
    if n.fn == "sum" and is_call(x, "eye") and _axis(n) is not None:
        return call("ones", dims=n.shape)
    return None


def _sum_diag(n: Call) -> Expr | None:
    """sum(diag(v), axis=k) = v: each row and column of diag(v) holds one entry of v."""
    (x,) = n.args
    axis = _axis(n)
    if n.fn == "sum" and is_call(x, "diag") and len(x.shape) == 2 and axis is not None:
        v = x.args[0]
        return call("expand_dims", v, axis=axis) if _keepdims(n) else v
    return None


def _diag_ones_matmul(n: Call) -> Expr | None:
    """diag(ones(m, k) @ B) = sum(B, axis=0), diag(B @ ones(k, m)) = sum(B, axis=1): every
    row of ones(m, k) @ B is the column sums of B (every column of B @ ones, its row sums)."""
    (x,) = n.args
    if n.fn != "diag" or len(x.shape) != 2 or not is_call(x, "matmul"):
        return None
    a, b = x.args
    if is_call(a, "ones") and len(a.shape) == 2 and len(b.shape) == 2:
        return call("sum", b, axis=0)
    if is_call(b, "ones") and len(b.shape) == 2 and len(a.shape) == 2:
        return call("sum", a, axis=1)
    return None


def _diag_matmul_transpose(n: Call) -> Expr | None:
    """diag(P @ Q.T) = sum(P * Q, axis=1), diag(P.T @ Q) = sum(P * Q, axis=0): the i-th
    diagonal entry is row i of P dotted with row i of Q (column i with column i); no product
    of matrices is formed."""
    (x,) = n.args
    if n.fn != "diag" or len(x.shape) != 2 or not is_call(x, "matmul"):
        return None
    a, b = x.args
    if is_call(b, "transpose") and len(b.shape) == 2 and b.args[0].shape == a.shape:
        return call("sum", a * b.args[0], axis=1)
    if is_call(a, "transpose") and len(a.shape) == 2 and a.args[0].shape == b.shape:
        return call("sum", a.args[0] * b, axis=0)
    return None


def _sum_transpose(n: Call) -> Expr | None:
    """sum(A.T, axis=0) = sum(A, axis=1) and sum(A.T, axis=1) = sum(A, axis=0) for a matrix A
    (without keepdims: the kept axis would change sides)."""
    (x,) = n.args
    axis = _axis(n)
    if (
        n.fn == "sum"
        and is_call(x, "transpose")
        and len(x.shape) == 2
        and axis in (0, 1)
        and not _keepdims(n)
    ):
        return call("sum", x.args[0], axis=1 - axis)
    return None


def _count(shape: tuple) -> Expr:
    from engine.sizes import size_expr

    total: Expr = Const(1)
    for d in shape:
        term: Expr = size_expr(d)  # `h * dh` as Size(h) * Size(dh), never a Size named 'dh*h'
        total = term if is_const(total, 1) else total * term
    return total


def _expand_ones(n: Call) -> Expr | None:
    """expand_dims(ones(n), axis) = ones of the expanded shape."""
    (x,) = n.args
    if is_call(x, "ones"):
        return call("ones", dims=n.shape) if len(n.shape) <= MAX_ONES_RANK else None
    return None


def _expand_negation(n: Call) -> Expr | None:
    """expand_dims(-v, axis) = -expand_dims(v, axis)."""
    (x,) = n.args
    if is_call(x, "neg"):
        return -call("expand_dims", x.args[0], **dict(n.params))
    return None


def _expand_scalar_out(n: Call) -> Expr | None:
    """expand_dims(s v, axis) = s expand_dims(v, axis) (and a quotient by a scalar s)."""
    (x,) = n.args
    split = _scalar_factor(x)
    if split is not None:
        op, s, inner = split
        inner = call("expand_dims", inner, **dict(n.params))
        return s * inner if op == "mul" else inner / s
    return None


def _softmax_vector_axis(n: Call) -> Expr | None:
    """softmax(v, axis=0) = softmax(v) for a vector v (and log_softmax alike)."""
    (x,) = n.args
    if len(x.shape) == 1 and dict(n.params).get("axis", -1) not in (-1,):
        return call(n.fn, x)
    return None


def _log_exp(n: Call) -> Expr | None:
    """log(exp(x)) = x."""
    (x,) = n.args
    return x.args[0] if n.fn == "log" and is_call(x, "exp") else None


def _exp_log_softmax(n: Call) -> Expr | None:
    """exp(log_softmax(z)) = softmax(z)."""
    (x,) = n.args
    if n.fn == "exp" and is_call(x, "log_softmax"):
        return Call("softmax", x.args, x.params, x.shape)
    return None


def _log_softmax(n: Call) -> Expr | None:
    """log(softmax(z)) = log_softmax(z)."""
    (x,) = n.args
    if n.fn == "log" and is_call(unref(x), "softmax"):
        return call("log_softmax", unref(x).args[0], **dict(unref(x).params))
    return None


def _sqrt_constant(n: Call) -> Expr | None:
    """sqrt(c) = the rational number it equals, for a perfect square c."""
    (x,) = n.args
    if n.fn == "sqrt" and is_const(x):
        v = sympy.sqrt(x.value)
        return Const(v) if v.is_Rational else None
    return None


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
        self.rules: dict[str, list[Rule]] = {}  # each function's rules, in order (from RULES)
        # A body as the rules write it names its definition too: the reverse pass simplifies the
        # forward nodes it pulls back through (transpose(K, (0, 1, 3, 2)) becomes swapaxes(K, -1,
        # -2)), and softmax's VJP, which reads its own node, must still say P, not P2 = P's
        # formula again (which the export would compute twice). The rules are identities.
        for body, ref in list(self.defs.items()):
            canonical = self.simplify(body)
            if isinstance(canonical, Call) and canonical != body:
                self.defs.setdefault(canonical, ref)

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

    def _rewrite(self, node: Call) -> Expr | None:
        """The first rule's rewrite of `node` that changes it, or None."""
        rules = self.rules.get(node.fn)
        if rules is None:
            rules = self.rules[node.fn] = rules_for(node.fn)
        for rule in rules:
            out = rule.apply(node, self)
            if out is not None and out != node:
                return out
        return None

    def _local(self, node: Expr) -> Expr:
        for _ in range(MAX_LOCAL):
            if not isinstance(node, Call):
                return node
            out = self._rewrite(node)
            if out is None:
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


def _regroup_product(rw: Rewriter, n: Call) -> Expr | None:
    """x y / (x z) = y / z, u / w = X (defined), sum(s A) = s sum(A), sum(A) / N = mean(A)."""
    return rw._product(n)


def _common_denominator(rw: Rewriter, n: Call) -> Expr | None:
    """a / w + b / (w v) = (a + b / v) / w for a factor w both terms divide by."""
    return rw._common_denominator(n)


# ---------------------------------------------------------------- rules a reader expects (issue 8)


def positive_by_type(e: Expr) -> bool:
    """`e` is > 0 wherever it is defined, by the types of its variables and its functions."""
    e = unref(e)
    if isinstance(e, Var):
        return bool(TYPES[e.vtype].assumptions.get("positive"))
    if isinstance(e, Const):
        return e.value.is_positive is True
    if isinstance(e, Size):
        return True
    if is_call(e, "exp", "softmax", "sigmoid", "softplus"):
        return True
    if is_call(e, "sqrt", "sum", "mean", "pow"):
        return positive_by_type(e.args[0])
    if is_call(e, "add", "mul", "div"):
        return all(positive_by_type(a) for a in e.args)
    return False


def nonnegative_by_type(e: Expr) -> bool:
    """`e` is >= 0 wherever it is defined, by types and functions (x ** 2, abs, relu, var...)."""
    if positive_by_type(e):
        return True
    e = unref(e)
    if isinstance(e, Var):
        return bool(TYPES[e.vtype].assumptions.get("nonnegative"))
    if isinstance(e, Const):
        return e.value.is_nonnegative is True
    if is_call(e, "abs", "relu", "step", "sqrt", "var"):
        return True
    if is_call(e, "pow"):
        k = e.args[1]
        return (is_const(k) and k.value.is_even is True) or nonnegative_by_type(e.args[0])
    if is_call(e, "add", "mul", "sum", "mean"):
        return all(nonnegative_by_type(a) for a in e.args)
    if is_call(e, "div"):
        return nonnegative_by_type(e.args[0]) and positive_by_type(e.args[1])
    return False


def _softmax_axis_of(e: Expr) -> int | None:
    """The axis (non-negative) a softmax is taken along, or None if `e` is not a softmax."""
    e = unref(e)
    if not is_call(e, "softmax"):
        return None
    return params_of(e).get("axis", -1) % len(e.shape)


def _sum_softmax(n: Call) -> Expr | None:
    """sum(softmax(z, axis=a), axis=a) = 1: each row of a softmax sums to one."""
    (x,) = n.args
    axis = _softmax_axis_of(x)
    if n.fn != "sum" or axis is None:
        return None
    red = _axis(n)
    if red == axis or (red is None and len(x.shape) == 1):
        return ones_like_shape(n.shape)
    return None


def _row_total(e: Expr, length: Expr) -> Expr | None:
    """sum(e, axis=-1) by linearity, where each row of a distribution sums to 1; None if unknown."""
    e = unref(e)
    if e.shape == ():
        return e * length  # a scalar broadcast along the row
    if isinstance(e, Var) and TYPES[e.vtype].sums_to_one:
        return Const(1)
    if _softmax_axis_of(e) == len(e.shape) - 1:
        return Const(1)
    if is_call(e, "ones"):
        return length
    if is_call(e, "neg"):
        t = _row_total(e.args[0], length)
        return None if t is None else -t
    if is_call(e, "add", "sub"):
        a, b = (_row_total(x, length) for x in e.args)
        if a is None or b is None:
            return None
        return a + b if e.fn == "add" else a - b
    if is_call(e, "mul", "div"):
        split = _scalar_factor(e)
        if split is None:
            return None
        op, s, inner = split
        t = _row_total(inner, length)
        if t is None:
            return None
        return s * t if op == "mul" else t / s
    return None


def _sum_of_distributions(n: Call) -> Expr | None:
    """sum(t, axis=-1) = c for t a combination of distributions whose weights add to a constant c.

    Label smoothing's (1 - e) y + e / n and a mixture (1 - e) y + e q of simplex rows: the row
    total, by linearity, simplifies to 1 (to -1 for the negated target).
    """
    (x,) = n.args
    if n.fn != "sum" or not x.shape:
        return None
    axis = _axis(n)
    if not (axis == len(x.shape) - 1 or (axis is None and len(x.shape) == 1)):
        return None
    if isinstance(unref(x), Var) or _softmax_axis_of(x) is not None:
        return None  # sum-simplex and sum-softmax say it directly
    total = _row_total(x, _count(x.shape[-1:]))
    if total is None:
        return None
    total = Rewriter().simplify(total)
    if not is_const(total) or not total.value.is_Rational:
        return None
    ones = ones_like_shape(n.shape)
    return ones if total.value == 1 else (total if not n.shape else total * ones)


def _factor_scalar(n: Call) -> Expr | None:
    """c X + c Y = c (X + Y) and c X - Y c = c (X - Y) for a common scalar c (not a number)."""
    a, b = n.args
    if not (is_call(a, "mul") and is_call(b, "mul")):
        return None
    for c, x in (a.args, a.args[::-1]):
        if not is_scalar(c) or is_const(c):
            continue
        for d, y in (b.args, b.args[::-1]):
            if d == c and x.shape == y.shape == n.shape and not (is_scalar(x) and is_scalar(y)):
                return c * (x + y if n.fn == "add" else x - y)
    return None


def _add_cancel(n: Call) -> Expr | None:
    """(a - b) + b = a, b + (a - b) = a and (a + b) - b = (b + a) - b = a."""
    a, b = n.args
    if n.fn == "add":
        for x, y in ((a, b), (b, a)):
            if is_call(x, "sub") and x.args[1] == y and _fits(x.args[0], n.shape):
                return x.args[0]
    if n.fn == "sub" and is_call(a, "add"):
        for u, v in (a.args, a.args[::-1]):
            if v == b and _fits(u, n.shape):
                return u
    return None


MAX_EXPANDED_TERMS = 8  # monomials an expansion may hold


def _expanded_terms(e: Expr) -> list[tuple[tuple, sympy.Expr]] | None:
    """`e` expanded over + - * into (factors, coefficient) terms, like terms not yet collected
    (nodes other than + - * and constants are atoms); None beyond MAX_EXPANDED_TERMS terms."""
    if isinstance(e, Const):
        return [((), e.value)]
    if is_call(e, "neg"):
        p = _expanded_terms(e.args[0])
        return None if p is None else [(k, -c) for k, c in p]
    if is_call(e, "add", "sub", "mul"):
        a = _expanded_terms(e.args[0])
        b = None if a is None else _expanded_terms(e.args[1])
        if a is None or b is None:
            return None
        if e.fn == "mul":
            out = [(tuple(sorted(ka + kb, key=str)), ca * cb) for ka, ca in a for kb, cb in b]
        else:
            out = a + [(k, c if e.fn == "add" else -c) for k, c in b]
        return out if len(out) <= MAX_EXPANDED_TERMS else None
    return [((e,), ONE)]


def _polynomial(e: Expr) -> tuple[dict[tuple, sympy.Expr], int] | None:
    """`e` as {factors: coefficient} with like terms collected, and the count before collecting."""
    terms = _expanded_terms(e)
    if terms is None:
        return None
    out: dict[tuple, sympy.Expr] = {}
    for k, c in terms:
        out[k] = out.get(k, ZERO) + c
    return out, len(terms)


def _expand_if_shorter(n: Call) -> Expr | None:
    """A sum of products equals its expansion, like terms collected: (y - 1) s + y (1 - s) = y - s.

    Used only when like terms cancel or merge and the result is strictly shorter, so factored
    forms stay.
    """
    got = _polynomial(n)
    if got is None:
        return None
    poly, raw = got
    terms = [(k, c) for k, c in poly.items() if c != 0]
    if len(terms) >= raw:
        return None  # nothing cancelled or merged
    terms.sort(key=lambda kc: not kc[1].is_positive)  # a positive term first: a - b, not -b + a
    out: Expr | None = None
    for factors, c in terms:
        body = _product_of(list(factors))
        mag = abs(c)
        term = Const(mag) if body is None else (body if mag == 1 else Const(mag) * body)
        if out is None:
            out = term if c.is_positive else -term
        else:
            out = out + term if c.is_positive else out - term
    if out is None:
        out = zeros(n.shape)
    if out.shape != n.shape or _nodes(out) >= _nodes(n):
        return None
    return out


def _sqrt_squared(n: Call) -> Expr | None:
    """sqrt(u) ** 2 = u for u >= 0 by type."""
    a, b = n.args
    if is_const(b, 2) and is_call(a, "sqrt") and nonnegative_by_type(a.args[0]):
        if _fits(a.args[0], n.shape):
            return a.args[0]
    return None


def _div_self_positive(n: Call) -> Expr | None:
    """u / u = 1 for u > 0 by type."""
    a, b = n.args
    if a == b and positive_by_type(a):
        return ones_like_shape(n.shape)
    return None


def _diag_of(e: Expr) -> Expr | None:
    """v for diag(v) of a vector v, ones for eye(n); None for anything else."""
    if is_call(e, "diag") and len(e.args[0].shape) == 1:
        return e.args[0]
    if is_call(e, "eye"):
        return Const(1)
    return None


def _diag_combine(n: Call) -> Expr | None:
    """diag(a) + diag(b) = diag(a + b) (I = diag(1)); diag(a) + (diag(b) - C) = diag(a + b) - C."""
    a, b = n.args
    da, db = _diag_of(a), _diag_of(b)
    if da is not None and db is not None and not (is_const(da) and is_const(db)):
        inner = da + db if n.fn == "add" else da - db
        return call("diag", inner) if inner.shape == n.shape[:1] else None
    if da is not None and is_call(b, "add", "sub") and b.shape == n.shape:
        db = _diag_of(b.args[0])
        if db is not None and not (is_const(da) and is_const(db)):
            inner = da + db if n.fn == "add" else da - db
            rest = b.args[1]
            # a + (b +- C) = (a + b) +- C; a - (b + C) = (a - b) - C; a - (b - C) = (a - b) + C
            op = b.fn if n.fn == "add" else ("sub" if b.fn == "add" else "add")
            if inner.shape == n.shape[:1]:
                d = call("diag", inner)
                return d + rest if op == "add" else d - rest
    return None


def _diag_divided(n: Call) -> Expr | None:
    """diag(v) / w = diag(v / w), I / w = diag(1 / w): w a vector, row or column (w != 0)."""
    a, b = n.args
    d = _diag_of(a)
    if d is None or len(n.shape) != 2:
        return None
    col = _vector_axis(b)
    w = col[0] if col is not None else (b if len(b.shape) == 1 else None)
    if w is None or w.shape[0] != n.shape[0]:
        return None
    return call("diag", d / w)


def _mul_scalar_out_of_diag(n: Call) -> Expr | None:
    """(s D) * B = s (D * B) for a scalar s and D = I or diag(v): the diagonal form shows."""
    a, b = n.args
    for x, y in ((a, b), (b, a)):
        if is_call(x, "mul") and len(n.shape) == 2:
            for s, d in (x.args, x.args[::-1]):
                if is_scalar(s) and _diag_of(d) is not None and _fits(d, n.shape):
                    return s * (d * y)
    return None


def _transpose_scaled(n: Call) -> Expr | None:
    """(M * c[:, None]).T = M.T * c and (M * r).T = M.T * r[:, None]: rows scale, then columns."""
    (a,) = n.args
    if not is_call(a, "mul") or len(a.shape) != 2:
        return None
    for m, v in (a.args, a.args[::-1]):
        if m.shape != a.shape:
            continue
        col = _vector_axis(v)
        if col is not None and col[1] == 1:
            return m.T * col[0]
        if len(v.shape) == 1:
            return m.T * call("expand_dims", v, axis=-1)
    return None


def _mul_sign(n: Call) -> Expr | None:
    """x * sign(x) = abs(x)."""
    a, b = n.args
    for x, y in ((a, b), (b, a)):
        if is_call(y, "sign") and y.args[0] == x and _fits(x, n.shape):
            return call("abs", x)
    return None


def _scaled_columns_as_diag(n: Call) -> Expr | None:
    """(A * v) @ B = A @ diag(v) @ B for a matrix A whose columns a vector v scales (a row)."""
    a, b = n.args
    if not is_call(a, "mul") or len(a.shape) != 2 or len(b.shape) != 2:
        return None
    for m, v in (a.args, a.args[::-1]):
        if m.shape == a.shape and len(v.shape) == 1 and v.shape[0] == a.shape[1]:
            return (m @ call("diag", v)) @ b
    return None


def _transpose_sum_one_left(n: Call) -> Expr | None:
    """(A.T + B).T = A + B.T: a transpose of a sum distributes when it leaves at most one .T."""
    (a,) = n.args
    if is_call(a, "add", "sub") and len(a.shape) == 2:
        parts = [
            _transpose_term(t, a.shape) or (t.T if t.shape == a.shape else None) for t in a.args
        ]
        if all(p is not None for p in parts) and sum(is_call(p, "transpose") for p in parts) == 1:
            return parts[0] + parts[1] if a.fn == "add" else parts[0] - parts[1]
    return None


def _factor_constant(n: Call) -> Expr | None:
    """c X + c Y = c (X + Y) and c X - c Y = c (X - Y) for a number c and arrays X != Y."""
    a, b = n.args
    if not (is_call(a, "mul") and is_call(b, "mul")):
        return None
    (c, x), (d, y) = a.args, b.args
    if is_const(c) and is_const(d) and c == d and x != y and x.shape == y.shape == n.shape:
        if not is_scalar(x):
            return c * (x + y if n.fn == "add" else x - y)
    return None


def _ones_as_outer(n: Call) -> Expr | None:
    """ones(n, d) * v = outer(ones(n), v) and ones(n, d) * c[:, None] = outer(c, ones(d))."""
    if len(n.shape) != 2:
        return None
    rows, cols = n.shape
    for o, v in (n.args, n.args[::-1]):
        if not (is_call(o, "ones") and o.shape == n.shape):
            continue
        col = _vector_axis(v)
        if col is not None and col[1] == 1 and col[0].shape == (rows,):
            return call("outer", col[0], call("ones", dims=(cols,)))
        if len(v.shape) == 1 and v.shape == (cols,):
            return call("outer", call("ones", dims=(rows,)), v)
    return None


# Every rewrite rule, in the order they are tried at a node (the term rules of a node run after
# its local rules). The examples are formulas over EXAMPLE_VARS and EXAMPLE_DEFS whose root the
# rule rewrites; tests/test_simplify_rules.py checks node == rewrite(node) on them and on random
# instances with the verifier. Other areas add their rules at the END of this list.
EXAMPLE_VARS = {
    "x": "real[n]",
    "y": "real[n]",
    "q": "simplex[n]",
    "t": "onehot[n]",
    "Y": "simplex[b, n]",
    "s": "real",
    "a": "positive",
    "X": "real[n, k]",
    "w": "real[k]",
    "A": "real[n, n]",
    "B": "real[n, n]",
    "v": "positive[n]",
    "Z": "real[b, n]",
    "u": "unit",
    "T3": "real[b, n, k]",  # tensors of any rank
    "R3": "real[b, k, n]",
    "lab": "index[b, n]",  # integer labels (gather_rules.py)
}
EXAMPLE_DEFS = {
    "p": "softmax(x)",
    "xn": "(x - mean(x)) / sqrt(var(x) + a)",
}

_BINARY = ("add", "sub", "mul", "div")
RULES: list[Rule] = [
    # broadcasting leftovers
    Rule(
        "drop-vector-keepdims",
        _BINARY,
        _drop_vector_keepdims,
        ("x - sum(x, axis=-1, keepdims=True)", "y * mean(x, axis=0, keepdims=True)"),
    ),
    Rule(
        "drop-broadcast-ones",
        ("add", "sub"),
        _drop_broadcast_ones,
        ("x - ones(n) * s", "ones(n) * s + y"),
    ),
    # sums and differences
    Rule("collect", ("add", "sub"), _collect, ("2 * x + x", "3 * A - 5 * A", "x - x")),
    Rule(
        "fold-constants",
        ("add", "sub", "mul", "div", "pow"),
        _fold_constants,
        ("2 + 3", "2 - 5", "2 * 3", "3 / 4", "2 ** 3"),
    ),
    Rule(
        "jump-of-constant",
        ("sign", "step"),
        _jump_of_constant,
        ("sign(0)", "sign(-3)", "step(0)", "step(0.5)", "sign(0 * x)", "step(0 * A)"),
    ),
    Rule("sign-negation", ("sign",), _sign_negation, ("sign(-x)", "sign(-(A @ B))")),
    Rule("select-self", ("maximum", "minimum"), _select_self, ("maximum(x, x)", "minimum(A, A)")),
    Rule("add-zero", ("add",), _add_zero, ("0 + x", "A + 0 * ones(n, n)")),
    Rule("add-negation", ("add",), _add_negation, ("x + -y", "-A + B")),
    Rule("add-negative-constant", ("add",), _add_negative_constant, ("x + -2",)),
    Rule("add-self", ("add",), _add_self, ("x + x", "s * a + s * a")),
    Rule("sub-zero", ("sub",), _sub_zero, ("x - 0", "0 - A")),
    Rule("sub-negation", ("sub",), _sub_negation, ("x - -y", "-x - y")),
    Rule("sub-negative-constant", ("sub",), _sub_negative_constant, ("s - -2", "A - -0.5")),
    Rule("sub-self", ("sub",), _sub_self, ("s - s", "a * s - a * s")),
    Rule("sub-shorter-first", ("sub",), _sub_shorter_first, ("x - y * (x + y) - s",)),
    # products
    Rule(
        "mul-matrix-forms",
        ("mul",),
        _mul_matrix_forms,
        (
            "eye(n) * expand_dims(x, axis=-1)",
            "eye(n) * x",
            "diag(x) * y",
            "expand_dims(x, axis=1) * expand_dims(y, axis=0)",
            "(eye(n) - x) * expand_dims(y, axis=-1)",
        ),
    ),
    Rule("mul-one", ("mul",), _mul_one, ("x * 1", "1 * A")),
    Rule("mul-minus-one", ("mul",), _mul_minus_one, ("x * -1", "-1 * A")),
    Rule("mul-zero", ("mul",), _mul_zero, ("0 * x", "A * 0", "0 * s")),
    Rule("mul-ones", ("mul",), _mul_ones, ("ones(n) * x", "A * ones(n)")),
    Rule("mul-negation", ("mul",), _mul_negation, ("(-x) * y", "A * (-B)")),
    Rule("mul-constant-first", ("mul",), _mul_constant_first, ("x * 2", "A * 3")),
    Rule(
        "mul-gather-constants",
        ("mul",),
        _mul_gather_constants,
        ("2 * (3 * x)", "(2 * x) * y", "x * (2 * y)"),
    ),
    Rule("mul-quotient-outside", ("mul",), _mul_quotient_outside, ("(x / a) * y", "x * (y / v)")),
    Rule("mul-square", ("mul",), _mul_square, ("x * x", "A * A")),
    Rule(
        "mul-cancel-into-sum",
        ("mul",),
        _cancel_into_sum,
        ("v * (x - y / v)", "(y / v + x) * v"),
    ),
    # quotients
    Rule("div-one", ("div",), _div_one, ("x / 1",)),
    Rule("div-ones", ("div",), _div_ones, ("ones(n) / v",)),
    Rule("div-zero-numerator", ("div",), _div_zero_numerator, ("0 / a",)),
    Rule("div-negation", ("div",), _div_negation, ("(-x) / a", "(-A) / v")),
    Rule("div-by-constant", ("div",), _div_by_constant, ("x / 2", "A / 4")),
    Rule("div-nested", ("div",), _div_nested, ("x / a / s", "s / a / a")),
    Rule("div-cancel", ("div",), _div_cancel, ("(v * x) / v", "(x * a) / a")),
    # powers and negation
    Rule("pow-one", ("pow",), _pow_one, ("x ** 1",)),
    Rule("pow-of-pow", ("pow",), _pow_of_pow, ("(x ** 2) ** 3", "(v ** 0.5) ** 2")),
    Rule("neg-neg", ("neg",), _neg_neg, ("-(-x)",)),
    Rule("neg-constant", ("neg",), _neg_constant, (lambda: Call("neg", (Const(2),), (), ()),)),
    Rule("neg-difference", ("neg",), _neg_difference, ("-(x - y)",)),
    Rule("neg-scaled", ("neg",), _neg_scaled, ("-(2 * x)",)),
    # matrix products, outer products, transposes
    Rule("matmul-identity", ("matmul",), _matmul_identity, ("eye(n) @ A", "X.T @ eye(n)")),
    Rule(
        "matmul-scalars-out",
        ("matmul",),
        _matmul_scalars_out,
        ("(2 * X.T) @ (X @ w)", "(A / a) @ B", "(-A) @ B", "A @ (s * x)"),
    ),
    Rule(
        "outer-scalars-out",
        ("outer",),
        _outer_scalars_out,
        ("outer(2 * x, y)", "outer(x, -y)", "outer(x / a, y)"),
    ),
    Rule(
        "transpose-symmetric",
        ("transpose",),
        _transpose_symmetric,
        ("x.T", "diag(x).T", "eye(n).T"),
    ),
    Rule("transpose-transpose", ("transpose",), _transpose_transpose, ("A.T.T",)),
    Rule("transpose-matmul", ("transpose",), _transpose_matmul, ("(A @ B).T", "(X.T @ A).T")),
    Rule("transpose-outer", ("transpose",), _transpose_outer, ("outer(x, y).T",)),
    Rule(
        "transpose-sum",
        ("transpose",),
        _transpose_sum,
        ("(diag(x) - outer(x, y)).T", "(diag(x) - y).T", "(A @ B + eye(n)).T"),
    ),
    Rule("transpose-negation", ("transpose",), _transpose_negation, ("(-A).T",)),
    Rule("transpose-scalar-out", ("transpose",), _transpose_scalar_out, ("(s * A).T", "(A / a).T")),
    # reductions
    Rule(
        "reduce-vector-axis",
        REDUCTIONS,
        _reduce_vector_axis,
        ("sum(x, axis=0)", "mean(x, axis=0)", "var(x, axis=0)", "logsumexp(x, axis=-1)"),
    ),
    Rule(
        "reduce-unit-axis",
        ("sum", "mean"),
        _reduce_unit_axis,
        (
            "sum(expand_dims(x, axis=1), axis=1, keepdims=True)",
            "mean(expand_dims(x, axis=0), axis=0, keepdims=True)",
        ),
    ),
    Rule(
        "sum-simplex",
        ("sum",),
        _sum_simplex,
        ("sum(q)", "sum(t)", "sum(Y, axis=-1)", "sum(Y, axis=-1, keepdims=True)"),
    ),
    Rule("reduce-negation", ("sum", "mean"), _reduce_negation, ("sum(-x)", "mean(-A, axis=0)")),
    Rule(
        "reduce-scalar-out",
        ("sum", "mean"),
        _reduce_scalar_out,
        ("sum(s * x)", "mean(A / a, axis=1)", "sum(X * s, axis=0, keepdims=True)"),
    ),
    Rule("sum-ones", ("sum",), _sum_ones, ("sum(ones(n, k))", "sum(ones(n))")),
    Rule(
        "sum-eye",
        ("sum",),
        _sum_eye,
        ("sum(eye(n), axis=1)", "sum(eye(n), axis=0, keepdims=True)"),
    ),
    Rule(
        "sum-diag",
        ("sum",),
        _sum_diag,
        ("sum(diag(x), axis=0, keepdims=True)", "sum(diag(x), axis=1)"),
    ),
    Rule(
        "diag-matmul-transpose",
        ("diag",),
        _diag_matmul_transpose,
        ("diag(A @ B.T)", "diag(X.T @ X)", "diag(X @ X.T)"),
    ),
    Rule(
        "sum-transpose",
        ("sum",),
        _sum_transpose,
        ("sum(A.T, axis=0)", "sum(X.T, axis=1)"),
    ),
    Rule(
        "diag-ones-matmul",
        ("diag",),
        _diag_ones_matmul,
        ("diag(ones(n, n) @ A.T)", "diag(X @ ones(k, n))", "diag(ones(n, k) @ X.T)"),
    ),
    # broadcasting axes
    Rule("expand-ones", ("expand_dims",), _expand_ones, ("expand_dims(ones(n), axis=0)",)),
    Rule("expand-negation", ("expand_dims",), _expand_negation, ("expand_dims(-x, axis=1)",)),
    Rule(
        "expand-scalar-out",
        ("expand_dims",),
        _expand_scalar_out,
        ("expand_dims(s * x, axis=0)", "expand_dims(x / a, axis=-1)"),
    ),
    # the softmax family and elementary functions
    Rule(
        "softmax-vector-axis",
        ("softmax", "log_softmax"),
        _softmax_vector_axis,
        ("softmax(x, axis=0)", "log_softmax(x, axis=0)"),
    ),
    Rule("log-exp", ("log",), _log_exp, ("log(exp(x))",)),
    Rule(
        "exp-log-softmax",
        ("exp",),
        _exp_log_softmax,
        ("exp(log_softmax(x))", "exp(log_softmax(Z))"),
    ),
    Rule("log-softmax", ("log",), _log_softmax, ("log(softmax(x))", "log(p)", "log(softmax(Z))")),
    Rule("sqrt-constant", ("sqrt",), _sqrt_constant, ("sqrt(4)", "sqrt(2.25)")),
    # whole terms, with the user's definitions
    Rule(
        "regroup-product",
        ("mul", "div"),
        _regroup_product,
        (
            "(x - mean(x)) * y / sqrt(var(x) + a)",
            "sum(y) / n",
            "sum(X, axis=0) / n",
            "x * a / a",
            "s * ones(n) * x / s",
        ),
        term=True,
    ),
    Rule(
        "common-denominator",
        ("add", "sub"),
        _common_denominator,
        ("x / a - y / a", "x / a + y / (a * s)"),
        term=True,
    ),
    # rules a reader expects (issue 8: calculus, Hessians, distributions)
    Rule(
        "sum-softmax",
        ("sum",),
        _sum_softmax,
        (
            "sum(softmax(x))",
            "sum(p)",
            "sum(softmax(Z), axis=-1)",
            "sum(softmax(Z), axis=1, keepdims=True)",
            "sum(softmax(Z, axis=0), axis=0)",
        ),
    ),
    Rule(
        "sum-of-distributions",
        ("sum",),
        _sum_of_distributions,
        (
            "sum((1 - u) * t + u / n)",
            "sum((1 - u) * q + u * p)",
            "sum(u * Y + (1 - u) * softmax(Z), axis=-1, keepdims=True)",
            "sum(u * t - (t + u / n))",
        ),
    ),
    Rule(
        "factor-scalar",
        ("add", "sub"),
        _factor_scalar,
        ("s * x - s * y", "x * a + a * y", "A * (s * s) - (s * s) * B"),
    ),
    Rule("add-cancel", ("add", "sub"), _add_cancel, ("(x - y) + y", "y + (x - y)", "(x + s) - s")),
    Rule(
        "expand-if-shorter",
        ("add", "sub"),
        _expand_if_shorter,
        ("(y - 1) * x + y * (1 - x)", "x * (y + 1) - x * y", "(x - 1) * A - x * (A - 1)"),
    ),
    # final: inside the rewriter sqrt(u) ** 2 stays two factors sqrt(u), which LayerNorm's
    # regrouping into xhat = (x - mean(x)) / sqrt(var(x) + eps) needs
    Rule(
        "sqrt-squared",
        ("pow",),
        _sqrt_squared,
        ("sqrt(v) ** 2", "sqrt(x ** 2 + a) ** 2"),
        final=True,
    ),
    Rule(
        "div-self-positive",
        ("div",),
        _div_self_positive,
        ("v / v", "sqrt(v) / sqrt(v)", "exp(A) / exp(A)"),
    ),
    Rule(
        "diag-combine",
        ("add", "sub"),
        _diag_combine,
        (
            "diag(x) + diag(y)",
            "eye(n) - diag(x)",
            "diag(x) - eye(n)",
            "diag(x) + (diag(y) - outer(x, y))",
            "diag(x) - (diag(y) + A)",
        ),
    ),
    Rule(
        "diag-divided",
        ("div",),
        _diag_divided,
        ("diag(x) / expand_dims(v, axis=-1)", "eye(n) / expand_dims(v, axis=0)", "diag(x) / v"),
    ),
    Rule(
        "mul-scalar-out-of-diag",
        ("mul",),
        _mul_scalar_out_of_diag,
        (
            "eye(n) * s * expand_dims(x, axis=-1)",
            "(s * diag(x)) * y",
            "expand_dims(y, axis=0) * (diag(x) * s)",
        ),
    ),
    Rule(
        "transpose-scaled",
        ("transpose",),
        _transpose_scaled,
        ("(A * expand_dims(x, axis=-1)).T", "(X * w).T", "(expand_dims(x, axis=-1) * X).T"),
    ),
    Rule("mul-sign", ("mul",), _mul_sign, ("x * sign(x)", "sign(A) * A")),
    Rule(
        "transpose-sum-one-left",
        ("transpose",),
        _transpose_sum_one_left,
        ("(A.T + B).T", "(A - A.T).T", "(outer(x, y) + B).T"),
    ),
    Rule(
        "factor-constant",
        ("add", "sub"),
        _factor_constant,
        ("0.5 * A + 0.5 * A.T", "2 * X - 2 * tanh(X)"),
    ),
    Rule(
        "scaled-columns-as-diag",
        ("matmul",),
        _scaled_columns_as_diag,
        ("(X.T * x) @ X", "(x * A) @ B"),
        final=True,
    ),
    Rule(
        "ones-as-outer",
        ("mul",),
        _ones_as_outer,
        ("ones(n, k) * w", "expand_dims(x, axis=-1) * ones(n, k)"),
        final=True,
    ),
]


def rules_for(fn: str) -> list[Rule]:
    """The rules that rewrite a node of `fn`, in the order they are tried (term rules last)."""
    local = [r for r in RULES if fn in r.fns and not r.term and not r.final]
    return local + [r for r in RULES if fn in r.fns and r.term and not r.final]


def present(e: Expr) -> Expr:
    """`e` with the presentation rules applied once, bottom-up (ones(n, d) * v = 1 v^T)."""
    final = [r for r in RULES if r.final]

    def rewrite(node: Call) -> Expr:
        for r in final:
            if node.fn in r.fns:
                out = r.apply(node)
                if out is not None and out.shape == node.shape:
                    return out
        return node

    return map_calls(e, rewrite) if final else e


def _first_local(node: Call) -> Expr | None:
    """The first local rule's rewrite of `node` (None if no local rule applies)."""
    for r in rules_for(node.fn):
        if not r.term:
            out = r.apply(node)
            if out is not None:
                return out
    return None


def simplify(e: Expr, defs: Mapping[str, Ref] | None = None) -> Expr:
    """Simplify `e` with the local rules; subexpressions equal to a definition become its name."""
    return Rewriter(defs).simplify(e)


# structure: blocks of slices and concatenations (engine/derive/structure_rules.py), tried
# before the other rules of their functions
from engine.derive import structure_rules as _structure  # noqa: E402

RULES[:0] = [
    Rule(
        "blockwise-sum",
        ("add", "sub"),
        _structure.blockwise_sum,
        (
            "concat([x, y], axis=0) + concat([y, x], axis=0)",
            "concat([X, X], axis=1) - concat([X, 2 * X], axis=1)",
        ),
    ),
    Rule(
        "slice-of-concat",
        ("getitem",),
        _structure.slice_of_concat,
        ("concat([x, y], axis=0)[n:]", "concat([X, X], axis=1)[:, :k]"),
    ),
    Rule(
        "slice-of-scaled",
        ("getitem",),
        _structure.slice_of_scaled,
        ("(2 * x)[1:]", "(X / a)[:, :1]", "(-X)[1:]"),
    ),
    Rule(
        "concat-of-slices",
        ("concat",),
        _structure.concat_of_slices,
        ("concat([x[:1], x[1:]], axis=0)", "concat([X[:, :1], X[:, 1:]], axis=1)"),
    ),
]


# tensors of any rank (engine/derive/tensor_rules.py): swapaxes, transpose(x, axes), einsum,
# squeeze and tuple-axis reductions. The older transpose rules are for .T (no axes) and the
# older reduction rules for one axis: guarded, they leave transpose(x, axes) and tuple axes to
# these.
from engine.derive import tensor_rules as _tensor  # noqa: E402


def _skipping(rule: Rule, fns: tuple[str, ...], skip: Callable[[Call], bool]) -> Rule:
    """`rule`, not applied to a node of `fns` for which `skip(node)` holds."""
    inner = rule.rewrite

    @functools.wraps(inner)
    def rewrite(*args):
        node = args[-1]
        return None if node.fn in fns and skip(node) else inner(*args)

    return dataclasses.replace(rule, rewrite=rewrite)


def _transpose_with_axes(n: Call) -> bool:
    x = n.args[0]
    return bool(n.params) or (isinstance(x, Call) and x.fn == "transpose" and bool(x.params))


def _tuple_axes(n: Call) -> bool:
    return isinstance(dict(n.params).get("axis"), tuple)


# rules that never read the axis (they pass it through), kept for tuple axes too (rank >= 3)
_AXIS_FREE = ("reduce-negation", "reduce-scalar-out", "expand-ones", "expand-negation")
_AXIS_FREE += ("expand-scalar-out",)

RULES[:] = [
    _skipping(
        _skipping(r, ("transpose",), _transpose_with_axes),
        REDUCTIONS + ("expand_dims",) if r.name not in _AXIS_FREE else (),
        _tuple_axes,
    )
    for r in RULES
]
RULES[:0] = [
    Rule("swapaxes-same-axis", ("swapaxes",), _tensor.swapaxes_same_axis, ("swapaxes(T3, 1, 1)",)),
    Rule(
        "swapaxes-involution",
        ("swapaxes",),
        _tensor.swapaxes_involution,
        ("swapaxes(swapaxes(T3, 0, 2), 0, 2)",),
    ),
    Rule("swapaxes-of-matrix", ("swapaxes",), _tensor.swapaxes_of_matrix, ("swapaxes(A, 0, 1)",)),
    Rule(
        "swapaxes-of-product",
        ("swapaxes",),
        _tensor.swapaxes_of_product,
        ("swapaxes(T3 @ R3, -1, -2)",),
    ),
    Rule(
        "swapaxes-of-scaled",
        ("swapaxes",),
        _tensor.swapaxes_of_scaled,
        ("swapaxes(s * T3, 0, 1)", "swapaxes(-T3, 1, 2)"),
    ),
    Rule(
        "transpose-identity",
        ("transpose",),
        _tensor.transpose_identity,
        ("transpose(T3, (0, 1, 2))",),
    ),
    Rule(
        "transpose-of-matrix",
        ("transpose",),
        _tensor.transpose_of_matrix,
        ("transpose(A, (1, 0))",),
    ),
    Rule(
        "transpose-compose",
        ("transpose",),
        _tensor.transpose_compose,
        ("transpose(transpose(T3, (1, 0, 2)), (2, 0, 1))",),
    ),
    Rule(
        "einsum-pull-scalar",
        ("einsum",),
        _tensor.einsum_pull_scalar,
        ('einsum("ij,jk->ik", s * X, X.T)',),
    ),
    Rule("einsum-identity", ("einsum",), _tensor.einsum_identity, ('einsum("ij->ij", X)',)),
    Rule(
        "einsum-scalar-operand",
        ("einsum",),
        _tensor.einsum_scalar_operand,
        ('einsum(",ij->ij", s, X)',),
    ),
    Rule(
        "sum-of-sum-keepdims",
        ("sum", "mean"),
        _tensor.sum_of_sum_keepdims,
        ("sum(sum(T3, axis=0, keepdims=True), axis=2, keepdims=True)",),
    ),
    Rule(
        "sum-over-unit-axes",
        ("sum", "mean"),
        _tensor.sum_over_unit_axes,
        ("sum(expand_dims(x, axis=0), axis=0)",),
    ),
    Rule(
        "expand-dims-of-reduction",
        ("expand_dims",),
        _tensor.expand_dims_of_reduction,
        ("expand_dims(sum(T3, axis=1), axis=1)",),
    ),
    Rule(
        "expand-dims-of-scalar",
        ("expand_dims",),
        _tensor.expand_dims_of_scalar,
        ("expand_dims(s, axis=0)",),
    ),
    Rule(
        "squeeze-of-expand-dims",
        ("squeeze",),
        _tensor.squeeze_of_expand_dims,
        ("squeeze(expand_dims(x, axis=1), axis=1)",),
    ),
]

# integer labels (engine/derive/gather_rules.py): one_hot's rows sum to one
from engine.derive import gather_rules as _gather  # noqa: E402

RULES += [
    Rule(
        "sum-one-hot",
        ("sum",),
        _gather.sum_one_hot,
        ("sum(one_hot(lab), axis=-1)", "sum(one_hot(lab), axis=1, keepdims=True)"),
    ),
]

# rank >= 3 residue (issue 8, textbook derive at rank >= 3; engine/derive/axes_rules.py): nested
# reductions merge, squeeze undoes keepdims, naming every axis is reducing all
from engine.derive import axes_rules as _axes_rules  # noqa: E402

RULES += [
    Rule(
        "reduce-of-reduce",
        _axes_rules.NESTING,
        _axes_rules.reduce_of_reduce,
        (
            "sum(sum(T3, axis=0), axis=0)",
            "sum(sum(sum(T3, axis=0), axis=0))",
            "mean(mean(T3, axis=1), axis=-1)",
            "sum(sum(T3, axis=0, keepdims=True), axis=(0, 1), keepdims=True)",
            "sum(sum(T3, axis=-1, keepdims=True))",
            "logsumexp(logsumexp(T3, axis=2), axis=0)",
            "max(max(X, axis=0))",
            "sum(sum(T3, axis=0), axis=1, keepdims=True)",
            "mean(mean(T3, axis=1), axis=(0, 1), keepdims=True)",
        ),
    ),
    Rule(
        "reduce-all-axes",
        _axes_rules.NESTING + ("var",),
        _axes_rules.reduce_all_axes,
        ("sum(T3, axis=(0, 1, 2))", "var(X, axis=(1, 0))", "mean(T3, axis=(0, -2, -1))"),
    ),
    Rule(
        "squeeze-of-keepdims",
        ("squeeze",),
        _axes_rules.squeeze_of_keepdims,
        (
            "squeeze(sum(T3, axis=0, keepdims=True), 0)",
            "squeeze(mean(T3, axis=(0, 2), keepdims=True), (0, 2))",
            "squeeze(logsumexp(T3, axis=-1, keepdims=True), -1)",
            "squeeze(sum(x, keepdims=True))",
            "squeeze(var(X, axis=1, keepdims=True))",
        ),
    ),
    Rule(
        "centred-sum-is-zero",
        ("sum", "mean"),
        _axes_rules.centred_sum_is_zero,
        (
            "mean(X - mean(X, axis=0, keepdims=True), axis=0, keepdims=True)",
            "sum(T3 - mean(T3, axis=(0, 1), keepdims=True), axis=(0, 1))",
            "sum(T3 - mean(T3, axis=-1, keepdims=True))",
            "mean(X - mean(X))",
        ),
    ),
    Rule(
        "gather-broadcast-ones",
        ("add", "sub"),
        _axes_rules.gather_broadcast_ones,
        (
            "sum(T3, axis=0, keepdims=True) + sum(T3, axis=0, keepdims=True) * ones(b, n, k)",
            "ones(b, n, k) * w - sum(T3, axis=(0, 1))",
            "ones(n, k) * w + ones(n, k) * s",
            "x - expand_dims(x, axis=-1) * ones(n, n)",
        ),
    ),
    Rule(
        "add-negative-multiple",
        ("add", "sub"),
        _axes_rules.add_negative_multiple,
        ("x + -2 * y", "A - -0.5 * (B @ A)", "T3 + -3 * swapaxes(s * R3, -1, -2)"),
    ),
    Rule(
        "zero-array-absorbs",
        ("mul", "div"),
        _axes_rules.zero_array_absorbs,
        ("0 * ones(n, k) / a", "(0 * ones(b, n, k)) * T3", "x * (0 * ones(n))", "0 * ones(n) / v"),
    ),
    Rule(
        "permute-of-permute",
        ("swapaxes", "transpose"),
        _axes_rules.permute_of_permute,
        (
            "swapaxes(transpose(T3, (0, 2, 1)), -1, -2)",
            "transpose(swapaxes(T3, 0, 1), (2, 0, 1))",
            "swapaxes(swapaxes(T3, 0, 1), 1, 2)",
            "swapaxes(transpose(T3, (1, 0, 2)), 0, 2)",
        ),
    ),
    Rule(
        "transpose-as-swapaxes",
        ("transpose",),
        _axes_rules.transpose_as_swapaxes,
        ("transpose(T3, (0, 2, 1))", "transpose(T3, (2, 1, 0))"),
    ),
    Rule(
        "last-axis-as-minus-one",
        _axes_rules.KEEPDIMS + ("expand_dims",),
        _axes_rules.last_axis_as_minus_one,
        (
            "sum(T3, axis=2, keepdims=True)",
            "max(T3, axis=2)",
            "expand_dims(X, axis=2)",
            "logsumexp(T3, axis=2)",
        ),
    ),
    Rule(
        "expand-dims-into-reductions",
        ("expand_dims",),
        _axes_rules.expand_dims_into_reductions,
        (
            "expand_dims(1 / sum(T3, axis=0), axis=0)",
            "expand_dims(sum(T3 ** 2, axis=1) / sum(exp(T3), axis=1) ** 2, axis=1)",
            "expand_dims(s * exp(-max(X, axis=1)) + 1, axis=-1)",
        ),
    ),
    Rule(
        "ones-term-as-one",
        ("add", "sub"),
        _axes_rules.ones_term_as_one,
        ("ones(n) + x", "A - ones(n, n)", "ones(k) - sum(T3, axis=(0, 1))"),
    ),
    Rule(
        "drop-redundant-ones",
        ("add", "sub", "mul", "div"),
        _axes_rules.drop_redundant_ones,
        (
            "T3 - sum(T3, axis=0, keepdims=True) * ones(b, n, k) / a",
            "(s * ones(n)) * x / v + x",
            "2 * (T3 * ones(b, n, k))",
            "x * ones(n) / a",
        ),
    ),
    Rule(
        "collect-across",
        ("add", "sub"),
        _axes_rules.collect_across,
        ("(x - y) + x", "(2 * T3 + s) - T3", "(A + B) - A"),
    ),
]

# terms over one divisor (engine/derive/grouping_rules.py): a residual stream's LayerNorm backward
# reads G + (dA - mean(dA) - A * mean(dA * A)) / sigma
from engine.derive import grouping_rules as _grouping  # noqa: E402

RULES += [
    Rule(
        "group-common-divisor",
        ("add", "sub"),
        _grouping.group_common_divisor,
        (
            "y + x / a - y / a",
            "x - y / v + x / v - 2 * x / v",
            "Z + Z / sum(exp(Z), axis=1, keepdims=True)"
            " - exp(Z) / sum(exp(Z), axis=1, keepdims=True)",
            "x - xn * mean(xn * y) / sqrt(var(x) + a) + y / sqrt(var(x) + a)",
        ),
    ),
]
