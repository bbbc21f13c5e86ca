"""Exports that plug into a framework's autodiff: a torch.autograd.Function, a jax.custom_vjp.

The forward computes the function's value and keeps what the derived backward program needs;
the backward is the derived program. Two shapes of program qualify:

- a linear functional `sum(O * f(x, ...))` with O a variable not differentiated (the upstream
  gradient, as in the attention and LayerNorm programs): the wrapper computes f, and its
  backward is the program with O set to the incoming cotangent, which is exactly the
  vector-Jacobian product of f;
- a scalar loss L(x, ...): the wrapper computes L, and its backward multiplies the derived
  gradients by the incoming scalar cotangent.

The program's lines are split by what they need: the lines the forward value needs run in the
forward; every other line runs in the backward; the forward's arrays that the backward reads
are saved (with the inputs), and size-only Python numbers such as sqrt(d) are recomputed.
"""

from __future__ import annotations

import ast

from engine.derive.program import Program
from engine.export.emitter import Emitter, ExportError, _doc_safe, _fill
from engine.export.layout import lay_out
from engine.export.lower import strip_refs
from engine.export.size_plan import SizePlan, plan_sizes, sizes_paragraph
from engine.export.target import Target
from engine.expr import Call, Expr, Ref, Var
from engine.functions.base import params_of
from engine.printing.text import to_text

# --as value -> the target it needs.
WRAPPERS: dict[str, str] = {"autograd-function": "torch", "custom-vjp": "jax"}


def cotangent_of(program: Program) -> tuple[str | None, Expr]:
    """(O, f) when the output is sum(O * f) with O an undifferentiated variable; (None, output)
    for any other scalar output. ExportError for a Jacobian program."""
    if program.kind != "grad":
        raise ExportError(
            "only a gradient program can be wrapped: for a Jacobian, derive the gradient of "
            "sum(O * f) with O as the upstream gradient instead"
        )
    wrt = {v for v, _ in program.gradients}
    out = strip_refs(program.output)
    if isinstance(out, Call) and out.fn == "sum" and not any(params_of(out).values()):
        inner = strip_refs(out.args[0])
        if isinstance(inner, Call) and inner.fn == "mul":
            for o, f in (inner.args, inner.args[::-1]):
                o = strip_refs(o)
                if (
                    isinstance(o, Var)
                    and o.name not in wrt
                    and o.shape == f.shape
                    and o.shape
                    and o not in set(f.walk())
                ):
                    return o.name, f
    return None, program.output


def _tuple(items: list[str]) -> str:
    return ", ".join(items) + ("," if len(items) == 1 else "")


def _names(text: str) -> set[str]:
    return {n.id for n in ast.walk(ast.parse(text, mode="eval")) if isinstance(n, ast.Name)}


class Split:
    """A program's lines divided between a forward and a backward function."""

    def __init__(self, em: Emitter, value: str, grads: list[tuple[str, str]]):
        entries = em.entries
        defined = {name for name, *_ in entries}
        refs = [_names(text) for _, text, _, _ in entries]
        need = _names(value)
        forward: list[int] = []
        for i in reversed(range(len(entries))):
            if entries[i][0] in need:
                forward.append(i)
                need |= refs[i]
        forward.reverse()
        in_forward = {entries[i][0] for i in forward}
        # The backward recomputes Python numbers (static lines) rather than saving them.
        carried = {entries[i][0] for i in forward if not entries[i][3]}
        need = set().union(*(_names(t) for _, t in grads)) if grads else set()
        backward: list[int] = []
        for i in reversed(range(len(entries))):
            name = entries[i][0]
            if name in need and name not in carried:
                backward.append(i)
                need |= refs[i]
        backward.reverse()
        self.forward = [entries[i] for i in forward]
        self.backward = [entries[i] for i in backward]
        self.saved = [n for n in (e[0] for e in entries) if n in need and n in carried]
        self.forward_names = set().union(_names(value), *(refs[i] for i in forward))
        self.backward_names = need | set().union(*(refs[i] for i in backward))
        assert in_forward <= defined


def wrapper_module(
    program: Program, target: Target, style: str, name: str, verified_summary: str | None
) -> str:
    """Source of a module whose `name` is a differentiable function of the program's inputs."""
    if WRAPPERS[style] != target.name:
        raise ExportError(
            f"--as {style} is for --target {WRAPPERS[style]}, not --target {target.name}"
        )
    cot, root = cotangent_of(program)
    env = program.env
    em = Emitter(program, target, with_value=True, value_root=root)
    inputs = [v for v in env.vars if v != cot]
    taken = {em.arg[v] for v in env.vars}
    cls = "".join(part[:1].upper() + part[1:] for part in name.split("_")) or "F"
    own = {name, cls, f"_{name}", f"_{name}_fwd", f"_{name}_bwd", "saved", "grad_output"}
    if own & taken:
        raise ExportError(
            f"the names {sorted(own & taken)} are taken by variables: choose another --name"
        )
    em.namer.taken |= own
    lines, grads, value = em.emit()
    assert value is not None
    split = Split(em, value, grads)
    wrt = [v for v, _ in program.gradients]
    gname = dict(grads)
    args = ", ".join(em.arg[v] for v in inputs)
    sizes_all = set(em.sizes_used)
    inv_size = {py: s for s, py in em.size.items()}

    # Sizes no input's axis gives (h in d = h * dh): keyword-only arguments of the function,
    # passed on to the forward and (as ctx attributes or non-differentiable args) the backward.
    em.fn_name = name
    first = {
        str(d): f"{em.arg[v]}.shape[{i}]"
        for v in reversed(inputs)
        for i, d in reversed(list(enumerate(env.vars[v].shape)))
        if d.is_Symbol
    }
    order = list(env.sizes)
    need_all = sorted(sizes_all, key=order.index)
    params = plan_sizes(name, env, inputs, em.arg, em.size, need_all, first, set()).params
    keys = [em.size[p] for p in params]

    def sizes_for(names: set[str], checks: bool = False) -> list[str]:
        em.sizes_used = {inv_size[n] for n in names if n in inv_size} & sizes_all
        return em.size_reads(inputs, tuple(params), checks)

    def body(entries) -> list[str]:
        return [f"{n} = {t}" for n, t, _, _ in entries]

    cot_name = em.arg[cot] if cot is not None else "grad_output"

    def gradient(v: str) -> str:
        text = gname[v]
        if cot is not None:
            return text
        return f"{cot_name} * {text if text.isidentifier() else f'({text})'}"

    out_text = to_text(program.output)
    value_text = to_text(root)
    if cot is None:
        what = (
            f"the loss {out_text}; its backward multiplies the derived gradients with respect "
            f"to {', '.join(wrt)} by the incoming scalar gradient"
        )
    else:
        what = (
            f"{value_text}; its backward is the derived gradient of {out_text} with respect to "
            f"{', '.join(wrt)}, with {cot} the incoming gradient of {value_text}"
        )
    not_derived = [v for v in inputs if v not in wrt]
    header = [
        f"Generated by llm-math-notes ({target.title}, --as {style}): {what}.",
        "",
        "It computes in the floating dtype of its array arguments (or the one given as dtype=) "
        "and raises ValueError on arguments of other shapes than declared (it is not batched; "
        "map it with jax.vmap / torch.func.vmap).",
    ]
    if verified_summary:
        header += ["", f"Verified by llm-math-notes: {_doc_safe(verified_summary)}"]
    else:
        header += ["", "Not verified at export time: check it with `llm-math verify`."]
    if not_derived:
        if style == "custom-vjp":
            note = "its cotangent is NaN, so differentiating through it is never silently zero"
        else:
            note = "differentiating with respect to it raises ValueError"
        header += ["", f"Not differentiated: {', '.join(not_derived)} ({note})."]
    defs = [
        f"{r.name} = {to_text(r.body)}"
        for r in em.postorder([program.output])
        if isinstance(r, Ref)
    ]
    doc = [f"{value_text}, differentiable with respect to {', '.join(wrt)}."]
    if defs:
        doc += ["", "where " + "; ".join(defs) + "."]
    em.sizes_used = set(params)
    preamble = em.preamble(name, inputs)  # before the header: it decides the helpers
    if em.size_plan.params != params:
        raise ExportError(f"cannot decide which sizes {name} takes as keywords")
    if params:
        solved = SizePlan(params=params, checks=1)
        header += ["", sizes_paragraph(solved, em.size)]
        doc += ["", sizes_paragraph(solved, em.size)]
    src = em.header_lines(header)
    ambiguous = "  # noqa: E741" if {"l", "O", "I"} & {em.arg[v] for v in env.vars} else ""
    kw = "".join(f"{k}: int, " for k in keys)
    outer = ["", "", f"def {name}({args}, *, {kw}dtype=None):{ambiguous}"]
    outer.append('    """' + _fill(doc, 4) + '\n    """')
    outer += ["    " + line for line in preamble]
    em.sizes_used = sizes_all

    saved = [em.arg[v] for v in inputs] + split.saved
    fwd_sizes = sizes_for(split.forward_names, checks=True)
    call_args = ", ".join([args, *keys])  # the sizes given as keywords, positional inside
    bwd_sizes = sizes_for(split.backward_names)
    like = em.arg[inputs[0]]
    if style == "autograd-function":
        checks: list[str] = []
        for v in not_derived:
            checks += [
                f"if ctx.needs_input_grad[{inputs.index(v)}]:",
                "    raise ValueError(",
                f'        "{name}: the gradient with respect to {v} was not derived; '
                f'derive it with --wrt {v}"',
                "    )",
            ]
        fwd_body = list(fwd_sizes)
        fwd_body += [f"{k} = {like}.{k}" for k in ("dtype", "device") if k in split.forward_names]
        fwd_body += body(split.forward)
        # The value itself is never marked non-differentiable: when the backward reads it, it
        # is saved as output[0].
        extras = [n for n in split.saved if n != value]
        keeps_value = value in split.saved
        fwd_body += [f"return {_tuple([value, *extras])}"]
        ctx_body = [f"{_tuple([em.arg[v] for v in inputs] + keys)} = inputs", *checks]
        ctx_body += [f"ctx.{k} = {k}" for k in keys]
        if extras:
            ctx_body += ["ctx.mark_non_differentiable(*output[1:])"]
        tail = ", output[0]" if keeps_value else ""
        arrays = f"inputs[:{len(inputs)}]" if keys else "inputs"
        ctx_body += [f"ctx.save_for_backward(*{arrays}, *output[1:]{tail})"]
        restored = [em.arg[v] for v in inputs] + extras + ([value] if keeps_value else [])
        bwd_body = [f"{_tuple(restored)} = ctx.saved_tensors"]
        bwd_body += [f"{k} = ctx.{k}" for k in keys] + bwd_sizes
        bwd_body += [
            f"{k} = {cot_name}.{k}" for k in ("dtype", "device") if k in split.backward_names
        ]
        bwd_body += body(split.backward)
        outs = [gradient(v) if v in wrt else "None" for v in inputs] + ["None" for _ in keys]
        bwd_body += [f"return {_tuple(outs)}"]
        cls_doc = [
            f"{value_text} as a torch.autograd.Function: the derived program is its backward.",
            "",
            "forward returns the value, then the arrays the backward reads (saved in "
            "setup_context, not differentiable); generate_vmap_rule makes torch.func.vmap work.",
        ]
        src += outer + [f"    return {cls}.apply({call_args})[0]"]
        src += ["", "", f"class {cls}(torch.autograd.Function):"]
        src += ['    """' + _fill(cls_doc, 4) + '\n    """', "", "    generate_vmap_rule = True"]
        src += ["", "    @staticmethod", f"    def forward({call_args}):{ambiguous}"]
        src += ["        " + line for line in fwd_body]
        src += ["", "    @staticmethod", "    def setup_context(ctx, inputs, output):"]
        src += ["        " + line for line in ctx_body]
        src += ["", "    @staticmethod", f"    def backward(ctx, {cot_name}, *_):{ambiguous}"]
        src += ["        " + line for line in bwd_body]
    else:
        fwd_body = list(fwd_sizes)
        if "dtype" in split.forward_names:
            fwd_body += [f"dtype = {like}.dtype"]
        fwd_body += body(split.forward)
        fwd_body += [f"return {value}, ({_tuple(saved)})"]
        bwd_body = [f"{_tuple(saved)} = saved"] + bwd_sizes
        if "dtype" in split.backward_names:
            bwd_body += [f"dtype = {cot_name}.dtype"]
        bwd_body += body(split.backward)
        outs = [gradient(v) if v in wrt else f"jnp.full_like({em.arg[v]}, jnp.nan)" for v in inputs]
        bwd_body += [f"return ({_tuple(outs)})"]
        src += outer + [f"    return _{name}({call_args})"]
        if keys:  # the sizes are static, non-differentiable arguments (first in the backward)
            nondiff = _tuple([str(len(inputs) + i) for i in range(len(keys))])
            src += ["", ""]
        else:
            src += ["", "", "@jax.custom_vjp"]
        src += [f"def _{name}({call_args}):{ambiguous}"]
        src += [f"    return _{name}_fwd({call_args})[0]"]
        if keys:
            src += ["", "", f"_{name} = jax.custom_vjp(_{name}, nondiff_argnums=({nondiff}))"]
        src += ["", "", f"def _{name}_fwd({call_args}):{ambiguous}"]
        src += ["    " + line for line in fwd_body]
        bwd_args = ", ".join([*keys, "saved", cot_name])
        src += ["", "", f"def _{name}_bwd({bwd_args}):{ambiguous}"]
        src += ["    " + line for line in bwd_body]
        src += ["", "", f"_{name}.defvjp(_{name}_fwd, _{name}_bwd)"]
    return lay_out("\n".join(src)) + "\n"


__all__ = ["WRAPPERS", "cotangent_of", "wrapper_module"]
