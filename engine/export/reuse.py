"""Buffer reuse for the PyTorch export: which operations may write into a dead temporary.

An eager PyTorch program allocates a fresh tensor for every operation; at LayerNorm's size
(512 x 1024) the allocations, not the arithmetic, made the exported backward 1.4 to 1.7 times
`torch.autograd`'s fused kernel (benchmarks/RESULTS.md). `X_centred / sigma`, when `X_centred`
is never read again, can be `X_centred.div_(sigma)`: the same values, computed by the same kernel,
written into memory the program already owns.

`plan(...)` decides, for each operation `a op b` (op one of + - * /), whether it may write into
an operand `t`. It may when all of these hold:

- `t` is a temporary the function made itself by an elementwise operation (never an argument,
  which may be the caller's memory, and never the result of a view such as `.T` or a reshape);
- `t` has the operation's full shape (the other operand broadcasts into it);
- no one reads `t` afterwards: every other reader is evaluated on an earlier line, or inside the
  other operand of this very operation (Python evaluates it before the call), and `t` is not
  returned; no reader of `t` may keep a view of it;
- for `-` and `/`, `t` is the left operand (`t.sub_(b)`, `t.div_(b)`); `+` and `*` commute.

The written program is used only when the call may write into its temporaries at all
(`REUSE_HELPER`): autograd, forward-mode AD and `torch.func` transforms record or wrap tensors
and forbid or misread such writes, and `torch.compile` fuses the program itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.expr import Call, Expr, Ref

# Operations written in place, with their PyTorch methods.
IN_PLACE = {"add": "add_", "sub": "sub_", "mul": "mul_", "div": "div_"}
COMMUTATIVE = {"add", "mul"}
# Reductions that read their argument once and return new memory: an argument `x * y` of the
# shape of some argument array is written into one scratch buffer (`torch.mul(x, y, out=b)`),
# which is free again as soon as the reduction returns.
REDUCTIONS = frozenset({"sum", "mean"})
# Operations whose PyTorch form returns a new tensor computed elementwise: their results are
# temporaries the function owns.
FRESH = frozenset({"add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "tanh", "erf"})
# Readers that keep no view of what they read (their result is new memory): a temporary read by
# anything else (`.T`, reshape, indexing, a helper) is never written into.
READERS = FRESH | {"pow", "sum", "mean", "_amax", "matmul", "vdot", "sigmoid"}

REUSE_HELPER = '''def _may_reuse(*arrays):
    """Whether this call may write into its own temporaries (`t.div_(s)` for `t / s`) and
    call PyTorch's fused kernels (engine.export.kernels).

    Not while torch.compile traces it (it fuses the program itself), nor when autograd records
    an argument (requires_grad), nor under forward-mode AD or a torch.func transform (vmap,
    grad, jvp), which forbid or misread in-place writes.
    """
    if torch.compiler.is_compiling():
        return False
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    if wrapped is None:
        return False
    for a in arrays:
        if a.requires_grad or wrapped(a) or fwAD.unpack_dual(a).tangent is not None:
            return False
    return True'''
REUSE_IMPORT = "import torch.autograd.forward_ad as fwAD"


def identity(e: Expr) -> Expr:
    """The tensor a node stands for: a definition (Ref) is its body's tensor."""
    while isinstance(e, Ref):
        e = e.body
    return e


def plan(
    order: list[Expr],
    lines: list[Expr],
    named: set[Expr],
    returned: Iterable[Expr],
    static: dict[Expr, bool],
) -> dict[Call, int]:
    """{operation: index of the operand it writes into}, for the operations that may.

    `order` is every node, children first; `lines[k]` the node defined on line k (a Ref or a
    call); `named` the nodes written as a name (defined on a line, or arguments); `returned`
    the nodes the function returns; `static` marks Python scalars.
    """
    # The line each node is evaluated on: its own line if it has one, else its inline parent's.
    line_of: dict[Expr, int] = {}
    for k, top in enumerate(lines):
        stack = [top.body if isinstance(top, Ref) else top]
        while stack:
            node = stack.pop()
            if node in line_of:
                continue
            line_of[node] = k
            stack.extend(c for c in node.children() if c not in named and isinstance(c, Call))

    readers: dict[Expr, list[Expr]] = {}  # tensor -> the nodes that read it (through Refs)
    for node in order:
        if isinstance(node, Ref):
            continue
        for c in node.children():
            readers.setdefault(identity(c), []).append(node)
    kept = {identity(r) for r in returned}

    def owned(t: Expr) -> bool:
        return (
            isinstance(t, Call)
            and t.fn in FRESH
            and not static.get(t, False)
            and t.shape != ()
            and t not in kept
            and all(isinstance(r, Call) and r.fn in READERS for r in readers.get(t, ()))
        )

    def inside(node: Expr, root: Expr) -> bool:
        stack = [root]
        while stack:
            e = stack.pop()
            if e is node or e == node:
                return True
            stack.extend(e.children())
        return False

    out: dict[Call, int] = {}
    for node in order:
        if not (isinstance(node, Call) and node.fn in IN_PLACE) or static.get(node, False):
            continue
        if node not in line_of:
            continue
        sides = (0, 1) if node.fn in COMMUTATIVE else (0,)
        for i in sides:
            t = identity(node.args[i])
            if not owned(t) or t.shape != node.shape:
                continue
            other = node.args[1 - i]
            here = line_of[node]
            if all(
                r is node
                or line_of.get(r, here) < here
                or (line_of.get(r) == here and inside(r, other))
                for r in readers[t]
            ):
                out[node] = i
                break
    return out
