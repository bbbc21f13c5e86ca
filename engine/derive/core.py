"""`derive`: an expression in, a short verified backward program out."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

from engine.derive.jacobian import cotangent_var, linearize
from engine.derive.names import Names
from engine.derive.program import Assignment, Program
from engine.derive.reverse import (
    DeriveError,
    canonical_forward,
    name_normalizations,
    normalization,
    reverse,
    roles_of,
)
from engine.derive.simplify import Rewriter, is_call, present
from engine.expr import Call, Const, EngineError, Expr, Ref, Var
from engine.parser import Environment, build_environment, parse_formula
from engine.printing.text import to_text
from engine.verify import Result

MAX_NAMES = 200  # repeated subexpressions named per program, at most
# The final pass names a subexpression written this often: with two copies a name adds a line
# and saves one copy (X @ w - r in least squares reads better written out in dw and dX).
MIN_COPIES = 3


class DerivationFailed(EngineError):
    """A derived program that the verifier rejected: it is never shown as a result."""

    def __init__(self, program: Program, results: Mapping[str, Result]):
        self.program = program
        self.results = dict(results)
        bad = [r for r in results.values() if not r.passed]
        super().__init__(
            "the derived gradient did not verify: " + (bad[0].report() if bad else "unknown")
        )


def derive(
    expr: str | Expr,
    wrt: str | Iterable[str] | None = None,
    vars: Mapping[str, str] | None = None,
    defs: Mapping[str, str] | None = None,
    *,
    env: Environment | None = None,
    verify: bool = True,
    seed: int = 0,
    sizes: Mapping[str, str] | None = None,
    order: int = 1,
) -> Program:
    """Differentiate `expr` with respect to the variables `wrt` into a verified `Program`.

    `expr` is formula text (or a parsed tree with `env`); a scalar gives gradients, a vector of
    a vector gives the Jacobian. `grad(f, x)` / `jacobian(f, x)` are accepted as `expr` too. The
    program is checked by the verifier (exact and numeric) and `DerivationFailed` is raised if
    it does not pass; `verify=False` skips the check (for benchmarks), and says so in the result.
    `order=2` gives the Hessian of a scalar `expr` (so does `hessian(f, x)` as `expr`).
    """
    if env is None:
        env = build_environment(vars or {}, defs or {}, sizes)
    tree = parse_formula(expr, env) if isinstance(expr, str) else expr
    if order not in (1, 2):
        raise DeriveError(f"derive gives first and second derivatives (order 1 or 2), not {order}")
    if is_call(tree, "hessian"):
        order = 2
    if is_call(tree, "grad", "jacobian", "hessian"):
        inner_wrt = tree.args[1].name
        if wrt is not None and _names(wrt) != [inner_wrt]:
            raise DeriveError(f"{tree.fn}() already names the variable {inner_wrt}; drop --wrt")
        wrt, tree = inner_wrt, tree.args[0]
    if wrt is None:
        raise DeriveError("say which variable(s) to differentiate with respect to (--wrt)")
    names = _names(wrt)
    if not names:
        raise DeriveError("say which variable(s) to differentiate with respect to (--wrt)")
    for n in names:
        if n not in env.vars:
            raise DeriveError(f"--wrt {n}: not a declared variable")
    if len(set(names)) != len(names):
        raise DeriveError("a variable is named twice in --wrt")
    for n in names:
        if env.vars[n].vtype == "index":  # integer labels (issue 8)
            raise DeriveError(
                f"--wrt {n}: an index variable (integer labels) is not differentiable"
            )
    program = build_program(tree, [env.vars[n] for n in names], env, order)
    if not verify:
        return program
    results = program.verify(seed=seed)
    program = program.with_results(results)
    if not all(r.passed for r in results.values()):
        raise DerivationFailed(program, results)
    return program


def _names(wrt: str | Iterable[str]) -> list[str]:
    if isinstance(wrt, str):
        return [w.strip() for w in wrt.split(",") if w.strip()]
    return [w.strip() for w in wrt]


def build_program(output: Expr, wrt: list[Var], env: Environment, order: int = 1) -> Program:
    """The unverified backward program of `output` with respect to `wrt` (`order=2`: Hessian)."""
    if order == 2:
        return _hessian_program(output, wrt, env)
    if output.shape == ():
        kind = "grad"
    elif len(output.shape) == 1 and len(wrt) == 1 and len(wrt[0].shape) == 1:
        kind = "jacobian"
    else:
        raise DeriveError(
            "derive needs a scalar expression (for gradients) or a vector function of one "
            "vector variable (for a Jacobian)"
        )
    from engine.expr import contains_derivative

    if contains_derivative(output):
        raise DeriveError(
            "cannot differentiate an expression that contains grad(), jacobian() or hessian()"
        )
    rewriter = Rewriter(env.defs)
    # The gradients' names first (dX, or grad_X when the user has a dX), so no step takes them.
    fixed = Names(env.names())
    for v in wrt:
        fixed.gradient(v.name, kind)
    taken = fixed.copy()
    steps: list[Assignment] = []

    def name_step(name: str, body: Expr) -> Ref:
        if body in rewriter.defs:  # the user's definition already names it
            return rewriter.defs[body]
        name = taken.fresh(name)
        steps.append(Assignment(name, body))
        return Ref(name, body)

    forward = canonical_forward(rewriter.name_defs(output))
    if kind == "grad":
        forward = name_normalizations(forward, name_step, rewriter)
    hints: dict[Expr, str] = {}
    if kind == "grad":
        grads = reverse(forward, wrt, Const(1), rewriter, name_step, roles_of(forward), hints)
    else:
        m = output.shape[0]
        u = cotangent_var(m)
        cot = reverse(forward, wrt, u, rewriter, None)[wrt[0].name]
        grads = {wrt[0].name: rewriter.simplify(linearize(cot, m).T)}
    gradients = [(v.name, grads[v.name]) for v in wrt]
    return _finish(output, env, steps, gradients, kind, taken, fixed, hints)


def _finish(output, env, steps, gradients, kind, taken, fixed, hints) -> Program:
    """Name repeated subexpressions, inline what is used once, number the temporaries.

    The presentation rules (simplify.present: ones(n, d) * v is outer(ones(n), v)) apply first.
    """
    steps = [Assignment(a.name, present(a.expr)) for a in steps]
    gradients = [(v, present(g)) for v, g in gradients]
    steps, gradients = _name_common(steps, gradients, taken, hints)
    steps, gradients = _inline_single_use(steps, gradients)
    # Inlining a step used once can give a rule new ground (LayerNorm through a named sigma: the
    # sigma leaves a sum only once its step is written out, and the sum becomes a mean): settle.
    rewriter = Rewriter(env.defs)
    steps = [Assignment(a.name, _settled(rewriter, a.expr)) for a in steps]
    gradients = [(v, _settled(rewriter, g)) for v, g in gradients]
    steps, gradients = _name_repeated(steps, gradients, taken)
    steps, gradients = _renumber(steps, gradients, fixed)
    return Program(output, env, tuple(steps), tuple(gradients), kind)


SETTLE_PASSES = 3


def _settled(rewriter: Rewriter, e: Expr) -> Expr:
    """`rewriter.simplify` repeated until nothing changes (at most SETTLE_PASSES passes)."""
    for _ in range(SETTLE_PASSES):
        again = rewriter.simplify(e)
        if again == e:
            break
        e = again
    return e


def _hessian_program(output: Expr, wrt: list[Var], env: Environment) -> Program:
    """The Hessian of a scalar `output`: the Jacobian of its derived gradient.

    The gradient g is derived and simplified as for `derive` (p - y for cross-entropy of
    softmax), its named steps written out, and g is differentiated again as a vector function
    of x (a scalar x: as a scalar function), so the Hessian reads in the gradient's own terms:
    diag(p) - outer(p, p), 2 * (X.T @ X).
    """
    if output.shape != ():
        raise DeriveError("a Hessian (--order 2) needs a scalar expression")
    if len(wrt) != 1:
        raise DeriveError("a Hessian (--order 2) is taken with respect to one variable (--wrt)")
    (x,) = wrt
    if len(x.shape) > 1:
        raise DeriveError(
            f"--order 2 derives Hessians with respect to a vector or scalar; {x.name} has rank "
            f"{len(x.shape)} (check hessian(f, {x.name}) as a claim instead)"
        )
    first = build_program(output, wrt, env)
    names = {a.name for a in first.steps}
    g = _inline_all(dict(first.gradients)[x.name], names)
    if not any(isinstance(n, Var) and n.name == x.name for n in _leaves(g)):
        raise DeriveError(f"the gradient does not depend on {x.name}: the Hessian is zero")
    rewriter = Rewriter(env.defs)
    fixed = Names(env.names())
    fixed.gradient(x.name, "hessian")
    taken = fixed.copy()
    forward = canonical_forward(rewriter.name_defs(g))
    if x.shape == ():
        h = reverse(forward, wrt, Const(1), rewriter, None)[x.name]
    else:
        m = g.shape[0]
        u = cotangent_var(m)
        cot = reverse(forward, wrt, u, rewriter, None)[x.name]
        h = rewriter.simplify(linearize(cot, m).T)
    # a softmax the Hessian writes more than once is named p (P for rows), as textbooks do
    hints = {n: _hint(n) for n in h.walk() if is_call(n, "softmax")}
    return _finish(output, env, [], [(x.name, h)], "hessian", taken, fixed, hints)


def _leaves(e: Expr) -> list[Expr]:
    """The variables and constants of `e`, looking through names."""
    out: list[Expr] = []
    for n in e.walk():
        if isinstance(n, Ref):
            out += _leaves(n.body)
        elif not isinstance(n, Call):
            out.append(n)
    return out


def _inline_all(e: Expr, names: set[str]) -> Expr:
    """`e` with every program step in `names` written out (the user's definitions stay)."""
    if isinstance(e, Ref):
        return _inline_all(e.body, names) if e.name in names else e
    if isinstance(e, Call) and e.args:
        args = tuple(_inline_all(a, names) for a in e.args)
        if args != e.args:
            return Call(e.fn, args, e.params, e.shape)
    return e


# ---------------------------------------------------------------- naming repeated subexpressions


def _occurrences(exprs: list[Expr]) -> Counter:
    """How often each Call subtree occurs (with multiplicity), not looking inside names."""
    counts: Counter = Counter()

    def visit(e: Expr) -> None:
        if isinstance(e, Call):
            counts[e] += 1
            for a in e.args:
                visit(a)

    for e in exprs:
        visit(e)
    return counts


def _calls(e: Expr) -> int:
    """Operations in `e`, not counting those behind a name."""
    if isinstance(e, Call):
        return 1 + sum(_calls(a) for a in e.args)
    return 0


def _worth_naming(e: Call) -> bool:
    """Big repeated subexpressions, and a softmax or normalization of a computed value."""
    calls = _calls(e)
    if e.fn in ("softmax", "log_softmax") or normalization(e) is not None:
        return calls >= 2
    return calls >= 4


def _hint(e: Call) -> str:
    if e.fn == "softmax":
        return "P" if len(e.shape) >= 2 else "p"
    if normalization(e) is not None:
        return "xhat"
    return "t"


def _name_common(steps, gradients, taken, hints: dict[Expr, str]):
    """Bind subexpressions that occur twice or more as named intermediates (largest first)."""
    for k in range(len(steps)):  # an existing step's body is written as its name elsewhere
        a = steps[k]
        steps = [
            b if j == k else Assignment(b.name, _replace(b.expr, a.expr, a.ref))
            for j, b in enumerate(steps)
        ]
        gradients = [(v, _replace(g, a.expr, a.ref)) for v, g in gradients]
        hints = {_replace(e, a.expr, a.ref): h for e, h in hints.items()}
    for _ in range(MAX_NAMES):
        exprs = [a.expr for a in steps] + [g for _, g in gradients]
        counts = _occurrences(exprs)
        repeated = [
            e
            for e, c in counts.items()
            if c >= 2
            and not is_call(e, "transpose")  # name P, and P.T reads as well as a name
            and (_worth_naming(e) or (e in hints and _calls(e) > 0))
        ]
        if not repeated:
            break
        target = _largest(repeated)
        hint = hints.get(target) or _hint(target)
        name = taken.fresh(hint) if hint != "t" else taken.numbered("t")
        ref = Ref(name, target)
        steps = [Assignment(a.name, _replace(a.expr, target, ref)) for a in steps]
        gradients = [(v, _replace(g, target, ref)) for v, g in gradients]
        steps.insert(0, Assignment(name, target))
    return _order(steps), gradients


def _largest(exprs: list[Expr]) -> Expr:
    """The largest expression; of equal ones, the first as text (head 1's P before head 2's)."""
    sizes = [sum(1 for _ in e.walk()) for e in exprs]
    top = max(sizes)
    return min((e for e, k in zip(exprs, sizes, strict=True) if k == top), key=to_text)


def _replace(e: Expr, target: Expr, ref: Ref) -> Expr:
    if e == target:
        return ref
    if isinstance(e, Call) and e.args:
        args = tuple(_replace(a, target, ref) for a in e.args)
        if args != e.args:
            return Call(e.fn, args, e.params, e.shape)
    return e


def _step_refs(e: Expr, names: set[str]) -> set[str]:
    found: set[str] = set()

    def visit(n: Expr) -> None:
        if isinstance(n, Ref):
            if n.name in names:
                found.add(n.name)
            return  # a step's own body is listed separately
        for c in n.children():
            visit(c)

    visit(e)
    return found


def _reading_order(a: Assignment) -> tuple[bool, str, int]:
    """Forward values before cotangents (dX); then P before P2 before P10."""
    m = re.fullmatch(r"(.*?)(\d*)", a.name)
    return a.name.startswith("d") and len(a.name) > 1, m.group(1), int(m.group(2) or 0)


def _order(steps: list[Assignment]) -> list[Assignment]:
    """Topological order: every step after the steps it uses; forward values first."""
    names = {a.name for a in steps}
    deps = {a.name: _step_refs(a.expr, names) for a in steps}
    done: list[Assignment] = []
    placed: set[str] = set()
    pending = sorted(steps, key=_reading_order)
    while pending:
        for a in pending:
            if deps[a.name] <= placed:
                done.append(a)
                placed.add(a.name)
                pending.remove(a)
                break
        else:
            raise DeriveError("internal error: circular intermediates")
    return done


def _inline_single_use(steps, gradients, only: set[str] | None = None):
    """A step used once (or never) reads better inline; keep the rest (and any not in `only`)."""
    while True:
        names = {a.name for a in steps}
        uses: Counter = Counter()
        for e in [a.expr for a in steps] + [g for _, g in gradients]:
            for n in _ref_occurrences(e, names):
                uses[n] += 1
        single = [a for a in steps if uses[a.name] < 2 and (only is None or a.name in only)]
        if not single:
            return steps, gradients
        a = single[0]
        steps = [Assignment(b.name, _inline(b.expr, a.name, a.expr)) for b in steps if b is not a]
        gradients = [(v, _inline(g, a.name, a.expr)) for v, g in gradients]


def _renumber(steps, gradients, fixed: Names):
    """t3, t1, t2 in program order become t1, t2, t3 (unless another name holds one of them).

    `fixed` holds the names that are not steps: variables, definitions, sizes and gradients.
    """
    temps = [a.name for a in steps if re.fullmatch(r"t\d+", a.name)]
    wanted = [f"t{k}" for k in range(1, len(temps) + 1)]
    if temps == wanted:
        return steps, gradients
    others = fixed.copy()
    others.update(a.name for a in steps if a.name not in temps)
    if not all(others.free(w) for w in wanted):
        return steps, gradients
    return _rename(steps, gradients, dict(zip(temps, wanted, strict=True)))


# ---------------------------------------------------------------- the final naming pass


def _trivial(e: Expr) -> bool:
    """Reads as well as a name: a leaf, a constant like sqrt(2), or a function of one name.

    A function of one name is a call whose arguments are all leaves, exactly one of them a
    variable or a named step: softmax(z), sigmoid(s), W.T, -y, x ** 2, 2 * x. X @ W1 (two
    names) and sigmoid(X @ w) (a computed argument) are not trivial.
    """
    if not isinstance(e, Call):
        return True
    names = [n for n in _unnamed_nodes(e) if isinstance(n, Var | Ref)]
    if not names:
        return True
    return len(names) == 1 and not any(isinstance(a, Call) for a in e.args)


def _unnamed_nodes(e: Expr) -> list[Expr]:
    """The nodes of `e` as written: a name is one node, its body is not entered."""
    out: list[Expr] = [e]
    if isinstance(e, Call):
        for a in e.args:
            out += _unnamed_nodes(a)
    return out


def _name_repeated(steps, gradients, taken: Names):
    """Name every non-trivial subexpression written `MIN_COPIES` times as the next free `t<k>`.

    Runs on the finished program, so the names it already has (P, dS, xhat, ...) are kept;
    the largest repeated subexpression is bound first, and a new name that ends up used only
    once (inside a larger new name) is written out again. `_renumber` then numbers all the
    temporaries t1, t2, ... in program order, so an inner one comes first.
    """
    new: list[str] = []
    for _ in range(MAX_NAMES):
        counts = _occurrences([a.expr for a in steps] + [g for _, g in gradients])
        repeated = [e for e, c in counts.items() if c >= MIN_COPIES and not _trivial(e)]
        if not repeated:
            break
        target = max(repeated, key=lambda e: len(_unnamed_nodes(e)))
        name = f"__t{len(new)}"  # placeholder, numbered below; no user name starts with __
        new.append(name)
        ref = Ref(name, target)
        steps = [Assignment(a.name, _replace(a.expr, target, ref)) for a in steps]
        gradients = [(v, _replace(g, target, ref)) for v, g in gradients]
        steps.insert(0, Assignment(name, target))
    if not new:
        return steps, gradients
    steps, gradients = _inline_single_use(steps, gradients, set(new))
    steps = _order(steps)
    mapping = {a.name: taken.numbered("t") for a in steps if a.name in new}
    return _rename(steps, gradients, mapping)


def _rename(steps, gradients, mapping: dict[str, str]):
    """Steps renamed by `mapping`, every reference to them rewritten (steps in program order)."""
    memo: dict[str, Ref] = {}

    def rename(e: Expr) -> Expr:
        if isinstance(e, Ref):
            return memo.get(e.name, e)
        if isinstance(e, Call) and e.args:
            args = tuple(rename(a) for a in e.args)
            if args != e.args:
                return Call(e.fn, args, e.params, e.shape)
        return e

    out = []
    for a in steps:
        body = rename(a.expr)
        name = mapping.get(a.name, a.name)
        memo[a.name] = Ref(name, body)
        out.append(Assignment(name, body))
    return out, [(v, rename(g)) for v, g in gradients]


def _ref_occurrences(e: Expr, names: set[str]) -> list[str]:
    out: list[str] = []

    def visit(n: Expr) -> None:
        if isinstance(n, Ref):
            if n.name in names:
                out.append(n.name)
            return
        for c in n.children():
            visit(c)

    visit(e)
    return out


def _inline(e: Expr, name: str, body: Expr) -> Expr:
    if isinstance(e, Ref):
        return body if e.name == name else e
    if isinstance(e, Call) and e.args:
        args = tuple(_inline(a, name, body) for a in e.args)
        if args != e.args:
            return Call(e.fn, args, e.params, e.shape)
    return e


__all__ = ["DerivationFailed", "DeriveError", "build_program", "derive"]
