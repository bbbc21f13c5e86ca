"""Fused framework kernels for the PyTorch export's eager path: a recognized subprogram, one call.

PyTorch computes some backward passes in one fused kernel that no sequence of elementwise
operations matches on a CPU: LayerNorm's backward reads each row once, in cache, where the
derived program makes ten passes over the whole array (benchmarks/RESULTS.md: the exported
LayerNorm backward at 512 x 1024 was 1.3 to 1.4 times `torch.autograd`); softmax and its
backward (p * (g - sum(p * g))) are one pass each instead of four, and no (B, h, n, n) temporary.
A `KernelRule` finds such a subprogram in a lowered program and replaces it by one call of the
framework's kernel. The rules: LayerNorm's backward, softmax, softmax's backward.

Each rule states its identities (`claims`: the derived formula equals the kernel's mathematics,
checked by our verifier in tests/test_export_kernels.py), and tests check that the kernel gives
the derived program's values. The rules run only on the eager path of the PyTorch export (the
`_may_reuse` branch): under autograd, `torch.func` transforms and `torch.compile` the module runs
the derived program as printed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.export.lower import strip_refs
from engine.expr import Call, Const, Expr, Ref


class Bare:
    """Trees with every definition (Ref) replaced by its body: `xhat` and its formula compare
    equal."""

    def __init__(self) -> None:
        self.memo: dict[Expr, Expr] = {}

    def __call__(self, e: Expr) -> Expr:
        got = self.memo.get(e)
        if got is not None:
            return got
        out = e
        if isinstance(e, Ref):
            out = self(e.body)
        elif isinstance(e, Call):
            args = tuple(self(a) for a in e.args)
            out = e if args == e.args else Call(e.fn, args, e.params, e.shape)
        self.memo[e] = out
        return out


def _row_mean_of(e: Expr) -> Expr | None:
    """x when e is mean(x, axis=-1, keepdims=True) (the last axis, its length kept as 1)."""
    e = strip_refs(e)
    if not (isinstance(e, Call) and e.fn == "mean"):
        return None
    p = dict(e.params)
    rank = len(e.args[0].shape)
    axis = p.get("axis")
    axis = axis[0] if isinstance(axis, tuple) and len(axis) == 1 else axis
    if rank == 0 or axis not in (-1, rank - 1) or not p.get("keepdims"):
        return None
    return e.args[0]


def _product_of(e: Expr, a: Expr, b: Expr, bare: Bare) -> bool:
    """e is a * b or b * a (up to definitions)."""
    e = strip_refs(e)
    if not (isinstance(e, Call) and e.fn == "mul"):
        return False
    x, y = (bare(c) for c in e.args)
    return {x, y} == {bare(a), bare(b)} and (x == y) == (bare(a) == bare(b))


def _signed_terms(e: Expr, sign: int = 1) -> list[tuple[int, Expr]]:
    """e as a signed sum of terms (which broadcast together), through +, - and unary minus."""
    s = strip_refs(e)
    if isinstance(s, Call) and s.fn in ("add", "sub"):
        left, right = s.args
        flip = -sign if s.fn == "sub" else sign
        return _signed_terms(left, sign) + _signed_terms(right, flip)
    if isinstance(s, Call) and s.fn == "neg":
        return _signed_terms(s.args[0], -sign)
    return [(sign, e)]


def _layer_norm_sigma(sigma: Expr, bare: Bare) -> tuple[Expr, Expr, Expr] | None:
    """(x, the centred x, eps) when sigma is sqrt(mean(c * c, axis=-1, keepdims=True) + eps),
    c = x - mean(x, axis=-1, keepdims=True) (eps a scalar, 0 when absent)."""
    root = strip_refs(sigma)
    if not (isinstance(root, Call) and root.fn == "sqrt"):
        return None
    inside = strip_refs(root.args[0])
    eps: Expr = Const(0)
    stat = inside
    if isinstance(inside, Call) and inside.fn == "add":
        a, b = inside.args
        if b.shape == ():
            stat, eps = a, b
        elif a.shape == ():
            stat, eps = b, a
    square = _row_mean_of(stat)
    if square is None:
        return None
    sq = strip_refs(square)
    if not isinstance(sq, Call):
        return None
    if sq.fn == "mul" and bare(sq.args[0]) == bare(sq.args[1]):
        centred = sq.args[0]
    elif sq.fn == "pow" and isinstance(sq.args[1], Const) and sq.args[1].value == 2:
        centred = sq.args[0]
    else:
        return None
    c = strip_refs(centred)
    if not (isinstance(c, Call) and c.fn == "sub"):
        return None
    x, m = c.args
    mean_of = _row_mean_of(m)
    if mean_of is None or bare(mean_of) != bare(x) or c.shape != x.shape:
        return None
    return x, centred, eps


@dataclass(frozen=True)
class KernelRule:
    """A subprogram that a framework computes in one fused kernel.

    `find(nodes, bare)` returns the substitutions {node: replacement} for one lowered program
    (every node of its roots, children first); `forms` writes the rule's internal calls and
    `helper` is the module function they call. `claims` (over `claim_vars` and `claim_defs`)
    state the identities the replacement rests on: each formula the rule replaces equals what
    the kernel computes. tests/test_export_kernels.py verifies them with our own verifier.
    """

    name: str
    find: Callable[[list[Expr], Bare], dict[Expr, Expr]]
    forms: dict[str, Callable[[tuple[str, ...], Call], str]]
    helper: str
    claims: tuple[str, ...]
    claim_vars: dict[str, str]
    claim_defs: dict[str, str]


# ---------------------------------------------------------------- LayerNorm backward

LAYER_NORM_HELPER = '''def _layer_norm_backward(grad, x, eps, weight=None):
    """LayerNorm's vector-Jacobian product over the last axis, in PyTorch's fused kernel.

    With xhat = (x - mean(x)) / sqrt(var(x) + eps) and y = xhat * weight (+ a bias), for the
    cotangent grad of y: (dx, dweight, dbias), where G = grad * weight (grad without a weight),
    dx = (G - mean(G) - xhat * mean(G * xhat)) / sqrt(var(x) + eps), dweight = sum(grad * xhat)
    and dbias = sum(grad) over the leading axes (None, None without a weight). These are the
    derived program's formulas (engine.export.kernels checks the identity); the kernel reads
    each row once. Statistics as torch's LayerNorm computes them (float32 for 16-bit inputs).
    """
    if x.is_meta:  # no number for eps on the meta device: the same shapes, computed plainly
        var = torch.mean(torch.square(x - torch.mean(x, dim=-1, keepdim=True)), -1, True)
        mean, rstd = torch.mean(x, dim=-1, keepdim=True), torch.rsqrt(var + eps)
    else:
        _, mean, rstd = torch.native_layer_norm(x, x.shape[-1:], None, None, float(eps))
    affine = weight is not None
    # the kernel reads only whether a bias is given (to return dbias): the weight stands in
    return torch.ops.aten.native_layer_norm_backward(
        grad, x, x.shape[-1:], mean, rstd, weight, weight, (True, affine, affine)
    )'''


def _leading_sum_of(e: Expr, rank: int) -> Expr | None:
    """y when e is sum(y, axis=<every axis but the last>) of a rank-`rank` y, keepdims off."""
    e = strip_refs(e)
    if not (isinstance(e, Call) and e.fn == "sum") or rank < 2:
        return None
    y = e.args[0]
    if len(y.shape) != rank:
        return None
    p = dict(e.params)
    axis = p.get("axis")
    axes = axis if isinstance(axis, tuple) else (axis,)
    if axis is None or p.get("keepdims"):
        return None
    if {a % rank for a in axes} != set(range(rank - 1)):
        return None
    return y


def _find_layer_norm_backward(nodes: list[Expr], bare: Bare) -> dict[Expr, Expr]:
    """(G - mean(G) - xhat * mean(G * xhat)) / sigma as one kernel call, with the weight's and
    bias's gradients sum(grad * xhat) and sum(grad) over the leading axes when G = grad * weight.
    """
    subs: dict[Expr, Expr] = {}
    sums = [n for n in nodes if isinstance(n, Call) and n.fn == "sum"]
    for node in nodes:
        if not (isinstance(node, Call) and node.fn == "div") or node in subs:
            continue
        num, sigma = node.args
        found = _layer_norm_sigma(sigma, bare)
        if found is None:
            continue
        x, centred, eps = found
        if node.shape != x.shape:
            continue
        xhat = bare(Call("div", (centred, sigma), (), x.shape))
        terms = _signed_terms(num)
        if len(terms) != 3:
            continue
        match = _layer_norm_terms(terms, xhat, bare)
        if match is None:
            continue
        grad, weight = _weighted(match, x)
        if grad.shape != x.shape:  # a cotangent that broadcasts along x: not the kernel's
            continue
        rank = len(x.shape)
        args = (grad, x, eps) if weight is None else (grad, x, eps, weight)
        kernel = Call("_layer_norm_backward", args, (), x.shape)
        subs[node] = _item(kernel, 0, x.shape)
        if weight is None:
            continue
        for s in sums:
            y = _leading_sum_of(s, rank)
            if y is None or s in subs:
                continue
            if _product_of(y, grad, xhat, bare):
                subs[s] = _item(kernel, 1, s.shape)
            elif bare(y) == bare(grad):
                subs[s] = _item(kernel, 2, s.shape)
    return subs


def _layer_norm_terms(terms, xhat: Expr, bare: Bare) -> Expr | None:
    """G when the signed terms are +G, -mean(G), -xhat * mean(G * xhat), in any order."""
    for sign, g in terms:
        if sign != 1:
            continue
        rest = [(s, t) for s, t in terms if t is not g]
        if len(rest) != 2 or any(s != -1 for s, _ in rest):
            continue
        means = [t for _, t in rest if _row_mean_of(t) is not None]
        if not any(bare(_row_mean_of(t)) == bare(g) for t in means):
            continue
        for _, t in rest:
            prod = strip_refs(t)
            if not (isinstance(prod, Call) and prod.fn == "mul"):
                continue
            for i in (0, 1):
                if bare(prod.args[i]) != xhat:
                    continue
                inner = _row_mean_of(prod.args[1 - i])
                if inner is not None and _product_of(inner, g, xhat, bare):
                    return g
    return None


def _weighted(g: Expr, x: Expr) -> tuple[Expr, Expr | None]:
    """(grad, weight) when G = grad * weight with a weight along x's last axis, else (G, None)."""
    s = strip_refs(g)
    if isinstance(s, Call) and s.fn == "mul":
        for i in (0, 1):
            grad, weight = s.args[i], s.args[1 - i]
            if grad.shape == x.shape and weight.shape == x.shape[-1:]:
                return grad, weight
    return g, None


def _item(kernel: Call, index: int, shape) -> Call:
    return Call("_item", (kernel,), (("index", index),), shape)


def _call_text(fn: str) -> Callable[[tuple[str, ...], Call], str]:
    return lambda args, node: f"{fn}({', '.join(args)})"


LAYER_NORM_BACKWARD = KernelRule(
    name="layer-norm-backward",
    find=_find_layer_norm_backward,
    forms={"_layer_norm_backward": _call_text("_layer_norm_backward")},
    helper=LAYER_NORM_HELPER,
    claims=(
        # dx for any cotangent G of xhat (with a weight, G = grad * weight)
        "grad(sum(G * xhat), X) == (G - mean(G, axis=-1, keepdims=True)"
        " - xhat * mean(G * xhat, axis=-1, keepdims=True)) / sigma",
        # dweight and dbias of y = xhat * g + b, over the leading axes
        "grad(sum(O * (xhat * g + b)), g) == sum(O * xhat, axis=0)",
        "grad(sum(O * (xhat * g + b)), b) == sum(O, axis=0)",
    ),
    claim_vars={
        "X": "real[n, d]",
        "G": "real[n, d]",
        "O": "real[n, d]",
        "g": "real[d]",
        "b": "real[d]",
        "eps": "positive",
    },
    claim_defs={
        "sigma": "sqrt(var(X, axis=-1, keepdims=True) + eps)",
        "xhat": "(X - mean(X, axis=-1, keepdims=True)) / sigma",
    },
)

# ---------------------------------------------------------------- softmax and its backward


def _softmax_of(e: Expr, bare: Bare) -> tuple[Expr, int] | None:
    """(x, axis) when e is the lowered softmax exp(x - max(x)) / sum(exp(x - max(x))) along
    one axis (engine.export.lower; a vector's max and sum are over everything)."""
    e = strip_refs(e)
    if not (isinstance(e, Call) and e.fn == "div"):
        return None
    num, den = (strip_refs(a) for a in e.args)
    if not (isinstance(num, Call) and num.fn == "exp" and isinstance(den, Call)):
        return None
    shifted = strip_refs(num.args[0])
    if not (isinstance(shifted, Call) and shifted.fn == "sub"):
        return None
    x, m = shifted.args[0], strip_refs(shifted.args[1])
    if not (isinstance(m, Call) and m.fn == "_amax" and bare(m.args[0]) == bare(x)):
        return None
    if den.fn != "sum" or bare(den.args[0]) != bare(num) or e.shape != x.shape:
        return None
    rank = len(x.shape)
    pm, ps = dict(m.params), dict(den.params)
    if rank == 1:  # max and sum over the whole vector
        if pm.get("axis") is None and ps.get("axis") is None and not ps.get("keepdims"):
            return x, -1
        return None
    axis = pm.get("axis")
    if not isinstance(axis, int) or not pm.get("keepdims") or not ps.get("keepdims"):
        return None
    if ps.get("axis") != axis:
        return None
    return x, axis - rank if axis >= 0 else axis


def _parents(nodes: list[Expr]) -> dict[Expr, set[Expr]]:
    out: dict[Expr, set[Expr]] = {}
    for n in nodes:
        for c in n.children():
            out.setdefault(c, set()).add(n)
    return out


def _find_softmax(nodes: list[Expr], bare: Bare) -> dict[Expr, Expr]:
    """exp(x - max(x)) / sum(exp(x - max(x))) as one torch.softmax, where nothing else reads the
    exponentials or their sum (cross-entropy's log-sum-exp shares them: left as it is)."""
    parents = _parents(nodes)
    subs: dict[Expr, Expr] = {}
    for node in nodes:
        if not (isinstance(node, Call) and node.fn == "div"):
            continue
        found = _softmax_of(node, bare)
        if found is None:
            continue
        x, axis = found
        num, den = node.args
        if parents.get(num, set()) - {node, den} or parents.get(den, set()) - {node}:
            continue
        subs[node] = Call("_softmax", (x,), (("axis", axis),), node.shape)
    return subs


def _find_softmax_backward(nodes: list[Expr], bare: Bare) -> dict[Expr, Expr]:
    """p * (g - sum(p * g, axis, keepdims=True)) for p = softmax(x, axis) as one call of the
    kernel torch's own softmax backward runs."""
    subs: dict[Expr, Expr] = {}
    for node in nodes:
        if not (isinstance(node, Call) and node.fn == "mul"):
            continue
        for i in (0, 1):
            p, rest = node.args[i], strip_refs(node.args[1 - i])
            found = _softmax_of(p, bare)
            if found is None or not (isinstance(rest, Call) and rest.fn == "sub"):
                continue
            _, axis = found
            g, total = rest.args[0], strip_refs(rest.args[1])
            if g.shape != p.shape or node.shape != p.shape:
                continue
            if _sum_of_product_along(total, p, g, axis, bare):
                subs[node] = Call("_softmax_backward", (g, p), (("axis", axis),), node.shape)
                break
    return subs


def _sum_of_product_along(total: Expr, p: Expr, g: Expr, axis: int, bare: Bare) -> bool:
    """total is sum(p * g) along `axis`, its length kept as 1 (a vector's: over everything, or
    lowered to one dot product `_vdot`)."""
    if not isinstance(total, Call):
        return False
    if len(p.shape) == 1 and total.fn == "_vdot":
        return {bare(a) for a in total.args} == {bare(p), bare(g)}
    if total.fn != "sum":
        return False
    pt = dict(total.params)
    if len(p.shape) == 1:
        ok = pt.get("axis") is None and not pt.get("keepdims")
    else:
        along = pt.get("axis")
        along = along - len(p.shape) if isinstance(along, int) and along >= 0 else along
        ok = along == axis and bool(pt.get("keepdims"))
    return ok and _product_of(total.args[0], p, g, bare)


SOFTMAX_BACKWARD_HELPER = '''def _softmax_backward(grad, p, dim):
    """p * (grad - sum(p * grad, dim, keepdims=True)) for p = softmax(x, dim): the vector-Jacobian
    product of softmax, in the kernel torch's own softmax backward runs (one pass per row)."""
    return torch.ops.aten._softmax_backward_data(grad, p, dim, p.dtype)'''

SOFTMAX = KernelRule(
    name="softmax",
    find=_find_softmax,
    forms={"_softmax": lambda args, node: f"torch.softmax({args[0]}, dim={node.param('axis')})"},
    helper="",
    claims=(
        "softmax(S, axis=-1) == exp(S - max(S, axis=-1, keepdims=True))"
        " / sum(exp(S - max(S, axis=-1, keepdims=True)), axis=-1, keepdims=True)",
    ),
    claim_vars={"S": "real[n, d]"},
    claim_defs={},
)

SOFTMAX_BACKWARD = KernelRule(
    name="softmax-backward",
    find=_find_softmax_backward,
    forms={
        "_softmax_backward": lambda args, node: (
            f"_softmax_backward({args[0]}, {args[1]}, {node.param('axis')})"
        )
    },
    helper=SOFTMAX_BACKWARD_HELPER,
    claims=("grad(sum(G * P), S) == P * (G - sum(P * G, axis=-1, keepdims=True))",),
    claim_vars={"S": "real[n, d]", "G": "real[n, d]"},
    claim_defs={"P": "softmax(S, axis=-1)"},
)

RULES: tuple[KernelRule, ...] = (LAYER_NORM_BACKWARD, SOFTMAX, SOFTMAX_BACKWARD)

# How the internal calls are written (PyTorch only: the rules run on its eager path).
FORMS: dict[str, Callable[[tuple[str, ...], Call], str]] = {
    "_item": lambda args, node: f"{args[0]}[{dict(node.params)['index']}]",
    **{fn: form for rule in RULES for fn, form in rule.forms.items()},
}
HELPERS: dict[str, str] = {
    fn: rule.helper for rule in RULES for fn in rule.forms if rule.helper
}  # the module function each call needs


def _rebuilt_args(e: Expr, rebuild: Callable[[Expr], Expr]) -> Expr:
    if not isinstance(e, Call):
        return e
    args = tuple(
        _rebuilt_args(a, rebuild) if isinstance(a, Call) and a.fn in FORMS else rebuild(a)
        for a in e.args
    )
    return e if args == e.args else Call(e.fn, args, e.params, e.shape)


def fuse(roots: list[Expr]) -> tuple[list[Expr], list[KernelRule]]:
    """The roots with every subprogram a rule recognizes replaced by its kernel call, and the
    rules that applied."""
    nodes: list[Expr] = []
    seen: set[Expr] = set()
    for root in roots:
        for n in root.walk():
            if n not in seen:
                seen.add(n)
                nodes.append(n)
    bare = Bare()
    subs: dict[Expr, Expr] = {}
    used: list[KernelRule] = []
    for rule in RULES:
        found = rule.find(nodes, bare)
        if found:
            subs.update(found)
            used.append(rule)
    if not subs:
        return roots, []
    memo: dict[Expr, Expr] = {}

    def rebuild(e: Expr) -> Expr:
        if e in memo:
            return memo[e]
        if e in subs:  # the kernel call, reading the rewritten tree too
            out = _rebuilt_args(subs[e], rebuild)
        elif isinstance(e, Ref):
            body = rebuild(e.body)
            out = e if body == e.body else Ref(e.name, body)
        elif isinstance(e, Call):
            args = tuple(rebuild(a) for a in e.args)
            out = e if args == e.args else Call(e.fn, args, e.params, e.shape)
        else:
            out = e
        memo[e] = out
        return out

    return [rebuild(r) for r in roots], used
