"""The code-form table: how each registry function is written in NumPy, JAX, PyTorch and math.

One place, keyed by registry name. A function is either a Python operator (`Op`, the same text
in every target), written per target (`Template` text or a `Rule` producing text), or rewritten
by `engine.export.lower` into other entries before emission (`LOWERED`, for the numerically
stable forms). The `scalar` column is used for size/constant-only scalars such as `sqrt(d)`,
which are plain Python numbers in every target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.expr import Call

TARGETS = ("numpy", "jax", "torch")
COLUMNS = (*TARGETS, "scalar")

# Python operator precedences (higher binds tighter).
P_ADD, P_MUL, P_NEG, P_POW, P_ATOM = 60, 70, 80, 90, 100


@dataclass(frozen=True)
class Op:
    """A Python operator; written the same way in every target."""

    symbol: str
    prec: int


@dataclass(frozen=True)
class Postfix:
    """A postfix attribute such as `.T`; the argument is parenthesized unless it is an atom."""

    suffix: str


@dataclass(frozen=True)
class Template:
    """Call text with `{0}`, `{1}` for the arguments; `imports` are the module lines it needs."""

    text: str
    imports: tuple[str, ...] = ()
    helpers: tuple[str, ...] = ()
    arg_prec: int = 0  # arguments of lower precedence are parenthesized (for operator text)


Rule = Callable[[tuple[str, ...], Call], str]  # argument texts, node -> call text


@dataclass(frozen=True)
class Custom:
    """A form that depends on the call's parameters (axis, keepdims, dims, rank)."""

    rule: Rule
    imports: tuple[str, ...] = ()
    helpers: tuple[str, ...] = ()


Form = Op | Postfix | Template | Custom

NP, JNP, TORCH, MATH = (
    "import numpy as np",
    "import jax.numpy as jnp",
    "import torch",
    "import math",
)
JAX = "import jax"
ERF_NP = "from scipy.special import erf"
ERF_JAX = "from jax.scipy.special import erf"

# Rewritten before emission (see engine.export.lower), with the reason.
LOWERED: dict[str, str] = {
    "softmax": "exp(x - max) / sum, max-shifted",
    "log_softmax": "(x - max) - log(sum(exp(x - max))), sharing the softmax terms",
    "logsumexp": "max + log(sum(exp(x - max)))",
    "cross_entropy": "-sum(y * log(p)), log(softmax) as log_softmax; for p = softmax(x) and y"
    " whose rows sum to 1 (simplex, onehot), sum(log(sum(exp(x - max)))) - y . (x - max)",
    "entropy": "-sum(p * log(p))",
    "kl": "sum(p * log(p / q))",
    "silu": "x * sigmoid(x), sharing sigmoid with the derivative",
    "gelu": "x * (1/2 * (1 + erf(x / sqrt(2)))), sharing terms with the derivative",
    "gelu_tanh": "x * (1/2 * (1 + tanh(...))), sharing terms with the derivative",
}

# Not exportable: a derived program holds explicit gradients, never derivative nodes.
NOT_EXPORTABLE: dict[str, str] = {
    "grad": "derivative nodes are verified, not exported; export a derived program instead",
    "jacobian": "derivative nodes are verified, not exported; export a derived program instead",
}


def _param(node: Call, name: str, default):
    return dict(node.params).get(name, default)


def _dims_text(node: Call) -> str:
    dims = _param(node, "dims", ())
    text = ", ".join(str(d) for d in dims)
    return f"({text},)" if len(dims) == 1 else f"({text})"


def _np_reduce(fn: str, extra: str = "") -> Rule:
    """np.sum / jnp.sum style: `fn(x, axis=a, keepdims=True)`."""

    def rule(a: tuple[str, ...], node: Call) -> str:
        parts = [a[0]]
        axis = _param(node, "axis", None)
        if axis is not None:
            parts.append(f"axis={axis}")
        if extra:
            parts.append(extra)
        if _param(node, "keepdims", False):
            parts.append("keepdims=True")
        return f"{fn}({', '.join(parts)})"

    return rule


def _torch_reduce(fn: str, extra: str = "") -> Rule:
    """torch.sum style: `dim=`, `keepdim=`; every axis at once is `dim=(0, 1, ...)`."""

    def rule(a: tuple[str, ...], node: Call) -> str:
        axis = _param(node, "axis", None)
        keep = _param(node, "keepdims", False)
        rank = len(node.args[0].shape)
        parts = [a[0]]
        if axis is not None:
            parts.append(f"dim={axis}")
        elif keep and rank:
            parts.append(f"dim={tuple(range(rank))}")
        if extra:
            parts.append(extra)
        if keep and (axis is not None or rank):
            parts.append("keepdim=True")
        return f"{fn}({', '.join(parts)})"

    return rule


def _squeeze(fn: str, kw: str) -> Rule:
    def rule(a: tuple[str, ...], node: Call) -> str:
        axis = _param(node, "axis", None)
        return f"{fn}({a[0]})" if axis is None else f"{fn}({a[0]}, {kw}={axis})"

    return rule


def _ones(prefix: str, dtype: str) -> Rule:
    return lambda a, node: f"{prefix}.ones({_dims_text(node)}{dtype})"


def _eye(prefix: str, dtype: str) -> Rule:
    return lambda a, node: f"{prefix}.eye({_param(node, 'dims', ())[0]}{dtype})"


def _expand(fn: str, kw: str) -> Rule:
    return lambda a, node: f"{fn}({a[0]}, {kw}={_param(node, 'axis', 0)})"


def _unsqueeze(a: tuple[str, ...], node: Call) -> str:
    """torch.unsqueeze takes one dim: a tuple of axes is one call per axis, in ascending order
    of their (normalized) positions in the result."""
    axis = _param(node, "axis", 0)
    if not isinstance(axis, tuple):
        return f"torch.unsqueeze({a[0]}, dim={axis})"
    text = a[0]
    for k in sorted(x % len(node.shape) for x in axis):
        text = f"torch.unsqueeze({text}, dim={k})"
    return text


def _swapaxes(fn: str) -> Rule:
    return lambda a, node: f"{fn}({a[0]}, {_param(node, 'axis1', 0)}, {_param(node, 'axis2', 0)})"


def _einsum(fn: str) -> Rule:
    """np.einsum contracts pairwise only when asked (optimize=True); jnp and torch always do."""

    def rule(a: tuple[str, ...], node: Call) -> str:
        extra = ", optimize=True" if fn == "np.einsum" and len(a) > 2 else ""
        return f'{fn}("{_param(node, "subscripts", "")}", {", ".join(a)}{extra})'

    return rule


def _permute(fn: str) -> Rule:
    return lambda a, node: f"{fn}({a[0]}, {_param(node, 'axes', ())})"


def _t(numpy: str, jax: str, torch: str, scalar: str | None = None, **imp) -> dict[str, Form]:
    """One elementwise row: NumPy, JAX and PyTorch templates (and a math one for scalars)."""
    row: dict[str, Form] = {
        "numpy": Template(numpy, imp.get("np_imports", (NP,)), imp.get("np_helpers", ())),
        "jax": Template(jax, imp.get("jax_imports", (JNP,))),
        "torch": Template(torch, (TORCH,)),
    }
    if scalar is not None:
        row["scalar"] = Template(scalar, imp.get("scalar_imports", (MATH,)))
    return row


def _op(symbol: str, prec: int) -> dict[str, Form]:
    return {c: Op(symbol, prec) for c in COLUMNS}


SIGMOID_HELPER = "_sigmoid"

FORMS: dict[str, dict[str, Form]] = {
    # ---------------------------------------------------------------- operators
    "add": _op("+", P_ADD),
    "sub": _op("-", P_ADD),
    "mul": _op("*", P_MUL),
    "div": _op("/", P_MUL),
    "pow": _op("**", P_POW),
    "neg": _op("-", P_NEG),
    "matmul": {t: Op("@", P_MUL) for t in TARGETS},
    # Only rank-2 transposes reach the emitter (lower() drops the others); `.T` is a view.
    "transpose": {t: Postfix(".T") for t in TARGETS},
    # ---------------------------------------------------------------- elementwise
    "exp": _t("np.exp({0})", "jnp.exp({0})", "torch.exp({0})", "math.exp({0})"),
    "log": _t("np.log({0})", "jnp.log({0})", "torch.log({0})", "math.log({0})"),
    "sqrt": _t("np.sqrt({0})", "jnp.sqrt({0})", "torch.sqrt({0})", "math.sqrt({0})"),
    "abs": _t("np.abs({0})", "jnp.abs({0})", "torch.abs({0})", "abs({0})", scalar_imports=()),
    "tanh": _t("np.tanh({0})", "jnp.tanh({0})", "torch.tanh({0})", "math.tanh({0})"),
    "sin": _t("np.sin({0})", "jnp.sin({0})", "torch.sin({0})", "math.sin({0})"),
    "cos": _t("np.cos({0})", "jnp.cos({0})", "torch.cos({0})", "math.cos({0})"),
    "sigmoid": _t(
        "_sigmoid({0})",
        "jax.nn.sigmoid({0})",
        "torch.sigmoid({0})",
        "(1 / (1 + math.exp(-({0}))) if {0} >= 0 else math.exp({0}) / (1 + math.exp({0})))",
        np_helpers=(SIGMOID_HELPER,),
        jax_imports=(JAX,),
    ),
    "relu": _t(
        "np.maximum({0}, 0.0)",
        "jax.nn.relu({0})",
        "torch.relu({0})",
        "max({0}, 0.0)",
        jax_imports=(JAX,),
        scalar_imports=(),
    ),
    "softplus": _t(
        "np.logaddexp(0.0, {0})",
        "jax.nn.softplus({0})",
        "torch.logaddexp({0}, torch.zeros_like({0}))",
        "(math.log1p(math.exp(-abs({0}))) + max({0}, 0.0))",
        jax_imports=(JAX,),
    ),
    "erf": _t(
        "erf({0})",
        "erf({0})",
        "torch.erf({0})",
        "math.erf({0})",
        np_imports=(ERF_NP,),
        jax_imports=(ERF_JAX,),
    ),
    "sign": _t(
        "np.sign({0})",
        "jnp.sign({0})",
        "torch.sign({0})",
        "float(({0} > 0) - ({0} < 0))",
        scalar_imports=(),
    ),
    "step": _t(
        "({0} > 0).astype(np.float64)",
        "({0} > 0).astype(jnp.float64)",
        "({0} > 0).to(torch.float64)",
        "float({0} > 0)",
        scalar_imports=(),
    ),
    # ---------------------------------------------------------------- reductions
    "sum": {
        "numpy": Custom(_np_reduce("np.sum"), (NP,)),
        "jax": Custom(_np_reduce("jnp.sum"), (JNP,)),
        "torch": Custom(_torch_reduce("torch.sum"), (TORCH,)),
    },
    "mean": {
        "numpy": Custom(_np_reduce("np.mean"), (NP,)),
        "jax": Custom(_np_reduce("jnp.mean"), (JNP,)),
        "torch": Custom(_torch_reduce("torch.mean"), (TORCH,)),
    },
    "var": {
        "numpy": Custom(_np_reduce("np.var"), (NP,)),
        "jax": Custom(_np_reduce("jnp.var"), (JNP,)),
        "torch": Custom(_torch_reduce("torch.var", "correction=0"), (TORCH,)),
    },
    # ---------------------------------------------------------------- linear algebra
    "diag": _t("np.diag({0})", "jnp.diag({0})", "torch.diag({0})"),
    "outer": _t("np.outer({0}, {1})", "jnp.outer({0}, {1})", "torch.outer({0}, {1})"),
    "trace": _t("np.trace({0})", "jnp.trace({0})", "torch.trace({0})"),
    "eye": {
        "numpy": Custom(_eye("np", ""), (NP,)),
        "jax": Custom(_eye("jnp", ", dtype=jnp.float64"), (JNP,)),
        "torch": Custom(_eye("torch", ", dtype=torch.float64"), (TORCH,)),
    },
    "ones": {
        "numpy": Custom(_ones("np", ""), (NP,)),
        "jax": Custom(_ones("jnp", ", dtype=jnp.float64"), (JNP,)),
        "torch": Custom(_ones("torch", ", dtype=torch.float64"), (TORCH,)),
    },
    "expand_dims": {
        "numpy": Custom(_expand("np.expand_dims", "axis"), (NP,)),
        "jax": Custom(_expand("jnp.expand_dims", "axis"), (JNP,)),
        "torch": Custom(_unsqueeze, (TORCH,)),
    },
    # ---------------------------------------------------------------- tensors (issue 8)
    "swapaxes": {
        "numpy": Custom(_swapaxes("np.swapaxes"), (NP,)),
        "jax": Custom(_swapaxes("jnp.swapaxes"), (JNP,)),
        "torch": Custom(_swapaxes("torch.swapaxes"), (TORCH,)),
    },
    "squeeze": {
        "numpy": Custom(_squeeze("np.squeeze", "axis"), (NP,)),
        "jax": Custom(_squeeze("jnp.squeeze", "axis"), (JNP,)),
        "torch": Custom(_squeeze("torch.squeeze", "dim"), (TORCH,)),
    },
    "einsum": {
        "numpy": Custom(_einsum("np.einsum"), (NP,)),
        "jax": Custom(_einsum("jnp.einsum"), (JNP,)),
        "torch": Custom(_einsum("torch.einsum"), (TORCH,)),
    },
    "_permute": {  # transpose(x, axes), from lower()
        "numpy": Custom(_permute("np.transpose"), (NP,)),
        "jax": Custom(_permute("jnp.transpose"), (JNP,)),
        "torch": Custom(_permute("torch.permute"), (TORCH,)),
    },
    # ---------------------------------------------------------------- internal (from lower())
    "_amax": {
        "numpy": Custom(_np_reduce("np.max"), (NP,)),
        "jax": Custom(_np_reduce("jnp.max"), (JNP,)),
        "torch": Custom(_torch_reduce("torch.amax"), (TORCH,)),
    },
    "_squeeze": {
        "numpy": Custom(_squeeze("np.squeeze", "axis"), (NP,)),
        "jax": Custom(_squeeze("jnp.squeeze", "axis"), (JNP,)),
        "torch": Custom(_squeeze("torch.squeeze", "dim"), (TORCH,)),
    },
    "_vdot": {  # sum(a * b) over every entry, a and b of one shape: one fused pass
        "numpy": Template("np.vdot({0}, {1})", (NP,)),
        "jax": Template("jnp.vdot({0}, {1})", (JNP,)),
        "torch": Template("torch.sum({0} * {1})", (TORCH,), arg_prec=P_MUL + 1),
    },
    "_zeros_like": {  # a gradient that does not depend on its variable's shape
        "numpy": Template("np.zeros_like({0})", (NP,)),
        "jax": Template("jnp.zeros_like({0})", (JNP,)),
        "torch": Template("torch.zeros_like({0})", (TORCH,)),
    },
}

# Helper functions some NumPy forms call; emitted once into the module that uses them.
HELPERS: dict[str, str] = {
    SIGMOID_HELPER: '''def _sigmoid(x):
    """Logistic sigmoid without overflow: only exp(-|x|) is computed."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))''',
}


def form(fn: str, column: str) -> Form:
    """The form of registry (or internal) function `fn` in `column`; KeyError if it has none."""
    return FORMS[fn][column]
