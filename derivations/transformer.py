"""Note 7b: multi-head attention, the pre-LN transformer block, its backward pass, its costs."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import sympy

from engine.derive.core import derive
from engine.expr import Call, Expr
from engine.notes import Definition, Figure, Note, Reference, Section, Step
from engine.notes.symbols import param
from engine.parser import build_environment, parse_formula
from engine.printing.latex import latex_name, to_latex

# ---------------------------------------------------------------- the block

# The block is examples/transformer_block.toml, the file `llm-math derive --file` reads: one
# definition for the example, this note and the tests (tests/test_transformer_block.py,
# tests/test_export_block.py), so the note's backward pass is the one the example derives.
BLOCK_FILE = Path(__file__).resolve().parents[1] / "examples" / "transformer_block.toml"
_SPEC = tomllib.loads(BLOCK_FILE.read_text())
VARS: dict[str, str] = _SPEC["vars"]
SIZES: dict[str, str] = _SPEC["sizes"]
FORWARD: dict[str, str] = _SPEC["defs"]
LOSS = "sum(G * Y)"
WRT = ("Wq", "Wk", "Wv", "Wo", "W1", "W2", "g1", "b1", "g2", "b2", "X")


def backward_program(verify: bool = False):
    """The program `llm-math derive` prints for the block (verified when `verify`)."""
    return derive(LOSS, list(WRT), VARS, FORWARD, sizes=SIZES, verify=verify)


# Derived once, without the verifier: every line below becomes a checked step of the note
# (cached by the build), so the note prints exactly what `derive` prints.
PROGRAM = backward_program()
GRADIENT_NAMES = PROGRAM.gradient_names()
# The program's own text, line by line (`name = expr`, sizes named as derive names them).
_LINES = dict(line.split(" = ", 1) for line in PROGRAM.to_text().split("\n"))
BACKWARD_DEFS = {a.name: _LINES[a.name] for a in PROGRAM.steps}
GRADIENTS = {w: _LINES[GRADIENT_NAMES[w]] for w in WRT}
# Other formulas the checked steps use (small helpers; not part of the block).
EXTRA_VARS = {"Z": "real[h, n, dh]", "Wh": "real[h, dh, d]"}


def program_text() -> str:
    """The note's backward section as `llm-math derive` text (compared with derive in tests)."""
    lines = [f"{name} = {BACKWARD_DEFS[name]}" for name in BACKWARD_DEFS]
    lines += [f"{GRADIENT_NAMES[w]} = {GRADIENTS[w]}" for w in WRT]
    return "\n".join(lines)


# ---------------------------------------------------------------- layout of long lines

LONG_LINE = 120  # LaTeX characters: a longer sum is set one term per line


def terms(e: Expr) -> list[tuple[str, Expr]]:
    """The top-level terms of a sum `a + b - c` as (sign, term), left to right."""
    if isinstance(e, Call) and e.fn in ("add", "sub"):
        a, b = e.args
        return [*terms(a), ("+" if e.fn == "add" else "-", b)]
    return [("+", e)]


def split_top_level(latex: str) -> list[str]:
    """`latex` cut before each ` + ` / ` - ` outside every bracket: `a + b - c` gives
    [`a`, `+ b`, `- c`]; the pieces joined with spaces are `latex` again."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(latex):
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif depth == 0 and latex[i : i + 3] in (" + ", " - ") and i > start:
            pieces.append(latex[start:i])
            start = i + 1
    return [*pieces, latex[start:]]


def _closing_brace(text: str, start: int) -> int:
    """The index of the `}` that closes the `{` at `start`."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return i
    raise ValueError("unbalanced braces")


def broken_fraction(piece: str) -> str:
    """A sum's term `[sign] \\frac{a - b - c}{w}` with its numerator set one term per line
    (layout only: the same LaTeX with line breaks); any other piece unchanged."""
    head = re.match(r"([+-] )?\\frac\{", piece)
    if head is None:
        return piece
    sign = head.group(1) or ""
    start = len(sign) + len("\\frac")
    end = _closing_brace(piece, start)
    if not piece[end + 1 :].startswith("{") or _closing_brace(piece, end + 1) != len(piece) - 1:
        return piece
    parts = split_top_level(piece[start + 1 : end])
    if len(parts) == 1:
        return piece
    lines = " \\\\ & ".join(parts)
    return f"{sign}\\frac{{\\begin{{aligned}} & {lines} \\end{{aligned}}}}{piece[end + 1 :]}"


def broken_latex(e: Expr) -> str:
    """`to_latex(e)` with a long sum set one term per line, and a long fraction's numerator too:
    the printer's own text, cut at its top-level signs (layout only; left whole unless the cuts
    match the sum's terms)."""
    whole = to_latex(e)
    pieces = split_top_level(whole)
    if len(whole) <= LONG_LINE or len(pieces) == 1 or len(pieces) != len(terms(e)):
        return whole
    pieces = [broken_fraction(p) if len(p) > LONG_LINE else p for p in pieces]
    return "\\begin{aligned}[t] & " + " \\\\\n& ".join(pieces) + " \\end{aligned}"


def program_block(names: tuple[str, ...]) -> str:
    """Prose display math of the program lines `names`, printed as `Program.to_latex` prints
    them, one term per line where a line is long."""
    from engine.printing.size_names import named_sizes  # `d`, not `dh*h`, as derive prints

    exprs = {a.name: a.expr for a in PROGRAM.steps}
    with named_sizes(PROGRAM.env.size_rels):
        rows = [f"{latex_name(x)} &\\mathrel{{:=}} {broken_latex(exprs[x])}" for x in names]
    return "$$\n\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}\n$$"


def gradient_step(w: str) -> Step:
    """The checked claim that the derived gradient of `w` is the gradient of the loss, printed
    as `Program.to_latex` prints the gradient (one term per line where it is long)."""
    from engine.printing.size_names import named_sizes  # `d`, not `dh*h`, as derive prints

    lhs = to_latex(parse_formula(f"grad({LOSS}, {w})", _shape_env()))
    with named_sizes(PROGRAM.env.size_rels):
        rhs = broken_latex(dict(PROGRAM.gradients)[w])
    return Step(
        f"grad({LOSS}, {w}) == {GRADIENTS[w]}",
        WHY[w],
        label=f"grad-{w.lower()}",
        display=f"{lhs} = {rhs}",
    )


WHY = {
    "Wq": "heads merged; attention note [[attention:local-matmul-right]]",
    "Wk": "as for $W_Q$, with $\\mathrm{d}K$",
    "Wv": "as for $W_Q$, with $\\mathrm{d}V$",
    "Wo": "attention note [[attention:local-matmul-right]]",
    "W1": "attention note [[attention:local-matmul-right]]",
    "W2": "attention note [[attention:local-matmul-right]]",
    "g1": "summed over tokens",
    "b1": "summed over tokens",
    "g2": "summed over tokens",
    "b2": "summed over tokens",
    "X": "normalization note [[normalization:ln-backward-rows]]",
}

# ---------------------------------------------------------------- counting


def _shape_env():
    return build_environment({**VARS, **EXTRA_VARS}, {**FORWARD, **BACKWARD_DEFS}, SIZES)


def _numel(shape: tuple, sizes: Mapping[str, int]) -> int:
    """Entries of a symbolic shape at concrete sizes (a size may be a product `dh*h`)."""
    out = 1
    for dim in shape:
        value = 1
        for factor in str(dim).split("*"):
            value *= int(factor) if factor.isdigit() else int(sizes[factor])
        out *= value
    return out


def _concrete(values: Mapping[str, Any]) -> dict[str, int]:
    h, dh = int(values["h"]), int(values["dh"])
    return {"h": h, "dh": dh, "d": h * dh, "m": 4 * h * dh, "n": int(values.get("n", 1))}


WEIGHTS = ("Wq", "Wk", "Wv", "Wo", "W1", "W2")


def weight_count(values: Mapping[str, Any]) -> sympy.Expr:
    """Entries of the block's weight matrices, from their declared shapes (MLP width m = 4d)."""
    env, sizes = _shape_env(), _concrete(values)
    return sympy.Integer(sum(_numel(env.vars[w].shape, sizes) for w in WEIGHTS))


def forward_multiply_adds(values: Mapping[str, Any]) -> sympy.Expr:
    """Multiply-adds of every matrix product in the forward definitions (each counted once)."""
    env, sizes = _shape_env(), _concrete(values)
    seen: set[int] = set()
    total = 0

    def walk(e: Expr) -> None:
        if id(e) in seen:
            return
        seen.add(id(e))
        if isinstance(e, Call) and e.fn == "matmul":
            a, b = e.args
            # out[..., i, j] = sum_k a[..., i, k] b[..., k, j]: one multiply-add per (out, k)
            nonlocal total
            total += _numel(e.shape, sizes) * _numel(a.shape[-1:], sizes)
        for c in e.children():
            walk(c)

    walk(parse_formula("Y", env))
    return sympy.Integer(total)


def kv_cache_bytes(values: Mapping[str, Any]) -> sympy.Expr:
    """Bytes of the cached K and V of L layers at context n, from the shapes of K and V."""
    env, sizes = _shape_env(), _concrete(values)
    per_layer = sum(_numel(env.defs[name].shape, sizes) for name in ("K", "V"))
    return sympy.Integer(int(values["L"]) * per_layer * int(values["b"]))


h_, dh_, n_, L_, b_ = (
    param("h", "integer"),
    param("dh", "integer"),
    param("n", "integer"),
    param("L", "integer"),
    param("b", "integer"),
)

# The example model of the prose: LLaMA-2 7B's shape [@llama2].
EXAMPLE = {"L": 32, "h": 32, "dh": 128, "n": 4096, "b": 2}


def _example_numbers() -> dict[str, str]:
    """The prose's numbers, from the same counting functions the checked steps use."""
    ex = {k: sympy.Integer(v) for k, v in EXAMPLE.items()}
    d = EXAMPLE["h"] * EXAMPLE["dh"]
    per_block = int(weight_count(ex))
    kv = int(kv_cache_bytes(ex))
    per_token = int(kv_cache_bytes({**ex, "n": sympy.Integer(1)}))
    flops = 2 * int(forward_multiply_adds(ex)) / EXAMPLE["n"]
    return {
        "d": f"{d}",
        "per_block": f"{per_block / 1e6:.0f}",
        "all_blocks": f"{EXAMPLE['L'] * per_block / 1e9:.2f}",
        "kv_gib": f"{kv / 2**30:.0f}",
        "kv_token_kib": f"{per_token / 2**10:.0f}",
        "flops_token": f"{flops / 1e6:.0f}",
        "flops_share": f"{100 * 4 * EXAMPLE['n'] * d / flops:.0f}",
    }


NUMBERS = _example_numbers()

# ---------------------------------------------------------------- the figure


def draw_mask(ctx: Any):
    """The causal attention weights of every head, evaluated from the verified definition P."""
    rng = np.random.default_rng(0)
    n, h, dh = 8, 3, 4
    d = h * dh
    values = {
        "X": rng.standard_normal((n, d)),
        "Wq": rng.standard_normal((d, d)) / np.sqrt(d),
        "Wk": rng.standard_normal((d, d)) / np.sqrt(d),
        "g1": np.ones(d),
        "b1": np.zeros(d),
        "eps": 1e-5,
    }
    weights = np.asarray(ctx.evaluate(ctx.formula("P"), values, {"n": n, "h": h, "dh": dh}))
    fig = ctx.figure(6.6, 2.3)
    axes = fig.subplots(1, h)
    for k, ax in enumerate(axes):
        ax.imshow(weights[k], cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_title(f"head {k + 1}", fontsize=9)
        ax.set_xlabel("key $j$")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel("query $i$")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the note

NOTE = Note(
    name="transformer",
    order=7,
    title="Multi-head attention and the transformer block",
    summary=(
        "Multi-head attention with its projections $W_Q, W_K, W_V, W_O$, written with "
        "reshapes; the causal mask; the complete backward pass of a pre-LN transformer "
        "block, which is exactly the program `llm-math derive` prints for it; and the "
        "block's parameters, FLOPs per token and KV-cache memory."
    ),
    vars={**VARS, **EXTRA_VARS},
    defs={**FORWARD, **BACKWARD_DEFS},
    sizes=SIZES,
    params={
        "h": "integer",
        "dh": "integer",
        "n": "integer",
        "L": "integer",
        "b": "integer",
    },
    references=(
        Reference(
            "vaswani",
            "A. Vaswani et al., Attention Is All You Need, NeurIPS 2017.",
            "https://arxiv.org/abs/1706.03762",
        ),
        Reference(
            "gpt2",
            "A. Radford et al., Language Models are Unsupervised Multitask Learners, 2019.",
            "https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf",
        ),
        Reference(
            "kaplan",
            "J. Kaplan et al., Scaling Laws for Neural Language Models, 2020.",
            "https://arxiv.org/abs/2001.08361",
        ),
        Reference(
            "llama2",
            "H. Touvron et al., Llama 2: Open Foundation and Fine-Tuned Chat Models, 2023.",
            "https://arxiv.org/abs/2307.09288",
        ),
        Reference(
            "annotated",
            "A. Rush et al., The Annotated Transformer, 2018 (updated 2022).",
            "https://nlp.seas.harvard.edu/annotated-transformer/",
        ),
    ),
    sections=(
        Section(
            "Notation",
            "A block reads $n$ tokens of width $d$, the rows of $X \\in \\mathbb{R}^{n "
            "\\times d}$. It has $h$ heads of width $d_h$, with $d = h\\, d_h$, and an MLP "
            "of hidden width $m$ ($m = 4d$ in the counts). $W_Q, W_K, W_V, W_O \\in "
            "\\mathbb{R}^{d \\times d}$ are printed $\\mathrm{Wq}, \\mathrm{Wk}, \\mathrm{Wv}, "
            "\\mathrm{Wo}$ in the formulas, and $W_1 \\in \\mathbb{R}^{d \\times m}$, $W_2 "
            "\\in \\mathbb{R}^{m \\times d}$ are the MLP's. $g_1, b_1, g_2, b_2$ are the gains "
            "and biases of the two LayerNorms, $\\epsilon$ their constant. $G$ is the upstream "
            "gradient $\\partial L / \\partial Y$; as in the attention note every gradient is "
            "claimed for the linear surrogate $\\sum (G \\odot Y)$, a statement about every "
            "loss at once. $\\mathrm{d}Z$ is the gradient of that surrogate with respect to "
            "$Z$. Three-dimensional arrays are indexed (head, token, feature); "
            "$\\operatorname{reshape}$ splits the feature axis into (head, feature) and "
            "$\\operatorname{swapaxes}$ moves the head axis first. Matrix products of "
            "three-dimensional arrays act head by head.",
        ),
        Section(
            "Projections and heads",
            "One attention head of the attention note works on given $Q, K, V$. In a "
            "transformer they are linear maps of the (normalized) input, and $h$ heads "
            "run side by side, each in its own $d_h$-dimensional slice of the "
            "$d$ projected features [@vaswani]. With $H_1$ the normalized input (below), "
            "the queries, keys and values of all heads are",
            Definition("Q"),
            Definition("K"),
            Definition("V"),
            "Splitting the product into heads is the same as splitting the weight matrix: "
            "head $k$ uses the columns $k d_h, \\dots, (k+1) d_h - 1$ of $W_Q$,",
            Step(
                "Q == H1 @ swapaxes(reshape(Wq, (d, h, dh)), 0, 1)",
                "head $k$: columns $k d_h \\dots (k+1) d_h - 1$",
                label="heads-split-weights",
            ),
            "Each head is then the scaled dot-product attention of the attention note, "
            "[[attention:rows-sum-to-one]],"
            " with its own $d_h$-dimensional queries and keys, so the scale is "
            "$1 / \\sqrt{d_h}$ (the attention note's $d$ is a head's width):",
            Definition("S"),
            Definition("P"),
            Definition("O"),
            "$O$ concatenates the heads' outputs $P V$ feature-wise back to width $d$, and "
            "$W_O$ mixes them. Concatenating and multiplying is the same as giving each "
            "head its own $d_h \\times d$ slice of $W_O$ and adding the heads' "
            "contributions. For any per-head outputs $Z$ and the slices $W_h$ of $W_O$:",
            Step(
                "reshape(swapaxes(Z, 0, 1), (n, d)) @ reshape(Wh, (d, d)) == sum(Z @ Wh, axis=0)",
                "sum split by head",
                label="heads-sum",
            ),
            "So multi-head attention is a sum of $h$ independent low-rank attention "
            "layers, each of which reads through a $d \\times d_h$ map and writes through a "
            "$d_h \\times d$ map. Implementations compute all heads with one $d \\times d$ "
            "product and a reshape, as above [@annotated].",
        ),
        Section(
            "The causal mask",
            "The mask of the attention note, $M_{ij} = -\\infty$ for $j > i$, is written "
            "with the lower-triangular 0/1 matrix $\\operatorname{tril}_n$: "
            "$\\operatorname{where}(\\operatorname{tril}_n, S, -\\infty)$ keeps the scores "
            "of the visible keys and sets the others to $-\\infty$, which the softmax turns "
            "into weight 0 (its factor $e^{-\\infty} = 0$, the attention note's "
            "[[attention:mask-multiplies]]), so the future receives no weight in any head "
            "(the attention note's [[attention:future-gets-nothing]], entry by entry). "
            "Checked for every head at once, every row is still a distribution:",
            Step(
                "sum(P, axis=-1) == ones(h, n)",
                "attention note [[attention:prefix-sums-to-one]]",
                label="mask-rows",
            ),
            Figure(
                "mask",
                "The masked attention weights $P$ of three heads ($n = 8$, $d_h = 4$) for a "
                "random input, evaluated from the note's definition of $P$: each row is a "
                "distribution over the keys up to the query, the upper triangle is 0.",
                draw_mask,
                label="fig-mask",
            ),
        ),
        Section(
            "The pre-LN transformer block",
            "GPT-2 and later LLMs normalize before each sub-layer and add its output back "
            "to the residual stream [@gpt2]. The block is: LayerNorm, attention, residual; "
            "LayerNorm, MLP, residual:",
            Definition("s1"),
            Definition("A1"),
            Definition("H1"),
            Definition("X2"),
            Definition("s2"),
            Definition("A2"),
            Definition("H2"),
            Definition("U"),
            Definition("Y"),
        ),
        Section(
            "The backward pass",
            "The lines below are the program `llm-math derive` prints for the loss "
            f"$\\sum (G \\odot Y)$ with respect to all {len(WRT)} inputs of the block; the "
            "note is generated from it, so the note and the tool cannot disagree. It is a "
            "reverse sweep: each line applies the local rule of one forward line. The MLP "
            "comes first, with the GELU derivative of the normalization note's "
            "[[normalization:gelu-derivative]]:",
            program_block(("dU", "dH2", "dA2")),
            "The second LayerNorm's backward pass, the normalization note's "
            "[[normalization:ln-backward-rows]] written "
            "out, plus the residual path $G$:",
            program_block(("dX2",)),
            "Attention, batched over heads: $\\mathrm{d}O$ is split into heads exactly as "
            "the forward pass split $H_1 W_V$, and each head then follows "
            "the attention note's "
            "[[attention:grad-v]], [[attention:local-softmax]] (masked entries get no "
            "gradient, since their weight is 0) and [[attention:grad-q]], "
            "[[attention:grad-k]] with $1/\\sqrt{d_h}$:",
            program_block(("dO", "dP", "dS", "dK", "dQ", "dV")),
            "The three heads' gradients are merged back to $n \\times d$ and flow into "
            "$H_1$ through the three projections:",
            program_block(("dH1", "dA1")),
            "Each gradient below is checked against the gradient of the composed forward "
            "computation, not against the local rules:",
            *(gradient_step(w) for w in WRT),
            "Every weight gradient has the form (input of the layer)$^\\top$ (gradient at "
            "its output): for $W_Q, W_K, W_V$ the heads' gradients are merged back to "
            "$n \\times d$ first, so one $d \\times d$ product serves all heads.",
        ),
        Section(
            "Parameters, FLOPs and the KV cache",
            "**Parameters.** Counting the entries of the declared weight shapes with "
            "$m = 4d$ (the steps below count them from the note's declarations at "
            "$h, d_h = 1, \\dots, 6$):",
            Step(
                (weight_count, 12 * (h_ * dh_) ** 2),
                "$4 d^2$ for $W_Q, W_K, W_V, W_O$ and $2 \\cdot d \\cdot 4d$ for $W_1, W_2$",
                label="param-count",
                display=r"N_{\text{block}} = 4 d^2 + 2 \cdot 4 d^2 = 12\, d^2",
            ),
            "ignoring the $4d$ LayerNorm gains and biases (and any biases of the "
            f"projections). For the shape of LLaMA-2 7B [@llama2], $d = {NUMBERS['d']}$, a "
            f"block has {NUMBERS['per_block']} million weights and {EXAMPLE['L']} blocks "
            f"{NUMBERS['all_blocks']} billion (the rest of the 7B are the embeddings, and "
            "LLaMA's gated MLP has three matrices of width about $\\frac{8}{3} d$, about the "
            "same count).",
            "**FLOPs.** Counting one multiply-add per entry of each product and each "
            "summed index, over every matrix product in the forward definitions:",
            Step(
                (forward_multiply_adds, 12 * n_ * (h_ * dh_) ** 2 + 2 * n_**2 * h_ * dh_),
                "weights; $Q K^\\top$ and $P V$",
                label="flop-count",
                display=r"\text{multiply-adds} = 12\, n d^2 + 2\, n^2 d",
            ),
            "A multiply-add is two FLOPs, so the forward pass costs $24 d^2 + 4 n d$ FLOPs "
            "per token: $2 N_{\\text{block}}$, the rule of [@kaplan], plus the attention "
            "terms (which [@kaplan] count for $Q K^\\top$ only, as $2 n d$); the "
            "backward pass costs about twice the forward. The causal mask could halve the "
            "$n^2$ term, "
            f"which the count above does not exploit. For the example at $n = {EXAMPLE['n']}$ "
            f"that is {NUMBERS['flops_token']} MFLOPs per token and block, "
            f"{NUMBERS['flops_share']}% of it in the attention terms.",
            "**The KV cache.** Generating one token at a time, a model keeps the keys and "
            "values of all earlier tokens of every layer instead of recomputing them. For "
            "$L$ layers, a context of $n$ tokens and $b$ bytes per value, counting from "
            "the shapes of $K$ and $V$:",
            Step(
                (kv_cache_bytes, 2 * L_ * h_ * n_ * dh_ * b_),
                "$K$ and $V$ are $h \\times n \\times d_h$ in each layer",
                label="kv-cache",
                display=r"\text{KV bytes} = 2\, L\, h\, d_h\, n\, b",
            ),
            f"For the example ($L = {EXAMPLE['L']}$, $h = {EXAMPLE['h']}$, "
            f"$d_h = {EXAMPLE['dh']}$, 16-bit values, $b = {EXAMPLE['b']}$) that is "
            f"{NUMBERS['kv_token_kib']} KiB per token and {NUMBERS['kv_gib']} GiB for one "
            f"sequence of {EXAMPLE['n']} tokens, which is why long contexts and large "
            "batches are limited by memory, and why grouped-query attention shares each "
            "key and value head between several query heads (dividing $h$ in this formula).",
        ),
    ),
)
