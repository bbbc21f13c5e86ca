"""Note 8: positional encodings: sinusoidal shifts as rotations, RoPE's relative scores, ALiBi."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine import build_environment, parse_formula, to_numpy
from engine.notes import Definition, Figure, Note, Reference, Section, Step

HEAD_DIM = 128  # d: a head of 64 rotated pairs, as in LLaMA
BASE = 10000.0
ALIBI_HEADS = 8
MAX_DISTANCE = 2000

# Right side of the verified RoPE step: the figure and the prose numbers evaluate it.
ROPE_SCORE = "sum(a * cos(phi) + b * sin(phi))"
ROPE_DEFS = {"phi": "(j - i) * theta", "a": "q1 * k1 + q2 * k2", "b": "q2 * k1 - q1 * k2"}
ROPE_TYPES = {
    "q1": "real[h]",
    "q2": "real[h]",
    "k1": "real[h]",
    "k2": "real[h]",
    "theta": "positive[h]",
    "i": "real",
    "j": "real",
}


def frequencies(d: int = HEAD_DIM, base: float = BASE) -> np.ndarray:
    """theta_l = base^(-2l/d) for l = 0, ..., d/2 - 1 (the sinusoidal and RoPE frequencies)."""
    return base ** (-2.0 * np.arange(d // 2) / d)


def alibi_slopes(heads: int = ALIBI_HEADS) -> np.ndarray:
    """ALiBi's head slopes 2^(-8h/H), h = 1..H (Press et al. 2022, for H a power of 2)."""
    return 2.0 ** (-8.0 * np.arange(1, heads + 1) / heads)


def mean_rope_score(score: Any, distances: np.ndarray) -> np.ndarray:
    """RoPE's score for q = k = (1, 0) in every pair, divided by d/2, at each distance j - i:
    the mean of cos((j - i) theta_l). `score(**values)` evaluates [[rope-relative]]'s right
    side."""
    theta = frequencies()
    ones, zeros = np.ones_like(theta), np.zeros_like(theta)
    values = {"q1": ones, "q2": zeros, "k1": ones, "k2": zeros, "theta": theta, "i": 0.0}
    return np.array([float(score(**values, j=float(t))) for t in distances]) / len(theta)


def _prose_numbers() -> dict[str, str]:
    score = to_numpy(parse_formula(ROPE_SCORE, build_environment(ROPE_TYPES, ROPE_DEFS)))
    distances = np.arange(0, MAX_DISTANCE + 1)
    curve = mean_rope_score(score, distances)
    below = int(np.argmax(curve < 0.5))
    return {
        "half_distance": str(below),
        "mean_far": f"{curve[1000:].mean():.2f}",
        "slowest_period": f"{2 * np.pi / frequencies()[-1]:,.0f}".replace(",", "\\,"),
        "fastest_period": f"{2 * np.pi / frequencies()[0]:.1f}",
    }


NUMBERS = _prose_numbers()


def draw_decay(ctx: Any):
    """RoPE's mean score against distance (from the verified step), and ALiBi's weights."""
    lhs, rhs = ctx.step("rope-relative")

    def score(**values: Any) -> np.ndarray:
        return ctx.evaluate(rhs, values)

    distances = np.arange(0, MAX_DISTANCE + 1)
    fig = ctx.figure(6.6, 2.7)
    left, right = fig.subplots(1, 2)
    left.plot(distances, mean_rope_score(score, distances), lw=1.0)
    left.axhline(0.0, color="0.3", lw=0.6)
    left.set_xlabel("relative distance $j - i$")
    left.set_ylabel(r"mean of $\cos((j - i)\,\theta_l)$")
    left.set_title(f"RoPE, $d = {HEAD_DIM}$, base $10^4$", fontsize=9)
    near = np.arange(0, 65)
    for h, lam in enumerate(alibi_slopes(), start=1):
        weights = ctx.evaluate("exp(-lam * D)", {"lam": lam, "D": near.astype(float)})
        (line,) = right.plot(near, weights)
        if h in (1, ALIBI_HEADS):  # label the extremes at the end of their curves
            at = 4 if h == 1 else len(near) - 1
            right.annotate(
                f"head {h}",
                (near[at], weights[at]),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=7,
                color=line.get_color(),
            )
    right.set_xlabel("relative distance $i - j$")
    right.set_ylabel(r"factor $e^{-\lambda (i - j)}$")
    right.set_title(f"ALiBi, {ALIBI_HEADS} heads", fontsize=9)
    fig.tight_layout()
    return fig


NOTE = Note(
    name="positional",
    order=8,
    title="Positional encodings",
    summary=(
        "Attention by itself does not know where a token is. Three ways to tell it, and the "
        "one identity behind each: the sinusoidal encoding of a shifted position is a fixed "
        "rotation of the original, RoPE's rotated queries and keys give scores that depend "
        "only on the relative position, and ALiBi's linear bias multiplies each attention "
        "weight by a factor that decays with distance."
    ),
    vars={
        "omega": "positive[h]",
        "i": "real",
        "j": "real",
        "r": "real",
        "theta": "positive[h]",
        "q1": "real[h]",
        "q2": "real[h]",
        "k1": "real[h]",
        "k2": "real[h]",
        "S": "real[n]",
        "lam": "positive",
        "D": "real[n]",
    },
    defs={
        "u1": "q1 * cos(i * theta) - q2 * sin(i * theta)",
        "u2": "q1 * sin(i * theta) + q2 * cos(i * theta)",
        "v1": "k1 * cos(j * theta) - k2 * sin(j * theta)",
        "v2": "k1 * sin(j * theta) + k2 * cos(j * theta)",
        **ROPE_DEFS,
    },
    references=(
        Reference(
            "vaswani",
            "A. Vaswani et al., Attention Is All You Need, NeurIPS 2017.",
            "https://arxiv.org/abs/1706.03762",
        ),
        Reference(
            "rope",
            "J. Su, Y. Lu, S. Pan, A. Murtadha, B. Wen, Y. Liu, RoFormer: Enhanced Transformer "
            "with Rotary Position Embedding, Neurocomputing 2024 (arXiv 2021).",
            "https://arxiv.org/abs/2104.09864",
        ),
        Reference(
            "alibi",
            "O. Press, N. A. Smith, M. Lewis, Train Short, Test Long: Attention with Linear "
            "Biases Enables Input Length Extrapolation, ICLR 2022.",
            "https://arxiv.org/abs/2108.12409",
        ),
    ),
    sections=(
        Section(
            "Intuition",
            "Attention treats its input as a set: permuting the tokens permutes the rows of "
            "the output and changes nothing else, because every score $q_i \\cdot k_j$ is "
            "computed the same way whatever the positions $i$ and $j$ are. Word order "
            "matters in language, so position must be put into the computation. The original "
            "transformer adds a fixed vector encoding the absolute position to each token's "
            "embedding [@vaswani]; most current LLMs instead rotate queries and keys by an "
            "angle proportional to their position (RoPE [@rope]), and some add a penalty "
            "linear in the distance to the scores (ALiBi [@alibi]). Each design rests on one "
            "identity, derived and checked below.",
            "Notation: positions $i, j$ and offsets $r$ are real numbers in the checks (the "
            "identities hold for all reals, so in particular for integer positions); a head "
            "of dimension $d = 2h$ is split into $h$ pairs of coordinates, and "
            "$\\omega, \\theta \\in \\mathbb{R}^h$ are the pairs' angular frequencies. "
            "Functions of vectors such as $\\sin(i\\,\\theta)$ act entry by entry.",
        ),
        Section(
            "Sinusoidal encodings",
            "The sinusoidal encoding of position $i$ stacks, for each frequency $\\omega_l$, "
            "the pair $(\\sin(i\\,\\omega_l), \\cos(i\\,\\omega_l))$, with frequencies "
            "$\\omega_l = 10000^{-2l/d}$ from one turn per "
            f"{NUMBERS['fastest_period']} positions to one per "
            f"${NUMBERS['slowest_period']}$ positions at $d = {HEAD_DIM}$. Shifting the "
            "position by $r$ is the angle-addition formula in every pair:",
            Step(
                "sin(omega * (i + r)) == cos(omega * r) * sin(omega * i) + "
                "sin(omega * r) * cos(omega * i)",
                "angle addition",
                label="shift-sin",
            ),
            Step(
                "cos(omega * (i + r)) == -sin(omega * r) * sin(omega * i) + "
                "cos(omega * r) * cos(omega * i)",
                "angle addition",
                label="shift-cos",
            ),
            "Read as a matrix acting on the pair $(\\sin(i\\,\\omega_l), "
            "\\cos(i\\,\\omega_l))$, [[shift-sin]] and [[shift-cos]] say that the encoding "
            "of position $i + r$ is the encoding of $i$ rotated, pair by pair, by the "
            "$2 \\times 2$ matrix with rows $(\\cos(r\\,\\omega_l), \\sin(r\\,\\omega_l))$ and "
            "$(-\\sin(r\\,\\omega_l), \\cos(r\\,\\omega_l))$. The matrix depends on the offset "
            "$r$ but not on $i$, which is why [@vaswani] expected a linear layer to learn to "
            "attend by relative position. It also makes the dot product of two encodings a "
            "function of their distance alone:",
            Step(
                "sum(sin(omega * i) * sin(omega * (i + r)) + cos(omega * i) * "
                "cos(omega * (i + r))) == sum(cos(omega * r))",
                "angle subtraction",
                label="sinusoidal-dot",
            ),
        ),
        Section(
            "Rotary embeddings (RoPE)",
            "RoPE [@rope] applies the rotation to the queries and keys themselves instead of "
            "adding it to the embeddings. Split a query $q$ into the first and second "
            "coordinates of its pairs, $q_1, q_2 \\in \\mathbb{R}^h$, and likewise a key; at "
            "position $i$ the query is rotated by the angles $i\\,\\theta$ and at position "
            "$j$ the key by $j\\,\\theta$, giving the rotated query $(u_1, u_2)$ and key "
            "$(v_1, v_2)$:",
            Definition("u1"),
            Definition("u2"),
            Definition("v1"),
            Definition("v2"),
            "A rotation keeps lengths, so RoPE changes no query's norm:",
            Step(
                "u1**2 + u2**2 == q1**2 + q2**2",
                "$\\cos^2 + \\sin^2 = 1$ in every pair",
                label="rope-norm",
            ),
            "and the score between the rotated query and key depends on the positions only "
            "through the relative position $j - i$, that is through the angles $\\phi$; "
            "with the pairs' dot and cross products $a$ and $b$ of the unrotated query and "
            "key,",
            Definition("phi"),
            Definition("a"),
            Definition("b"),
            Step(
                "sum(u1 * v1 + u2 * v2) == " + ROPE_SCORE,
                "$R(\\alpha)^\\top R(\\beta) = R(\\beta - \\alpha)$",
                label="rope-relative",
            ),
            "The left side is what an implementation computes, the score of two rotated "
            "vectors at absolute positions; the right side contains $i$ and $j$ only as "
            "$j - i$. A model using RoPE therefore scores a query against a key by their "
            "distance and their contents, whatever their absolute positions, and a KV cache "
            "can store keys already rotated. [[fig-decay]] (left) evaluates the right side "
            "of [[rope-relative]] for a query and key equal to $(1, 0)$ in every pair, where "
            "it is the mean of $\\cos((j - i)\\,\\theta_l)$ over the $h$ frequencies. It "
            f"falls below $1/2$ at distance {NUMBERS['half_distance']} and then decays slowly, "
            f"averaging {NUMBERS['mean_far']} between distances 1000 and {MAX_DISTANCE}: "
            "distant keys need larger content scores to win the same weight. "
            "[@rope] prove an upper bound of this kind for general queries and keys by "
            "summation by parts, the long-range decay of RoPE; it is stated there and not "
            "checked here.",
        ),
        Section(
            "ALiBi: a linear bias",
            "ALiBi [@alibi] adds no vector to anything: head $h$ subtracts "
            "$\\lambda_h (i - j)$ from the score of query $i$ on key $j$, with a fixed slope "
            "$\\lambda_h$ per head. For one query row, with scores $S$ and distances $D$ "
            "(entries $i - j \\ge 0$ under a causal mask), the bias multiplies each "
            "unnormalized weight by $e^{-\\lambda D_j}$, the same gate argument as the "
            "causal mask in the attention note, [[attention:mask-multiplies]]:",
            Step(
                "softmax(S - lam * D) == exp(-lam * D) * exp(S) / sum(exp(-lam * D) * exp(S))",
                "$e^{a - b} = e^a e^{-b}$, then normalize",
                label="alibi-gate",
            ),
            "So relative to the unbiased weights, a key at distance $D_j$ is down-weighted "
            "by $e^{-\\lambda D_j}$ before renormalization: a soft, head-specific window. "
            f"With the slopes $2^{{-8h/H}}$ of [@alibi] for $H = {ALIBI_HEADS}$ heads, the "
            "first head looks at a few neighbours and the last at hundreds of tokens "
            "([[fig-decay]], right). Because the bias depends only on $i - j$, like RoPE's "
            "score, nothing in the model is tied to absolute positions it saw in training, "
            "which is the property [@alibi] use to evaluate on longer sequences than were "
            "trained on.",
            Figure(
                "decay",
                f"Left: RoPE's score for $q = k = (1, 0)$ in each of the {HEAD_DIM // 2} pairs, "
                "divided by their number, against the relative distance, evaluated from the "
                "verified [[rope-relative]]. Right: ALiBi's factor $e^{-\\lambda_h (i - j)}$ "
                f"for the {ALIBI_HEADS} heads, slopes $2^{{-8h/{ALIBI_HEADS}}}$.",
                draw_decay,
                label="fig-decay",
            ),
        ),
    ),
)
