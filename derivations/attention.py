"""Note 3: scaled dot-product attention, the 1/sqrt(d) scale, the causal mask, the backward pass."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy

from engine.notes import Definition, Figure, Named, Note, Reference, Section, Step
from engine.notes.symbols import array, indices, param, size

# ---------------------------------------------------------------- why 1/sqrt(d)

d = param("d", "integer")


def expect(poly: sympy.Expr, variables: list[sympy.Symbol]) -> sympy.Expr:
    """E[poly] for independent variables with E[x] = 0 and E[x^2] = 1 (nothing else assumed).

    Independence factorizes the expectation of a monomial into a product of moments, so only
    the first two moments can enter; a monomial needing a higher moment is refused.
    """
    moments = {0: sympy.Integer(1), 1: sympy.Integer(0), 2: sympy.Integer(1)}
    total = sympy.Integer(0)
    for powers, coeff in sympy.Poly(sympy.expand(poly), *variables).terms():
        if any(k not in moments for k in powers):
            raise ValueError("needs a moment above the second")
        total += coeff * sympy.Mul(*(moments[k] for k in powers))
    return total


def _query_key_score(values: Mapping[str, Any], scale: sympy.Expr = sympy.S.One):
    """q.k * scale for a d-dimensional query and key, and the 2d entries it uses."""
    n = int(values["d"])
    q = sympy.symbols(f"q0:{n}", real=True)
    k = sympy.symbols(f"k0:{n}", real=True)
    return sum(qi * ki for qi, ki in zip(q, k, strict=True)) * scale, [*q, *k]


def score_mean(values: Mapping[str, Any]) -> sympy.Expr:
    """E[q.k] at the given d."""
    s, xs = _query_key_score(values)
    return expect(s, xs)


def score_variance(values: Mapping[str, Any]) -> sympy.Expr:
    """Var(q.k) = E[(q.k)^2] - E[q.k]^2 at the given d."""
    s, xs = _query_key_score(values)
    return expect(s**2, xs) - expect(s, xs) ** 2


def scaled_score_variance(values: Mapping[str, Any]) -> sympy.Expr:
    """Var(q.k / sqrt(d)) at the given d."""
    s, xs = _query_key_score(values, 1 / sympy.sqrt(values["d"]))
    return sympy.expand(expect(s**2, xs) - expect(s, xs) ** 2)


# ---------------------------------------------------------------- the causal mask (index form)

n = size("n")
s_ = array("s")
i, j, k = indices("i j k")


class Visible(sympy.Function):
    """The Iverson bracket [b <= a]: 1 when key b is visible from query a, else 0."""

    @classmethod
    def eval(cls, a, b):
        if a.is_Integer and b.is_Integer:
            return sympy.S.One if b <= a else sympy.S.Zero
        return None

    def _latex(self, printer) -> str:
        a, b = (printer._print(x) for x in self.args)
        return rf"[\,{b} \le {a}\,]"


def gate(a: sympy.Expr, b: sympy.Expr) -> Named:
    """c_ab = exp(M_ab): 1 when key b is visible from query a (b <= a), else 0."""
    return Named("c", Visible(a, b), a, b)


def masked_weight(a: sympy.Expr, b: sympy.Expr) -> Named:
    """a_ab: row a of softmax(S + M) with the causal mask M in {0, -inf}."""
    body = (
        gate(a, b)
        * sympy.exp(s_[a, b])
        / sympy.Sum(gate(a, k) * sympy.exp(s_[a, k]), (k, 0, n - 1))
    )
    return Named("a", body, a, b)


def prefix_softmax(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    """exp(s_ab) / sum over the visible prefix k <= a of exp(s_ak)."""
    return sympy.exp(s_[a, b]) / sympy.Sum(sympy.exp(s_[a, k]), (k, 0, a))


# ---------------------------------------------------------------- attention dilution

DILUTION = "exp(Delta) / (exp(Delta) + n - 1)"
NEEDED_SCORE = "log((n - 1) * w / (1 - w))"


def draw_dilution(ctx: Any):
    """Weight of the one relevant token among n, for a few score gaps Delta; and the gap
    needed."""
    lhs, rhs = ctx.step("dilution")
    needed = ctx.formula(NEEDED_SCORE)
    fig = ctx.figure(width=7.0, height=3.0)
    left, right = fig.subplots(1, 2)
    ns = np.unique(np.round(np.logspace(0, 6, 160)).astype(int))
    dots = (2, 10, 100, 1000, 10000)
    for s in (2.0, 4.0, 6.0, 8.0):
        curve = [float(ctx.evaluate(rhs, {"Delta": s}, {"n": int(m)})) for m in ns]
        (line,) = left.plot(ns, curve, label=f"$\\Delta = {s:g}$")
        exact = []
        for m in dots:
            t = np.zeros(m)
            t[0] = 1.0
            exact.append(float(ctx.evaluate(lhs, {"Delta": s, "t": t})))
        left.plot(dots, exact, "o", color=line.get_color(), markersize=3.5)
    left.set_xscale("log")
    left.set_xlabel("context length $n$")
    left.set_ylabel("weight on the relevant token")
    left.set_title("Dilution: $e^{\\Delta} / (e^{\\Delta} + n - 1)$")
    left.legend(loc="upper right")
    grid = ns[ns >= 2]
    for w in (0.5, 0.9, 0.99):
        needed_s = [float(ctx.evaluate(needed, {"w": w}, {"n": int(m)})) for m in grid]
        right.plot(grid, needed_s, label=f"weight {w:g}")
    right.set_xscale("log")
    right.set_xlabel("context length $n$")
    right.set_ylabel("score gap $\\Delta$ needed")
    right.set_title(r"$\Delta = \log(n - 1) + \log\frac{w}{1 - w}$")
    right.legend(loc="upper left")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the note

NOTE = Note(
    name="attention",
    order=3,
    title="Attention, one head, derived in full",
    summary=(
        "Scaled dot-product attention for a single head, from the ground up (projections, "
        "heads and the block are the subject of the transformer note): why the scores are "
        "divided by "
        "$\\sqrt{d}$, how the causal mask hides the future, the complete backward pass "
        "$\\mathrm{d}V, \\mathrm{d}P, \\mathrm{d}S, \\mathrm{d}Q, \\mathrm{d}K$ in matrix "
        "form, and how a relevant token's weight is diluted as the context grows."
    ),
    vars={
        "Q": "real[n, d]",
        "K": "real[n, d]",
        "V": "real[n, d]",
        "dO": "real[n, d]",
        "W": "real[n, n]",
        "G": "real[n, n]",
        "Z": "real[n, n]",
        "M": "real[n, n]",
        "t": "onehot[n]",
        "Delta": "real",
        "w": "unit",
    },
    defs={
        "S": "Q @ K.T / sqrt(d)",
        "P": "softmax(S)",
        "O": "P @ V",
        "dP": "dO @ V.T",
        "dS": "P * (dP - sum(P * dP, axis=-1, keepdims=True))",
        "A": "softmax(Z)",
    },
    arrays={"s": "real[n, n]"},
    indices={"i": "n", "j": "n"},
    params={"d": "integer"},
    references=(
        Reference(
            "vaswani",
            "A. Vaswani et al., Attention Is All You Need, NeurIPS 2017.",
            "https://arxiv.org/abs/1706.03762",
        ),
        Reference(
            "flash",
            "T. Dao, D. Y. Fu, S. Ermon, A. Rudra, C. Re, FlashAttention: Fast and "
            "Memory-Efficient Exact Attention with IO-Awareness, NeurIPS 2022.",
            "https://arxiv.org/abs/2205.14135",
        ),
        Reference(
            "chiang",
            "D. Chiang, P. Cholak, Overcoming a Theoretical Limitation of Self-Attention, "
            "ACL 2022.",
            "https://aclanthology.org/2022.acl-long.527",
        ),
        Reference(
            "lost",
            "N. F. Liu et al., Lost in the Middle: How Language Models Use Long Contexts, "
            "TACL 2024.",
            "https://arxiv.org/abs/2307.03172",
        ),
    ),
    sections=(
        Section(
            "Intuition",
            "Attention lets every position of a sequence gather information from the others. "
            "Position $i$ asks a question, its *query* $q_i$; every position $j$ advertises what "
            "it holds with a *key* $k_j$ and offers a *value* $v_j$. The match between question "
            "and advertisement is the dot product $q_i \\cdot k_j$. A softmax turns the $n$ "
            "match scores of row $i$ into weights that are positive and sum to one, and the "
            "output is the weighted average of the values. Attention is a soft, differentiable "
            "dictionary lookup: instead of the value of the single best-matching key it returns "
            "a blend, weighted by how well each key matches [@vaswani].",
            "Four questions organize this note. Why are the scores divided by $\\sqrt{d}$? How "
            "does a causal language model stop a position from looking at the future? How does "
            "the gradient flow back through the softmax to the queries, keys and values? And "
            "what happens to the weight of one relevant token when the context grows long? The "
            "last question connects the formula to a failure mode of LLMs: a fact that is in "
            "the context but drowned out by everything around it.",
        ),
        Section(
            "Formulation",
            "Stack the $n$ queries, keys and values of one attention head as the rows of "
            "$Q, K, V \\in \\mathbb{R}^{n \\times d}$, where $d$ is the head dimension. The "
            "scores, the attention weights and the output are",
            Definition("S"),
            Definition("P"),
            Definition("O"),
            "The softmax acts on each row: $P_{ij} = e^{S_{ij}} / \\sum_k e^{S_{ik}}$. Row $i$ "
            "of $P$ is therefore a probability distribution over the positions that query $i$ "
            "can read, and row $i$ of $O$ is the corresponding average of the value rows.",
            Step(
                "sum(P, axis=-1) == ones(n)",
                "each row is $e^{S_{ij}}$ divided by its own row sum",
                label="rows-sum-to-one",
            ),
        ),
        Section(
            "Why divide by the square root of d",
            "Take one query $q$ and one key $k$ whose $d$ entries are independent, with mean 0 "
            "and variance 1. This is roughly the situation at initialization, and it is what "
            "the normalization layers in front of attention aim to keep. The raw score "
            "$q \\cdot k = \\sum_{i=1}^{d} q_i k_i$ is a sum of $d$ independent terms, each with "
            "mean $\\mathbb{E}[q_i]\\,\\mathbb{E}[k_i] = 0$ and variance "
            "$\\mathbb{E}[q_i^2]\\,\\mathbb{E}[k_i^2] = 1$. The expectations below are computed "
            "by expanding the polynomial and replacing every monomial by its expectation, which "
            "independence factorizes into moments $\\mathbb{E}[x] = 0$, "
            "$\\mathbb{E}[x^2] = 1$. No other moment enters, so the results hold for every such "
            "distribution, not only the Gaussian. They are checked at $d = 1, \\dots, 6$.",
            Step(
                (score_mean, sympy.Integer(0)),
                "linearity, and $\\mathbb{E}[q_i k_i] = \\mathbb{E}[q_i]\\,\\mathbb{E}[k_i] = 0$",
                label="score-mean",
                display=r"\mathbb{E}\Big[\sum_{i=1}^{d} q_i k_i\Big] = 0",
            ),
            Step(
                (score_variance, d),
                "cross terms vanish; each square has mean 1",
                label="score-variance",
                display=r"\operatorname{Var}\Big(\sum_{i=1}^{d} q_i k_i\Big) = d",
            ),
            Step(
                (scaled_score_variance, sympy.Integer(1)),
                "$\\operatorname{Var}(c X) = c^2 \\operatorname{Var}(X)$ with $c = 1/\\sqrt{d}$",
                label="scaled-variance",
                display=(
                    r"\operatorname{Var}\Big(\frac{1}{\sqrt{d}} \sum_{i=1}^{d} q_i k_i\Big) = 1"
                ),
            ),
            "Without the scale, scores have standard deviation $\\sqrt{d}$: 8 for $d = 64$, "
            "about 11 for $d = 128$. Scores that differ by several standard deviations make the "
            "softmax practically one-hot (a gap of 8 already means a weight ratio "
            "$e^8 \\approx 3000$), and a one-hot softmax has a vanishing Jacobian "
            "$\\operatorname{diag}(p) - p p^\\top$, so almost no gradient reaches the queries "
            "and keys and attention stops learning. Dividing by $\\sqrt{d}$ gives unit-variance "
            "scores at any head dimension, so training starts with the softmax in its "
            "responsive range. This is the reason given for the scale in [@vaswani].",
        ),
        Section(
            "The causal mask",
            "A language model predicts token $i + 1$ from tokens $1, \\dots, i$. In training "
            "all positions are processed at once, so without a mask position $i$ could simply "
            "read the token it is asked to predict. The mask is a matrix $M$ added to the "
            "scores before the softmax, with $M_{ij} = 0$ where key $j$ is visible from query "
            "$i$ ($j \\le i$) and $M_{ij} = -\\infty$ (in practice a very negative number) where "
            "it lies in the future ($j > i$). Adding $M$ multiplies each unnormalized weight by "
            "$e^{M_{ij}}$ before the row is renormalized:",
            Step(
                "softmax(Z + M) == exp(M) * exp(Z) / sum(exp(M) * exp(Z), axis=-1, keepdims=True)",
                "$e^{a + b} = e^a e^b$, row by row",
                label="mask-multiplies",
            ),
            "With $e^0 = 1$ and $e^{-\\infty} = 0$ the factor $c_{ij} = e^{M_{ij}}$ is a gate: "
            "1 on the visible prefix, 0 on the future. In index notation, with scores $s_{ij}$ "
            "and the masked weights $a_{ij}$ (rows and positions numbered from 0 in the checks, "
            "which try every $i, j$ at $n = 2, 3, 4$):",
            Definition(gate(i, j), Visible(i, j)),
            Definition(
                masked_weight(i, j),
                gate(i, j)
                * sympy.exp(s_[i, j])
                / sympy.Sum(gate(i, k) * sympy.exp(s_[i, k]), (k, 0, n - 1)),
            ),
            Step(
                (masked_weight(i, j), gate(i, j) * prefix_softmax(i, j)),
                "$c_{ik} = 0$ for $k > i$ removes the future from the denominator",
                label="prefix-softmax",
                display=r"a_{ij} = c_{ij} \, \frac{e^{s_{ij}}}{\sum_{k \le i} e^{s_{ik}}}",
            ),
            Step(
                (sympy.Sum(masked_weight(i, j), (j, 0, i)), sympy.Integer(1)),
                "by [[prefix-softmax]] the numerators add up to the denominator",
                label="prefix-sums-to-one",
                display=r"\sum_{j \le i} a_{ij} = 1",
            ),
            Step(
                (sympy.Sum(masked_weight(i, j), (j, i + 1, n - 1)), sympy.Integer(0)),
                "$c_{ij} = 0$ for $j > i$",
                label="future-gets-nothing",
                display=r"\sum_{j > i} a_{ij} = 0",
            ),
            "So row $i$ of the masked attention is exactly the softmax over the visible prefix "
            "$1, \\dots, i$, and the future receives no weight at all. The first row attends "
            "only to itself. Implementations often write a large negative finite constant "
            "rather than $-\\infty$ ($-10^9$ is common; some use the most negative finite "
            "number of the floating-point type): after the row's maximum is subtracted, "
            "$e^{M_{ij}}$ underflows to 0 just the same, and a row that is masked everywhere "
            "(padding can cause one) gives a uniform row instead of $0/0$.",
        ),
        Section(
            "The backward pass",
            "Training needs the gradients of the loss $L$ with respect to $Q$, $K$ and $V$. "
            "Attention is one layer inside a network, so backpropagation hands it the upstream "
            "gradient $\\mathrm{d}O = \\partial L / \\partial O$, an $n \\times d$ matrix. By "
            "the chain rule, the gradient of $L$ with respect to anything before $O$ equals the "
            "gradient of the linear surrogate $\\sum_{il} \\mathrm{d}O_{il} O_{il}$ with "
            "$\\mathrm{d}O$ held fixed. Every claim below is about that surrogate with "
            "$\\mathrm{d}O$ a free matrix, which makes it a statement about every loss at once. "
            "The forward graph is $S \\to P \\to O$; we walk it backwards one node at a time, "
            "checking each local rule for generic inputs, and then check the assembled "
            "gradients end to end.",
            "**Through $O = P V$.** For a product $W V$ with upstream gradient $\\mathrm{d}O$, "
            "each entry $W_{ij}$ meets $V_{jl}$ in output $(i, l)$, and each $V_{jl}$ meets "
            "$W_{ij}$:",
            Step(
                "grad(sum(dO * (W @ V)), W) == dO @ V.T",
                "$\\partial (W V)_{il} / \\partial W_{ij} = V_{jl}$",
                label="local-matmul-left",
            ),
            Step(
                "grad(sum(dO * (W @ V)), V) == W.T @ dO",
                "$\\partial (W V)_{il} / \\partial V_{jl} = W_{ij}$",
                label="local-matmul-right",
            ),
            "With $W = P$ this gives $\\mathrm{d}V = P^\\top \\mathrm{d}O$ and the gradient "
            "reaching the attention weights,",
            Definition("dP"),
            "**Through the softmax.** Each row of $P$ is the softmax of the same row of $S$, "
            "with Jacobian $\\operatorname{diag}(p) - p p^\\top$. For generic scores $Z$ "
            "and an upstream gradient $G$, write",
            Definition("A"),
            "then, row by row,",
            Step(
                "grad(sum(G * A), Z) == A * (G - sum(A * G, axis=-1, keepdims=True))",
                "Jacobian $\\operatorname{diag}(p) - p p^\\top$ on each row",
                label="local-softmax",
            ),
            "Each entry of a row of scores is pushed up in proportion to its weight and to how "
            "far its upstream gradient lies above the row's $P$-weighted average. With "
            "$G = \\mathrm{d}P$:",
            Definition("dS"),
            "**Through $S = Q K^\\top / \\sqrt{d}$.** The scores are again a matrix product, "
            "now scaled:",
            Step(
                "grad(sum(G * (Q @ K.T) / sqrt(d)), Q) == G @ K / sqrt(d)",
                "[[local-matmul-left]] with $K^\\top$ in place of $V$, times $1/\\sqrt{d}$",
                label="local-scores-q",
            ),
            Step(
                "grad(sum(G * (Q @ K.T) / sqrt(d)), K) == G.T @ Q / sqrt(d)",
                "[[local-matmul-right]] for $Q K^\\top$, transposed because $K$ enters as "
                "$K^\\top$",
                label="local-scores-k",
            ),
            "**Assembled.** Chaining the three local rules gives the full backward pass. Each "
            "line is checked end to end against the gradient of the composed forward "
            "computation (not against the local rules):",
            Step(
                "grad(sum(dO * O), V) == P.T @ dO",
                "[[local-matmul-right]] with $W = P$",
                label="grad-v",
            ),
            Step(
                "grad(sum(dO * O), Q) == dS @ K / sqrt(d)",
                "[[local-matmul-left]], [[local-softmax]], [[local-scores-q]] with "
                "$G = \\mathrm{d}S$",
                label="grad-q",
            ),
            Step(
                "grad(sum(dO * O), K) == dS.T @ Q / sqrt(d)",
                "[[local-matmul-left]], [[local-softmax]], [[local-scores-k]] with "
                "$G = \\mathrm{d}S$",
                label="grad-k",
            ),
            "Two properties of $\\mathrm{d}S$ are worth knowing. Every row sums to zero: adding "
            "a constant to a row of scores does not change the softmax, so the gradient has no "
            "component along that direction.",
            Step(
                "sum(dS, axis=-1) == 0 * ones(n)",
                "$\\sum_j P_{ij} (\\mathrm{d}P_{ij} - \\delta_i) = \\delta_i - \\delta_i$ "
                "with $\\delta_i = \\sum_j P_{ij} \\mathrm{d}P_{ij}$ and [[rows-sum-to-one]]",
                label="ds-rows-sum-to-zero",
            ),
            "And the row sums $\\delta_i$ that $\\mathrm{d}S$ needs can be computed without "
            "$P$ at all:",
            Step(
                "sum(P * dP, axis=-1, keepdims=True) == sum(dO * O, axis=-1, keepdims=True)",
                "$\\sum_j P_{ij} \\sum_l \\mathrm{d}O_{il} V_{jl} = "
                "\\sum_l \\mathrm{d}O_{il} O_{il}$",
                label="flash-rowsum",
            ),
            "This identity is what lets memory-efficient kernels such as FlashAttention "
            "[@flash] skip storing the $n \\times n$ matrix $P$: the row sums need only "
            "$\\mathrm{d}O$ and $O$, both $n \\times d$, and $P$ is recomputed block by block "
            "from $Q$ and $K$ during the backward pass. Counting matrix products, the forward "
            "pass has two ($Q K^\\top$ and $P V$) and the backward pass four "
            "($\\mathrm{d}V$, $\\mathrm{d}P$, $\\mathrm{d}Q$, $\\mathrm{d}K$), each costing "
            "about $n^2 d$ multiply-adds: training attention costs roughly three times the "
            "forward pass, and the $n^2$ makes long contexts expensive.",
        ),
        Section(
            "Attention dilution in long contexts",
            "Suppose the query needs one fact that sits at a single position, whose score "
            "exceeds the others by a gap $\\Delta$, and the other $n - 1$ positions are equally "
            "irrelevant (score 0; only differences matter to a softmax). Mark the relevant "
            "position with a one-hot vector $t$; the score vector is then $\\Delta\\,t$ and the "
            "weight on the fact is",
            Step(
                f"sum(t * softmax(Delta * t)) == {DILUTION}",
                "$n - 1$ entries $e^0 = 1$",
                label="dilution",
            ),
            "For a fixed gap the weight falls like $e^{\\Delta} / n$ once "
            "$n \\gg e^{\\Delta}$. A gap of 4 gives the fact 95% of the attention among 4 "
            "positions, but 5% among 1000 and "
            "0.05% among 100000 ([[fig-dilution]], left). To hold the weight at $w$, the gap "
            "has to grow with the context:",
            Step(
                f"sum(t * softmax({NEEDED_SCORE} * t)) == w",
                "solve $e^{\\Delta} / (e^{\\Delta} + n - 1) = w$ for $\\Delta$ in [[dilution]]",
                label="needed-score",
            ),
            "The required gap $\\Delta = \\log(n - 1) + \\log \\frac{w}{1 - w}$ grows like "
            "$\\log n$: every tenfold increase of the context costs $\\log 10 \\approx 2.3$ "
            "units of score ([[fig-dilution]], right). Scores are bounded by the sizes of the "
            "queries and keys, $|q \\cdot k| / \\sqrt{d} \\le \\|q\\| \\|k\\| / \\sqrt{d}$, so a "
            "head that separates a fact sharply at 4000 tokens may fail to at 400000.",
            Figure(
                "dilution",
                "Left: the weight $e^{\\Delta} / (e^{\\Delta} + n - 1)$ of one relevant token "
                "against $n - 1$ irrelevant ones (lines: the verified closed form; dots: the "
                "softmax itself "
                "over $n$ scores). Right: the score gap that keeps the weight at $w$.",
                draw_dilution,
                label="fig-dilution",
            ),
        ),
        Section(
            "Implications for LLMs",
            "- **Training dynamics.** The $1/\\sqrt{d}$ scale keeps the scores at unit "
            "variance whatever the head dimension, so the softmax starts neither uniform nor "
            "saturated and gradients reach $Q$ and $K$ from the first step. When scores do grow "
            "large during training, the softmax saturates and [[local-softmax]] shows the "
            "gradient shrinking with it; this is one reason why some models normalize queries "
            "and keys before the dot product.",
            "- **Causality is exact.** The mask removes the future entirely, by "
            "[[future-gets-nothing]], so a model trained on all positions in parallel is the "
            "same model that later generates one token at a time.",
            "- **Memory.** The backward pass needs $P$ only through products and through the "
            "row sums of [[flash-rowsum]], which is why attention can be trained without ever "
            "storing an $n \\times n$ matrix.",
            "- **Long context and hallucination.** The output is a weighted average of values. "
            "When the one value that holds the needed fact gets 5% of the weight and many "
            "irrelevant positions share the rest, the output is dominated by a blur of "
            "unrelated content, and the next-token distribution falls back on what the model "
            "believes in general rather than on the fact in front of it: a fluent, confident "
            "answer that is not supported by the context. Dilution is the simplest mechanism "
            "with this effect; models counter it by learning larger score gaps, by using many "
            "heads and layers, and in some designs by scaling the scores with $\\log n$, which "
            "is what [[needed-score]] asks for [@chiang]. Empirically, models do use "
            "information in the middle of long contexts less reliably [@lost]; dilution is one "
            "ingredient of such effects, not the whole story (the hallucination note collects "
            "the others).",
        ),
    ),
)
