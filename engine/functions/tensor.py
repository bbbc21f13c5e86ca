"""Tensors of any rank: swapaxes, squeeze and einsum (the one function taking a string literal)."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from engine.expr import (
    Call,
    EngineError,
    Expr,
    Ref,
    Shape,
    ShapeError,
    Size,
    Var,
    call,
    format_shape,
)
from engine.functions.base import (
    PREC_POSTFIX,
    Function,
    latex_fn,
    normalize_axis,
    obj,
    register,
)

# ---------------------------------------------------------------- swapaxes


def _swap_axes(p: dict, rank: int) -> tuple[int, int]:
    a, b = p["axis1"], p["axis2"]
    if a is None or b is None:
        raise ShapeError("swapaxes() needs two axes: swapaxes(x, axis1, axis2)")
    return normalize_axis(a, rank, "swapaxes"), normalize_axis(b, rank, "swapaxes")


def _swapaxes_shape(shapes: tuple[Shape, ...], p) -> Shape:
    (s,) = shapes
    a, b = _swap_axes(p, len(s))
    out = list(s)
    out[a], out[b] = s[b], s[a]
    return tuple(out)


def _swapaxes_latex(n: Call, s) -> str:
    """The swap of the last two axes is the batched transpose Kᵀ (per head, as papers write it);
    any other pair names its axes."""
    rank = len(n.shape)
    a, b = sorted(_swap_axes(dict(n.params), rank))
    arg = n.args[0]
    if (a, b) == (rank - 2, rank - 1):
        return f"{s(arg, PREC_POSTFIX + 1)}^\\top"
    return rf"{latex_fn('swapaxes')}_{{{a},{b}}}\left({s(arg, 0)}\right)"


register(
    Function(
        name="swapaxes",
        nargs=1,
        shape=_swapaxes_shape,
        numpy=lambda x, axis1=None, axis2=None: np.swapaxes(x, axis1, axis2),
        sympy=lambda x, axis1=None, axis2=None: obj(np.swapaxes(x, axis1, axis2)),
        latex=_swapaxes_latex,
        vjp=lambda n, g, i: call("swapaxes", g, **dict(n.params)),
        params={"axis1": None, "axis2": None},
        doc="swap two axes (np.swapaxes); swapaxes(K, -1, -2) is the batched transpose",
        positional=("axis1", "axis2"),
    )
)


# ---------------------------------------------------------------- squeeze


def squeezed_axes(shape: Shape, axis: Any, fname: str = "squeeze") -> tuple[int, ...]:
    """The axes squeeze removes: the given ones (each of length 1), or every axis of length 1."""
    one = sympy.Integer(1)
    if axis is None:
        return tuple(k for k, d in enumerate(shape) if d == one)
    axes = axis if isinstance(axis, tuple) else (axis,)
    norm = tuple(sorted(normalize_axis(a, len(shape), fname) for a in axes))
    if len(set(norm)) != len(norm):
        raise ShapeError(f"{fname}(): axis {axis} repeats an axis")
    for k in norm:
        if shape[k] != one:
            raise ShapeError(
                f"{fname}(): axis {k} has length {shape[k]}, not 1, in shape {format_shape(shape)}"
            )
    return norm


def _squeeze_shape(shapes: tuple[Shape, ...], p) -> Shape:
    (s,) = shapes
    gone = squeezed_axes(s, p["axis"])
    return tuple(d for k, d in enumerate(s) if k not in gone)


def _squeeze_vjp(n: Call, g: Expr, i: int) -> Expr:
    """The cotangent gets its length-1 axes back: expand_dims at the squeezed positions."""
    gone = squeezed_axes(n.args[0].shape, n.param("axis"))
    if not gone:
        return g
    return call("expand_dims", g, axis=gone[0] if len(gone) == 1 else gone)


def _squeeze_np(x, axis=None):
    return np.squeeze(x, axis=axis)


register(
    Function(
        name="squeeze",
        nargs=1,
        shape=_squeeze_shape,
        numpy=_squeeze_np,
        sympy=lambda x, axis=None: obj(np.squeeze(x, axis=axis)),
        latex=lambda n, s: s(n.args[0], 0),  # the same entries; the shape is bookkeeping
        vjp=_squeeze_vjp,
        params={"axis": None},
        doc="remove axes of length 1 (np.squeeze): the given axis or axes, or every such axis",
        positional=("axis",),
    )
)


# ---------------------------------------------------------------- einsum

MAX_OPERANDS = 3  # written in a formula; derivatives may add identity and ones operands
MAX_INTERNAL_OPERANDS = 8
MAX_SUBSCRIPTS = 64  # characters in a subscripts string
_SUBSCRIPTS_RE = re.compile(r"^([A-Za-z]*)((?:,[A-Za-z]*)*)->([A-Za-z]*)$")


@dataclass(frozen=True)
class Subscripts:
    """A parsed einsum subscripts string `ij,jk->ik`: one letter string per operand, the output."""

    inputs: tuple[str, ...]
    output: str

    def text(self) -> str:
        return ",".join(self.inputs) + "->" + self.output

    def summed(self) -> str:
        """Letters that are summed over (in no output position), in order of first use."""
        seen: list[str] = []
        for s in self.inputs:
            for c in s:
                if c not in self.output and c not in seen:
                    seen.append(c)
        return "".join(seen)


def parse_subscripts(text: Any, operands: int | None = None) -> Subscripts:
    """Check a subscripts string against the strict grammar of the formula language.

    Letters only, one letter string per operand separated by commas, an explicit `->` and an
    output of distinct letters each of which appears in an input. No ellipsis, no spaces.
    """
    if not isinstance(text, str):
        raise ShapeError('einsum() takes a subscripts string first, e.g. einsum("ij,jk->ik", A, B)')
    if len(text) > MAX_SUBSCRIPTS:
        raise ShapeError(f"einsum(): subscripts are too long (limit {MAX_SUBSCRIPTS} characters)")
    if "..." in text or "." in text:
        raise ShapeError("einsum(): ellipsis '...' is not supported; name every axis with a letter")
    if "->" not in text:
        raise ShapeError(f"einsum(): subscripts {text!r} need an explicit '->' and output")
    m = _SUBSCRIPTS_RE.match(text)
    if not m:
        raise ShapeError(
            f"einsum(): cannot read subscripts {text!r} (letters only, operands separated by "
            "commas, then '->' and the output letters, e.g. \"bhid,bhjd->bhij\")"
        )
    inputs = tuple(text.split("->")[0].split(","))
    output = m.group(3)
    if len(set(output)) != len(output):
        raise ShapeError(f"einsum(): output {output!r} repeats a letter")
    used = set("".join(inputs))
    for c in output:
        if c not in used:
            raise ShapeError(f"einsum(): output letter {c!r} appears in no input")
    if operands is not None and len(inputs) != operands:
        raise ShapeError(
            f"einsum(): subscripts {text!r} name {len(inputs)} operand"
            f"{'s' * (len(inputs) != 1)}, got {operands}"
        )
    return Subscripts(inputs, output)


def letter_sizes(sub: Subscripts, shapes: tuple[Shape, ...]) -> dict[str, sympy.Expr]:
    """The size of each letter, read off the operands' shapes; a repeated letter must agree."""
    sizes: dict[str, sympy.Expr] = {}
    for k, (letters, shape) in enumerate(zip(sub.inputs, shapes, strict=True)):
        if len(letters) != len(shape):
            raise ShapeError(
                f"einsum(): operand {k + 1} has rank {len(shape)} but subscripts {letters!r} "
                f"name {len(letters)} axes"
            )
        for c, d in zip(letters, shape, strict=True):
            if sizes.setdefault(c, d) != d:
                raise ShapeError(f"einsum(): letter {c!r} has sizes {sizes[c]} and {d}")
    return sizes


def _einsum_shape(shapes: tuple[Shape, ...], p) -> Shape:
    sub = parse_subscripts(p["subscripts"], len(shapes))
    sizes = letter_sizes(sub, shapes)
    return tuple(sizes[c] for c in sub.output)


def _np_einsum(*ops, subscripts=None):
    # Three or more operands: contract pairwise (np.einsum's default loops over every letter at
    # once, O(n^4) for a chain of three n x n matrices).
    return np.asarray(np.einsum(subscripts, *ops, optimize=len(ops) > 2))


def _sym_einsum(*ops, subscripts=None) -> np.ndarray:
    """Entry by entry: the sum over the summed letters of the product of the operands' entries
    (written independently of np.einsum)."""
    sub = parse_subscripts(subscripts, len(ops))
    arrays = [obj(o) for o in ops]
    sizes: dict[str, int] = {}
    for letters, arr in zip(sub.inputs, arrays, strict=True):
        for c, d in zip(letters, arr.shape, strict=True):
            sizes[c] = d
    summed = sub.summed()
    out = np.empty(tuple(sizes[c] for c in sub.output), dtype=object)
    for idx in np.ndindex(out.shape):
        fixed = dict(zip(sub.output, idx, strict=True))
        terms = []
        for inner in itertools.product(*(range(sizes[c]) for c in summed)):
            at = {**fixed, **dict(zip(summed, inner, strict=True))}
            factors = [
                arr[tuple(at[c] for c in letters)]
                for letters, arr in zip(sub.inputs, arrays, strict=True)
            ]
            terms.append(sympy.Mul(*factors))
        out[idx] = sympy.Add(*terms)
    return obj(out)


def _fresh_letters(taken: str):
    for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        if c not in taken:
            yield c


def _letter_after(c: str, taken: str) -> str:
    """The first letter after `c` (in alphabetical order, wrapping) not in `taken`: the second
    index of a diagonal ii is j, as a textbook writes it."""
    letters = "abcdefghijklmnopqrstuvwxyz" if c.islower() else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    start = letters.index(c) + 1
    for d in letters[start:] + letters[:start]:
        if d not in taken:
            return d
    return next(_fresh_letters(taken))


def _einsum_vjp(n: Call, g: Expr, i: int) -> Expr:
    """d/dX_i of sum(G * einsum(s_1,...,s_k -> o)) = einsum(o, s_j (j != i) -> s_i) of G and the
    other operands: the subscripts swap places. A letter repeated in s_i (a diagonal, `ii->`)
    is split into two tied by an identity operand; a letter of s_i that appears nowhere else
    (summed within X_i alone) is spread by a ones operand."""
    sub = parse_subscripts(n.param("subscripts"), len(n.args))
    sizes = letter_sizes(sub, tuple(a.shape for a in n.args))
    target = sub.inputs[i]
    seen: set[str] = set()
    written = ""
    extra_subs: list[str] = []
    extra_ops: list[Expr] = []
    for c in target:
        if c in seen:
            d = _letter_after(c, "".join(sub.inputs) + sub.output + written)  # ii -> ij
            written += d
            extra_subs.append(c + d)
            extra_ops.append(call("eye", dims=(sizes[c],)))
        else:
            seen.add(c)
            written += c
    others = [s for k, s in enumerate(sub.inputs) if k != i]
    present = set(sub.output + "".join(others) + "".join(extra_subs))
    for c in dict.fromkeys(written):
        if c not in present:
            extra_subs.append(c)
            extra_ops.append(call("ones", dims=(sizes[c],)))
    spec = ",".join([sub.output, *others, *extra_subs]) + "->" + written
    ops = [g, *(a for k, a in enumerate(n.args) if k != i), *extra_ops]
    return call("einsum", *ops, subscripts=spec)


def _einsum_latex(n: Call, s) -> str:
    """Index notation: [Σ_d Q_{bhid} K_{bhjd}]_{bhij} (entry bhij of the result)."""
    sub = parse_subscripts(n.param("subscripts"), len(n.args))
    factors = []
    for letters, arg in zip(sub.inputs, n.args, strict=True):
        text = s(arg, 0)
        if not isinstance(arg, Var | Ref | Size):  # indices follow a name or a parenthesis
            text = rf"\left({text}\right)"
        factors.append(f"{text}_{{{letters}}}" if letters else text)
    body = " ".join(factors)
    summed = sub.summed()
    if summed:
        body = rf"\sum_{{{summed}}} {body}"
    if not sub.output:
        return body if not summed else rf"\left({body}\right)"
    return rf"\left[{body}\right]_{{{sub.output}}}"


class Einsum(Function):
    """einsum: one to three operands in a formula (more internally, for its own derivative)."""

    string_param = "subscripts"

    def build(self, args: tuple[Expr, ...], params: dict[str, Any]) -> Call:
        if not 1 <= len(args) <= MAX_INTERNAL_OPERANDS:
            raise EngineError(f"einsum() takes 1 to {MAX_OPERANDS} operands, got {len(args)}")
        unknown = set(params) - set(self.params)
        if unknown:
            raise EngineError(f"einsum() has no parameter '{sorted(unknown)[0]}'")
        shape = self.shape(tuple(a.shape for a in args), params)
        return Call(self.name, args, (("subscripts", params["subscripts"]),), shape)


register(
    Einsum(
        name="einsum",
        nargs=-1,
        shape=_einsum_shape,
        numpy=_np_einsum,
        sympy=_sym_einsum,
        latex=_einsum_latex,
        vjp=_einsum_vjp,
        params={"subscripts": None},
        doc='Einstein summation einsum("bhid,bhjd->bhij", Q, K) with explicit output letters',
    )
)
