"""The common emitter: a derived program as the source of one Python function, for any target.

Walks our own expression tree (never SymPy's printers): lowers it to stable forms, merges equal
subtrees (structural hashing), names every definition and program step once, names any other
subtree used twice, and writes each remaining node inline with the target's code form.
"""

from __future__ import annotations

import builtins
import keyword
import textwrap
from collections import Counter

import sympy

from engine.derive.program import Program
from engine.export import kernels, reuse
from engine.export.forms import (
    COLUMNS,
    FORMS,
    HELPERS,
    LOWERED,
    MATH,
    NOT_EXPORTABLE,
    P_ATOM,
    P_MUL,
    P_NEG,
    P_POW,
    Custom,
    Op,
    Postfix,
    Template,
)
from engine.export.labels import CHECK_LABELS, JIT_NOTE, label_checks, label_sizes
from engine.export.layout import WIDTH, lay_out
from engine.export.lower import Lowering, share_definitions
from engine.export.size_plan import SIZE_ARG, SizePlan, plan_sizes, sizes_paragraph
from engine.export.target import Target
from engine.expr import Call, Const, EngineError, Expr, Ref, Size, Var, size_symbol
from engine.printing.text import to_text

LINE_LIMIT = 72  # longest inline expression before a part of it gets its own line
RESERVED = (
    set(keyword.kwlist)
    | set(dir(builtins))
    | {"np", "jnp", "jax", "torch", "math", "erf"}
    | {"dtype", "device", "ctx", "_float_dtype", "_float_type", "_check_shapes", "_sizes"}
    | {"_size_arg"}  # sizes given as keyword arguments (engine.export.size_plan)
    | {"_may_reuse", "fwAD"}  # the torch eager path's guard (engine.export.reuse)
    | {"_check_labels"}  # integer labels' bounds (engine.export.labels)
    | {"inputs", "output", "saved", "grad_output"}  # the wrappers' parameters
    | set(HELPERS)
    | set(kernels.HELPERS)
)

CHECK_SHAPES = '''def _check_shapes(fn, declared, *arrays):
    """The sizes, read off the arguments' shapes; ValueError unless every shape is as declared.

    The function is derived for one example of the declared shapes: an extra (batch) axis is an
    error, never a silent broadcast. Map it over a batch with jax.vmap or torch.func.vmap.
    """
    sizes = {}
    for (name, dims), a in zip(declared.items(), arrays, strict=True):
        shape = tuple(a.shape)
        problem = None
        if len(shape) != len(dims):
            problem = f"rank {len(shape)}, declared rank {len(dims)}"
        for dim, length in zip(dims, shape, strict=False):
            want = dim if isinstance(dim, int) else sizes.setdefault(dim, length)
            if problem is None and length != want:
                problem = f"an axis of length {length} where {dim} = {want}"
        if problem is not None:
            raise ValueError(
                f"{fn}: argument {name} has shape {shape} ({problem}), declared "
                f"[{', '.join(map(str, dims))}]; the function is not batched: call it per "
                "example, or map it over a batch with jax.vmap / torch.func.vmap"
            )
    return sizes'''

Code = tuple[str, int]  # source text and its Python precedence


class ExportError(EngineError):
    """A program that cannot be written as code for the chosen target."""


class Namer:
    """Hands out distinct Python names, keeping the program's own names where it can."""

    def __init__(self, reserved: set[str]):
        self.taken = set(reserved)

    def claim(self, wanted: str) -> str:
        """`wanted` itself if free, else `wanted_1`, `wanted_2`, ..."""
        if wanted not in self.taken and wanted.isidentifier():
            self.taken.add(wanted)
            return wanted
        return self.fresh(wanted + "_")

    def fresh(self, stem: str) -> str:
        """`stem` itself if free (except the bare temporary `t`), else `stem1`, `stem2`, ..."""
        if stem != "t" and stem not in self.taken:
            self.taken.add(stem)
            return stem
        k = 1
        while f"{stem}{k}" in self.taken:
            k += 1
        self.taken.add(f"{stem}{k}")
        return f"{stem}{k}"


def const_code(value: sympy.Expr) -> Code:
    if value == sympy.pi:
        return "math.pi", P_ATOM
    if value in (sympy.oo, -sympy.oo):  # IEEE infinity (where(mask, S, -inf))
        return ("math.inf", P_ATOM) if value == sympy.oo else ("-math.inf", P_NEG)
    if value.is_Integer:
        return str(int(value)), (P_NEG if value < 0 else P_ATOM)
    if value.is_Rational:
        p, q = int(value.p), int(value.q)
        f = float(value)
        if abs(p) < 10**15 and abs(q) < 10**15 and float(repr(f)) == f and p / q == f:
            # A finite decimal such as 0.5 or 0.044715 prints as itself; 1/3 as a quotient.
            text = repr(f)
            if sympy.Rational(text) == value:
                return text, (P_NEG if f < 0 else P_ATOM)
        return f"{p} / {q}", P_MUL
    f = float(value)
    return repr(f), (P_NEG if f < 0 else P_ATOM)


def _wrap(code: Code, need: int) -> str:
    text, prec = code
    return f"({text})" if prec < need else text


class Emitter:
    """Writes one program as one function for one target."""

    def __init__(
        self,
        program: Program,
        target: Target,
        with_value: bool,
        value_root: Expr | None = None,
        fused: bool = False,
    ):
        self.program = program
        # fused: the PyTorch eager path, where engine.export.kernels replaces what it recognizes
        self.fused = fused
        self.kernel_rules: list[kernels.KernelRule] = []  # the rules that applied
        self.target = target
        self.with_value = with_value
        self.value_root = program.output if value_root is None else value_root
        self.imports: set[str] = set(target.imports)
        self.helpers: list[str] = []
        self.lines: list[str] = []
        # (name, text, node, static) of every line, in order: the wrappers split them.
        self.entries: list[tuple[str, str, Expr, bool]] = []
        env = program.env
        self.namer = Namer(RESERVED)
        self.arg = {v: self.namer.claim(v) for v in env.vars}
        self.size = {s: self.namer.claim(s) for s in env.sizes}
        self.sizes_used: set[str] = set()
        self.checks_labels = False
        self.what = {"jacobian": "Jacobian", "hessian": "Hessian"}.get(program.kind, "gradients")
        self.vars_used: set[str] = set()
        self.size_plan = SizePlan()  # set by preamble: sizes taken as keywords or solved
        self.fn_name = "value_and_grad"  # the exported function's name, for error messages
        self.reuses = False  # the function writes into dead temporaries (engine.export.reuse)
        self.kernel_helpers: list[str] = []  # sources of engine.export.kernels' helpers

    # ------------------------------------------------------------ the walk

    def roots(self) -> list[tuple[str | None, Expr]]:
        """(variable, gradient) pairs, after (None, value) when the value is returned."""
        lower = Lowering()
        out: list[tuple[str | None, Expr]] = []
        if self.with_value:
            out.append((None, lower(self.value_root)))
        for var, g in self.program.gradients:
            if var not in self.program.env.vars:
                raise ExportError(f"gradient for {var!r}, which is not a declared variable")
            x = self.program.env.vars[var]
            g = lower(g)
            if (
                self.program.kind == "grad" and g.shape != x.shape
            ):  # e.g. a constant 0: give it the variable's shape
                zeros = Call("_zeros_like", (x,), (), x.shape)
                g = zeros if isinstance(g, Const) and g.value == 0 else zeros + g
            out.append((var, g))
        shared = share_definitions([r for _, r in out])
        if self.fused:
            shared, self.kernel_rules = kernels.fuse(shared)
        return [(v, r) for (v, _), r in zip(out, shared, strict=True)]

    @staticmethod
    def postorder(roots: list[Expr]) -> list[Expr]:
        """Every distinct subtree once (structural equality), children first, roots in order."""
        order: list[Expr] = []
        seen: set[Expr] = set()
        for root in roots:
            stack: list[tuple[Expr, bool]] = [(root, False)]
            while stack:
                node, expanded = stack.pop()
                if node in seen:
                    continue
                if expanded:
                    seen.add(node)
                    order.append(node)
                else:
                    stack.append((node, True))
                    stack.extend((c, False) for c in reversed(node.children()) if c not in seen)
        return order

    def check(self, order: list[Expr]) -> None:
        for node in order:
            if not isinstance(node, Call):
                continue
            if node.fn in NOT_EXPORTABLE:
                raise ExportError(f"{node.fn}(): {NOT_EXPORTABLE[node.fn]}")
            if self.fused and node.fn in kernels.FORMS:
                continue
            if self.target.column not in FORMS.get(node.fn, {}):
                raise ExportError(f"{node.fn}() has no {self.target.title} form")

    # ------------------------------------------------------------ emission

    def emit(self) -> tuple[list[str], list[tuple[str, str]], str | None]:
        """Statements, the (variable, gradient name) pairs and the value's name."""
        roots = self.roots()
        order = self.postorder([r for _, r in roots])
        self.check(order)
        uses: Counter[Expr] = Counter()
        for node in order:
            for c in node.children():
                uses[c] += 1
        static: dict[Expr, bool] = {}
        # Names decided up front: each definition or step once, then the results.
        named: dict[Expr, str] = {}
        ref_names: dict[Expr, str] = {}
        by_name: dict[str, Expr] = {}
        for node in order:
            if isinstance(node, Ref):
                same = by_name.get(node.name)
                name = node.name if same == node else None
                if name is None:
                    name = self.namer.claim(node.name)
                    by_name.setdefault(node.name, node)
                ref_names[node] = name
                if isinstance(node.body, Call) and node.body not in named:
                    named[node.body] = name
        # A variable may be called `value` or `dX`: the names are claimed, never assumed.
        gradient_names = self.program.gradient_names()
        for var, root in roots:
            if isinstance(root, Call) and root not in named:
                named[root] = self.namer.claim("value" if var is None else gradient_names[var])
        code: dict[Expr, Code] = {}
        for node in order:
            if isinstance(node, Var):
                self.vars_used.add(node.name)
                code[node] = (self.arg[node.name], P_ATOM)
                static[node] = False
            elif isinstance(node, Size):
                self.sizes_used.add(node.name)
                code[node] = (self.size[node.name], P_ATOM)
                static[node] = True
            elif isinstance(node, Const):
                if node.value == sympy.pi or node.value.is_infinite:
                    self.imports.add(MATH)
                code[node] = const_code(node.value)
                static[node] = True
            elif isinstance(node, Ref):
                name = ref_names[node]
                static[node] = static[node.body]
                if named.get(node.body) != name:
                    self.define(name, code[node.body][0], node, static[node])
                code[node] = (name, P_ATOM)
            else:
                assert isinstance(node, Call)
                # forms.python_number, computed bottom-up
                static[node] = (
                    node.shape == ()
                    and all(static[c] for c in node.args)
                    and "scalar" in FORMS.get(node.fn, {})
                )
                text = self.render(node, code, static)
                if node in named:
                    self.define(named[node], text[0], node, static[node])
                    code[node] = (named[node], P_ATOM)
                elif uses[node] >= 2 and not self.cheap(node):
                    name = self.namer.fresh(self.hint(node, code))
                    self.define(name, text[0], node, static[node])
                    code[node] = (name, P_ATOM)
                else:
                    code[node] = text
        self.walked = (order, code, static, [r for _, r in roots])
        grads = []
        value = None
        for var, root in roots:
            text = code[root][0]
            if var is None:
                value = text
            else:
                grads.append((var, text))
        return self.lines, grads, value

    def reusing_lines(self) -> tuple[list[str | None], dict[str, str]] | None:
        """Each line written to reuse memory (engine.export.reuse), None where it is the same,
        and the scratch buffers it writes into ({buffer: the argument it is shaped like}); None
        when no line changes or the target has no in-place operations."""
        if self.target.name != "torch" or not self.entries:
            return None
        order, code, static, returned = self.walked
        tops = [node for _, _, node, _ in self.entries]
        named = {n for n in order if not isinstance(n, Call) or code[n][0].isidentifier()}
        named |= set(tops)
        writes = reuse.plan(order, tops, named, returned, static)
        env = self.program.env
        shaped = {}  # a shape -> the first argument of that shape: scratch is made like it
        for v, x in env.vars.items():
            if x.shape and x.vtype != "index":
                shaped.setdefault(x.shape, v)
        scratch: dict[str, str] = {}  # argument -> the buffer shaped like it

        def buffer(shape) -> str:
            arg = shaped[shape]
            if arg not in scratch:
                scratch[arg] = self.namer.fresh(f"scratch_{self.arg[arg]}")
            return scratch[arg]

        def text(node: Expr, top: bool = False) -> Code:
            if not isinstance(node, Call) or (node in named and not top):
                return code[node]
            args = {a: text(a) for a in node.args}
            if node in writes:
                i = writes[node]
                into = _wrap(args[node.args[i]], P_ATOM)
                return f"{into}.{reuse.IN_PLACE[node.fn]}({args[node.args[1 - i]][0]})", P_ATOM
            if node.fn in reuse.REDUCTIONS and node.args:
                a = node.args[0]  # `sum(x * y)`: the product into scratch, read once, here
                if (
                    isinstance(a, Call)
                    and a.fn in reuse.IN_PLACE
                    and a not in named
                    and a not in writes
                    and not static[a]
                    and a.shape in shaped
                ):
                    x, y = (text(c)[0] for c in a.args)
                    out = f"torch.{a.fn}({x}, {y}, out={buffer(a.shape)})"
                    args[a] = (out, P_ATOM)
            column = "scalar" if static[node] else self.target.column
            return self._render(node, column, args)

        out: list[str | None] = []
        for _, plain, node, _ in self.entries:
            body = node.body if isinstance(node, Ref) else node
            written = text(body, top=True)[0] if isinstance(body, Call) else plain
            out.append(None if written == plain else written)
        return (out, {b: a for a, b in scratch.items()}) if any(out) else None

    def eager_path(self) -> tuple[list[str], set[str]] | None:
        """The PyTorch eager path's lines, through its return, when a fused kernel applies
        (engine.export.kernels), and the sizes they read; None otherwise."""
        if self.target.name != "torch" or self.fused:
            return None
        fast = Emitter(self.program, self.target, self.with_value, self.value_root, fused=True)
        fast_lines, grads, fast_value = fast.emit()
        if not fast.kernel_rules:
            return None
        self.imports |= fast.imports
        self.helpers += [h for h in fast.helpers if h not in self.helpers]
        self.kernel_helpers += [h for h in fast.kernel_helpers if h not in self.kernel_helpers]
        out: list[str] = []
        reusing = fast.reusing_lines()
        if reusing is not None:
            rewritten, scratch = reusing
            out += [f"{buf} = torch.empty_like({fast.arg[arg]})" for buf, arg in scratch.items()]
            for line, written in zip(fast_lines, rewritten, strict=True):
                out.append(line if written is None else f"{line.split(' = ', 1)[0]} = {written}")
        else:
            out += fast_lines
        out.append(self.return_line(fast_value, grads))
        return out, fast.sizes_used

    def return_line(self, value: str | None, grads: list[tuple[str, str]]) -> str:
        """`return value, {"X": dX, ...}` (the table alone without the value)."""
        table = "{" + ", ".join(f'"{v}": {g}' for v, g in grads) + "}"
        return f"return {value}, {table}" if self.with_value else f"return {table}"

    def define(self, name: str, text: str, node: Expr, static: bool) -> None:
        self.lines.append(f"{name} = {text}")
        self.entries.append((name, text, node, static))

    def cheap(self, node: Call) -> bool:
        """A transpose of a named value is a view: write it where it is used."""
        return node.fn == "transpose" and not isinstance(node.args[0], Call)

    def hint(self, node: Call, code: dict[Expr, Code]) -> str:
        """A readable name for a temporary: `z_max`, `z_shifted`, `z_exp`, `sqrt_d`, else `t`."""

        def is_shift(e: Expr) -> bool:
            return _is(e, "sub") and _is(e.args[1], "_amax")

        def base(x: Expr) -> str:
            text = code[x][0]
            return text if text.isidentifier() else "x"

        if _is(node, "_layer_norm_backward"):
            return base(node.args[1]) + "_norm_grads"
        if _is(node, "_amax"):
            return base(node.args[0]) + "_max"
        if is_shift(node):
            return base(node.args[0]) + "_shifted"
        if _is(node, "exp") and is_shift(node.args[0]):
            return base(node.args[0].args[0]) + "_exp"
        if _is(node, "sum") and _is(node.args[0], "exp") and is_shift(node.args[0].args[0]):
            return base(node.args[0].args[0].args[0]) + "_expsum"
        if _is(node, "sub") and _is(node.args[1], "mean") and node.args[1].args[0] == node.args[0]:
            return base(node.args[0]) + "_centred"
        if _is(node, "sub") and is_shift(node.args[0]) and _is(node.args[1], "log"):
            return base(node.args[0].args[0]) + "_log_softmax"
        arg = code[node.args[0]][0] if node.args else ""
        if node.fn in ("sqrt", "sigmoid", "tanh", "erf", "log", "exp") and arg.isidentifier():
            return f"{node.fn}_{arg}"
        return "t"

    def render(self, node: Call, code: dict[Expr, Code], static: dict[Expr, bool]) -> Code:
        """The node's source text, naming its longest inline argument until the line fits."""
        while True:
            column = "scalar" if static[node] else self.target.column
            text = self._render(node, column, code)
            if len(text[0]) <= LINE_LIMIT:
                return text
            inline = [c for c in node.args if isinstance(c, Call) and not code[c][0].isidentifier()]
            if not inline:
                return text
            longest = max(inline, key=lambda c: len(code[c][0]))
            name = self.namer.fresh(self.hint(longest, code))
            self.define(name, code[longest][0], longest, static[longest])
            code[longest] = (name, P_ATOM)

    def _render(self, node: Call, column: str, code: dict[Expr, Code]) -> Code:
        args = [code[a] for a in node.args]
        if node.fn in kernels.FORMS:  # a fused kernel's call (the torch eager path only)
            helper = kernels.HELPERS.get(node.fn)
            if helper is not None and helper not in self.kernel_helpers:
                self.kernel_helpers.append(helper)
            return kernels.FORMS[node.fn](tuple(t for t, _ in args), node), P_ATOM
        f = FORMS[node.fn][column]
        if isinstance(f, Op):
            if len(args) == 1:
                return f"{f.symbol}{_wrap(args[0], P_POW)}", P_NEG
            left, right = args
            if f.prec == P_POW:
                return f"{_wrap(left, P_ATOM)} ** {_wrap(right, P_NEG)}", P_POW
            return f"{_wrap(left, f.prec)} {f.symbol} {_wrap(right, f.prec + 1)}", f.prec
        if isinstance(f, Postfix):
            return f"{_wrap(args[0], P_ATOM)}{f.suffix}", P_ATOM
        self.imports.update(f.imports)
        for h in f.helpers:
            if h not in self.helpers:
                self.helpers.append(h)
        texts = tuple(t for t, _ in args)
        if isinstance(f, Template):
            return f.text.format(*(_wrap(a, f.arg_prec) for a in args)), P_ATOM
        assert isinstance(f, Custom)
        dims = dict(node.params).get("dims")
        if dims is not None:
            dims = tuple(sympy.Integer(d) if isinstance(d, int) else d for d in dims)
            for d in dims:
                self.sizes_used.update(s.name for s in d.free_symbols)
            renamed = {size_symbol(k): size_symbol(v) for k, v in self.size.items()}
            new = tuple(d.xreplace(renamed) for d in dims)
            params = tuple((k, new if k == "dims" else v) for k, v in node.params)
            node = Call(node.fn, node.args, params, node.shape)
        return f.rule(texts, node), P_ATOM

    # ------------------------------------------------------------ the module

    def size_reads(
        self, available: list[str], given: tuple[str, ...] = (), checks: bool = False
    ) -> list[str]:
        """`n = Q.shape[0]`: each size used, read off the first available variable that has it
        (or solved from an axis whose length combines it: engine.export.size_plan); `given`
        sizes are already assigned (keyword arguments), `checks` keeps the axis-length checks."""
        first: dict[str, str] = {}
        for v in available:
            for i, d in enumerate(self.program.env.vars[v].shape):
                if d.is_Symbol:
                    first.setdefault(str(d), f"{self.arg[v]}.shape[{i}]")
        need = sorted(self.sizes_used, key=list(self.program.env.sizes).index)
        plan = plan_sizes(
            self.fn_name,
            self.program.env,
            available,
            self.arg,
            self.size,
            need,
            first,
            set(given),
            False,
        )
        if checks:
            return plan.lines
        return [line for line in plan.lines if not line.startswith(("if ", " "))]

    def preamble(self, fn: str, names: list[str], dtype: str = "dtype") -> list[str]:
        """Decide the dtype (and device), convert the arguments, check their shapes, read sizes.

        Arguments of rank 1 or more decide the dtype (scalars such as eps follow them), unless
        every argument is a scalar.
        """
        env = self.program.env
        labels = label_sizes(env, names)  # integer labels: their bound V is read to check them
        self.sizes_used |= labels
        votes = [v for v in names if env.vars[v].shape and env.vars[v].vtype != "index"] or names
        out = [self.target.setup.format(dtype=dtype, args=", ".join(self.arg[v] for v in votes))]
        for v in names:
            convert = self.target.convert
            if env.vars[v].vtype == "index" and self.target.convert_index:  # integer labels
                convert = self.target.convert_index
            line = f"{self.arg[v]} = {convert.format(self.arg[v])}"
            out.append(line + ("  # noqa: E741" if self.arg[v] in ("l", "O", "I") else ""))
        items = []
        for v in names:
            dims = [str(int(d)) if d.is_Integer else f'"{d}"' for d in env.vars[v].shape]
            comma = "," if len(dims) == 1 else ""
            items.append(f'"{v}": (' + ", ".join(dims) + comma + ")")
        need = [s for s in env.sizes if s in self.sizes_used]
        # A fast test of the declared ranks and sizes; the helper runs only to explain a failure.
        first: dict[str, str] = {}
        ranks = _tuple_text([f"{self.arg[v]}.ndim" for v in names])
        conds = [f"{ranks} != {_tuple_text([str(len(env.vars[v].shape)) for v in names])}"]
        for v in names:
            for i, d in enumerate(env.vars[v].shape):
                here = f"{self.arg[v]}.shape[{i}]"
                if d.is_Integer:
                    conds.append(f"{here} != {int(d)}")
                elif str(d) in first:
                    conds.append(f"{here} != {first[str(d)]}")
                else:
                    first[str(d)] = here
        arrays = ", ".join(self.arg[v] for v in names)
        one = f'_check_shapes("{fn}", {{{", ".join(items)}}}, {arrays})'
        if len(one) <= 84:
            call = [one]
        else:
            call = ["_check_shapes(", f'    "{fn}",', "    {"]
            call += [f"        {item}," for item in items]
            call.append("    },")
            if len(arrays) <= 76:
                call.append(f"    {arrays},")
            else:
                call += [f"    {self.arg[v]}," for v in names]
            call.append(")")
        test = f"if {' or '.join(conds)}:"
        if len(test) <= 92:
            out.append(test)
        else:
            out += ["if (", f"    {conds[0]}"] + [f"    or {c}" for c in conds[1:]] + ["):"]
        out += ["    " + line for line in call]
        out += [f"{self.size[s]} = {first[s]}" for s in need if s in first]
        # sizes no axis has alone: solved from a relation (dh = X.shape[1] // h) or keywords (h)
        readable = {k: t for k, t in first.items() if k in env.sizes}
        self.fn_name = fn
        plan = plan_sizes(
            fn, env, names, self.arg, self.size, need, readable, set(need) & set(first)
        )
        self.size_plan = plan
        known = set(need) | set(plan.params)
        checks = label_checks(fn, names, env, self.arg, self.size, known)
        self.checks_labels = self.checks_labels or bool(checks)
        return out + plan.lines + checks

    def helper_sources(self) -> list[str]:
        """The module's helper functions: the target's, the shape check, then the forms'."""
        extra = [SIZE_ARG] if self.size_plan.params else []
        if self.reuses:
            extra.append(reuse.REUSE_HELPER)
        if self.checks_labels:
            extra.append(CHECK_LABELS[self.target.name])
        forms = [HELPERS[h] for h in self.helpers]
        return [*self.target.helpers, CHECK_SHAPES, *extra, *forms, *self.kernel_helpers]

    def header_lines(self, header: list[str]) -> list[str]:
        """Module docstring, imports, helpers: everything before the exported function."""
        if self.checks_labels and self.target.name == "jax":
            header = [*header, "", JIT_NOTE]
        src: list[str] = ['"""' + _fill(header, 0) + '\n"""', ""]
        std = sorted(i for i in self.imports if i == MATH)
        third = sorted(i for i in self.imports if i != MATH and i.startswith("import "))
        third += sorted(i for i in self.imports if i.startswith("from "))
        if std:
            src += std + [""]
        src += third
        if self.target.prelude:
            src += [""] + list(self.target.prelude)
        for h in self.helper_sources():
            src += ["", "", h]
        return src

    def module(self, name: str, verified_summary: str | None) -> str:
        lines, grads, value = self.emit()
        env = self.program.env
        args = [self.arg[v] for v in env.vars]
        eager = self.eager_path()
        if eager is not None:
            self.sizes_used |= eager[1]
        # Arguments become arrays of one floating dtype (and device); their shapes are checked.
        body = self.preamble(name, list(env.vars))
        reusing = None if eager is not None else self.reusing_lines()
        may_reuse = f"_may_reuse({', '.join(self.arg[v] for v in env.vars)})"
        if eager is not None:  # fused kernels: the eager path is a block of its own
            self.imports.add(reuse.REUSE_IMPORT)
            self.reuses = True
            body.append(f"if {may_reuse}:")
            body.append("    # eager PyTorch: fused kernels, writes into its own temporaries")
            body += ["    " + line for line in eager[0]]
            body.append("# autograd, torch.func transforms, torch.compile: the program as derived")
            body += lines
        elif reusing is None:
            body += lines
        else:  # `t = a.div_(s) if reuse else a / s`: decided once per call (engine.export.reuse)
            flag = self.namer.claim("reuse")
            body.append(f"{flag} = {may_reuse}")
            self.imports.add(reuse.REUSE_IMPORT)
            self.reuses = True
            rewritten, scratch = reusing
            for buf, arg in scratch.items():
                body.append(f"{buf} = torch.empty_like({self.arg[arg]}) if {flag} else None")
            for line, written in zip(lines, rewritten, strict=True):
                if written is None:
                    body.append(line)
                    continue
                name_, plain = line.split(" = ", 1)
                written = f"({written})" if " if " in written else written
                one = f"{name_} = {written} if {flag} else {plain}"
                if len(one) <= WIDTH - 4:
                    body.append(one)
                else:  # as ruff format lays out a long conditional expression
                    body += [f"{name_} = (", f"    {written}", f"    if {flag}"]
                    body += [f"    else {plain}", ")"]
        body.append(self.return_line(value, grads))

        out_text = to_text(self.program.output)
        wrt = ", ".join(v for v, _ in self.program.gradients)
        header = [
            f"Generated by llm-math-notes ({self.target.title}): "
            f"the value of {out_text} and its {self.what} with respect to {wrt}.",
            "",
            "It computes in the floating dtype of its array arguments (on their device), or in "
            "the one given as dtype=, and raises ValueError on arguments of other shapes than "
            "declared (it is not batched).",
        ]
        if verified_summary:
            header += ["", f"Verified by llm-math-notes: {_doc_safe(verified_summary)}"]
        else:
            header += ["", "Not verified at export time: check it with `llm-math verify`."]
        defs = [
            f"{r.name} = {to_text(r.body)}"
            for r in self.postorder([self.program.output])
            if isinstance(r, Ref)
        ]
        names = self.program.gradient_names()
        returns = "{" + ", ".join(f'"{v}": {names[v]}' for v, _ in grads) + "}"
        doc = [
            f"{out_text} and its {self.what} with respect to {wrt}."
            if self.with_value
            else f"The {self.what} of {out_text} with respect to {wrt}.",
        ]
        if defs:
            doc += ["", "where " + "; ".join(defs) + "."]
        renamed = [f"{v} is the argument {self.arg[v]}" for v in env.vars if self.arg[v] != v]
        if renamed:  # `np`, `math`, ...: names the module itself needs
            doc += ["", "Renamed, as the module needs the names: " + "; ".join(renamed) + "."]
        doc += ["", f"Returns (value, {returns})." if self.with_value else f"Returns {returns}."]

        plan = self.size_plan
        if plan.params or plan.solved:
            header += ["", sizes_paragraph(plan, self.size)]
            doc += ["", sizes_paragraph(plan, self.size)]
        src = self.header_lines(header)
        # Single-letter names such as O are the field's own (dO); ruff's E741 would flag them.
        ambiguous = "  # noqa: E741" if {"l", "O", "I"} & set(args) else ""
        keywords = "".join(f"{self.size[s]}: int, " for s in plan.params)
        src += ["", "", f"def {name}({', '.join(args)}, *, {keywords}dtype=None):{ambiguous}"]
        src.append('    """' + _fill(doc, 4) + '\n    """')
        src += ["    " + line for line in body]
        return lay_out("\n".join(src)) + "\n"


def _tuple_text(items: list[str]) -> str:
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _is(e: Expr, fn: str) -> bool:
    return isinstance(e, Call) and e.fn == fn


def _doc_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _fill(paragraphs: list[str], indent: int) -> str:
    """Docstring text wrapped to 96 columns (the first line follows the opening quotes)."""
    pad = " " * indent
    out: list[str] = []
    for i, para in enumerate(paragraphs):
        if not para:
            out.append("")
            continue
        wrapped = textwrap.wrap(para, 96 - indent, break_long_words=False, break_on_hyphens=False)
        out += [(w if (i == 0 and j == 0) else pad + w) for j, w in enumerate(wrapped)]
    return "\n".join(out)


def check_table() -> list[str]:
    """Registry functions with no form for some target (empty when the table is complete)."""
    from engine.functions import REGISTRY

    missing = []
    for fn in REGISTRY:
        if fn in LOWERED or fn in NOT_EXPORTABLE:
            continue
        for column in COLUMNS[:3]:
            if column not in FORMS.get(fn, {}):
                missing.append(f"{fn}/{column}")
    return missing


__all__ = ["Emitter", "ExportError", "Namer", "check_table", "const_code"]
