"""Note 9: decoding and sampling: greedy, temperature, top-k and top-p as truncated softmaxes."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy

from engine import build_environment, parse_formula, to_numpy
from engine.notes import Definition, Figure, Note, Reference, Section, Step
from engine.notes.check import INTEGER_RANGE
from engine.notes.symbols import param

b = param("b", "unit")  # per-step probability mass of the low-probability tokens
L = param("L", "integer")  # the length of a sampled sequence

VARS = {"z_K": "real[k]", "z_D": "real[r]", "T": "positive"}
DEFS = {
    "Z": "sum(exp(z_K)) + sum(exp(z_D))",
    "p_K": "exp(z_K) / Z",
    "p_D": "exp(z_D) / Z",
    "M": "sum(p_K)",
    "q": "p_K / M",
    "q_D": "p_D / (1 - M)",
    "H_p": "-sum(p_K * log(p_K)) - sum(p_D * log(p_D))",
    "h": "-(M * log(M) + (1 - M) * log(1 - M))",
    "Z_T": "sum(exp(z_K / T)) + sum(exp(z_D / T))",
    "M_T": "sum(exp(z_K / T)) / Z_T",
    "mu_K": "sum(softmax(z_K / T) * z_K)",
    "mu_D": "sum(softmax(z_D / T) * z_D)",
}

# ---------------------------------------------------------------- sequences that avoid a set


# A two-state sampler over four tokens: tokens 0 and 1 are ordinary, tokens 2 and 3 have low
# probability. The next-token distribution depends on the previous token (as in a language
# model), but the low-probability tokens get total mass b after every prefix.
def next_token_probs(previous: int | None, mass: Any) -> tuple[Any, ...]:
    """The next-token distribution after `previous` (None at the start)."""
    if previous == 1:
        return ((1 - mass) / 5, 4 * (1 - mass) / 5, mass / 2, mass / 2)
    return (2 * (1 - mass) / 3, (1 - mass) / 3, mass / 4, 3 * mass / 4)


LOW = {2, 3}


def avoid_probability(values: Mapping[str, Any]) -> sympy.Expr:
    """P(no low-probability token in L steps), by enumerating all 4^L sequences."""
    length, mass = int(values["L"]), values["b"]
    total = sympy.Integer(0)
    for seq in itertools.product(range(4), repeat=length):
        if LOW & set(seq):
            continue
        prob, prev = sympy.Integer(1), None
        for tok in seq:
            prob *= next_token_probs(prev, mass)[tok]
            prev = tok
        total += prob
    return total


# ---------------------------------------------------------------- numbers quoted in the prose

_ENV = build_environment(VARS, DEFS)


def formula(text: str):
    """A NumPy callable of a formula of this note (through the engine's backend)."""
    return to_numpy(parse_formula(text, _ENV))


KEPT_MASS = formula("M")
TRUNCATED_ENTROPY = formula("entropy(q)")
N_VOCAB = 1000
ZIPF = {"peaked": 1.2, "flat": 0.8}
TOP_K = 40
TOP_P = 0.9


def zipf_logits(exponent: float, n: int = N_VOCAB) -> np.ndarray:
    """Logits of p_i proportional to i^-exponent, sorted in decreasing order."""
    return -exponent * np.log(np.arange(1, n + 1))


def kept_mass(z: np.ndarray, k: int) -> float:
    """M for the top-k set of sorted logits z, from the note's definition of M."""
    return float(KEPT_MASS(z_K=z[:k], z_D=z[k:]))


def truncated_entropy(z: np.ndarray, k: int) -> float:
    """H(q) for the top-k set of sorted logits z."""
    return float(TRUNCATED_ENTROPY(z_K=z[:k], z_D=z[k:]))


def nucleus_size(z: np.ndarray, top_p: float) -> int:
    """The smallest k whose kept mass reaches top_p."""
    k = 1
    while kept_mass(z, k) < top_p:
        k += 1
    return k


def full_entropy(z: np.ndarray) -> float:
    return float(
        to_numpy(parse_formula("entropy(softmax(z))", build_environment({"z": "real[n]"})))(z=z)
    )


ZIPF_Z = {name: zipf_logits(s) for name, s in ZIPF.items()}
TOPK_MASS = {name: kept_mass(z, TOP_K) for name, z in ZIPF_Z.items()}
TOPP_SIZE = {name: nucleus_size(z, TOP_P) for name, z in ZIPF_Z.items()}
FULL_H = {name: full_entropy(z) for name, z in ZIPF_Z.items()}
TOPP_H = {name: truncated_entropy(z, TOPP_SIZE[name]) for name, z in ZIPF_Z.items()}
AVOID_B, AVOID_L = 0.02, 500
AVOID_P = (1 - AVOID_B) ** AVOID_L


def _sci(x: float) -> str:
    mantissa, exponent = f"{x:.1e}".split("e")
    return rf"{mantissa} \times 10^{{{int(exponent)}}}"


# ---------------------------------------------------------------- figures


def draw_truncation(ctx: Any):
    """Kept mass and truncated entropy against k for a peaked and a flat Zipf distribution."""
    ks = np.unique(np.geomspace(1, N_VOCAB - 1, 60).astype(int))
    fig = ctx.figure(6.6, 2.6)
    mass_ax, ent_ax = fig.subplots(1, 2)
    for (name, z), color in zip(ZIPF_Z.items(), ("C0", "C3"), strict=True):
        mass = [float(ctx.evaluate("M", {"z_K": z[:k], "z_D": z[k:]})) for k in ks]
        ent = [float(ctx.evaluate("entropy(q)", {"z_K": z[:k], "z_D": z[k:]})) for k in ks]
        label = f"{name}, $s = {ZIPF[name]:g}$"
        mass_ax.semilogx(ks, mass, color=color, label=label)
        ent_ax.semilogx(ks, ent, color=color, label=label)
        ent_ax.axhline(FULL_H[name], color=color, ls=":", lw=1.0)
        kp = TOPP_SIZE[name]
        mass_ax.plot([TOP_K], [TOPK_MASS[name]], "s", color=color, ms=4)
        mass_ax.plot([kp], [kept_mass(z, kp)], "o", color=color, ms=4)
        ent_ax.plot([TOP_K], [truncated_entropy(z, TOP_K)], "s", color=color, ms=4)
        ent_ax.plot([kp], [TOPP_H[name]], "o", color=color, ms=4)
    mass_ax.axhline(TOP_P, color="0.5", lw=0.8, ls="--")
    mass_ax.axvline(TOP_K, color="0.5", lw=0.8, ls="--")
    mass_ax.set_xlabel("tokens kept $k$")
    mass_ax.set_ylabel("kept mass $M$")
    mass_ax.legend(frameon=False, fontsize=7, loc="lower right")
    ent_ax.axvline(TOP_K, color="0.5", lw=0.8, ls="--")
    ent_ax.set_xlabel("tokens kept $k$")
    ent_ax.set_ylabel("entropy of $q$ (nats)")
    fig.tight_layout()
    return fig


def draw_tail(ctx: Any):
    """The dropped mass 1 - M_T of the top-k set as the temperature rises, and its slope."""
    from matplotlib.ticker import NullFormatter

    temps = np.geomspace(0.2, 5.0, 121)
    _, slope = ctx.step("tail-dt")
    fig = ctx.figure(6.6, 2.4)
    mass_ax, rate_ax = fig.subplots(1, 2)
    for (name, z), color in zip(ZIPF_Z.items(), ("C0", "C3"), strict=True):
        vals = {"z_K": z[:TOP_K], "z_D": z[TOP_K:]}
        tail = [1 - float(ctx.evaluate("M_T", {**vals, "T": t})) for t in temps]
        rate = [float(ctx.evaluate(slope, {**vals, "T": t})) for t in temps]
        mass_ax.semilogx(temps, tail, color=color, label=f"{name}, $s = {ZIPF[name]:g}$")
        rate_ax.semilogx(temps, rate, color=color)
        finite = np.gradient(np.array(tail), temps)
        rate_ax.semilogx(temps[::10], finite[::10], "o", ms=3, color=color, mfc="none")
    for ax in (mass_ax, rate_ax):
        ax.set_xticks([0.2, 0.5, 1, 2, 5], ["0.2", "0.5", "1", "2", "5"])
        ax.xaxis.set_minor_formatter(NullFormatter())
    mass_ax.set_xlabel("temperature $T$")
    mass_ax.set_ylabel(f"mass outside the top {TOP_K}")
    mass_ax.legend(frameon=False, fontsize=7)
    rate_ax.set_xlabel("temperature $T$")
    rate_ax.set_ylabel("its derivative in $T$")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the note

_pk, _pf = TOPP_SIZE["peaked"], TOPP_SIZE["flat"]

NOTE = Note(
    name="decoding",
    order=9,
    title="Decoding and sampling",
    summary=r"""
A language model gives a distribution $p$ over the next token; a decoder decides what to do
with it. Greedy decoding takes the most probable token, sampling draws from $p$ (usually at
a temperature $T$), and top-k and top-p (nucleus) sampling first cut the distribution down
to its most probable tokens and renormalize. This note shows that every truncation is the
softmax of the kept logits, that its total-variation distance from $p$ is exactly the
dropped mass $1 - M$ and its KL divergence to $p$ is $-\log M$, how its entropy relates to
$p$'s, that the mass of the tail grows with the temperature (with the rate derived and
checked), and how fast the chance of never sampling a low-probability token decays with
the length of the text.
""",
    vars=VARS,
    defs=DEFS,
    params={"b": "unit", "L": "integer"},
    sections=(
        Section(
            "Intuition",
            r"""
The softmax never assigns probability zero: among $n$ tokens (tens of thousands), even the
absurd ones keep a little mass, and the tail of many tokens of small probability can hold
a sizeable share in total. Sampling from $p$ as it is means that, sooner or later, a token
from that tail is drawn, and one odd token can derail the rest of the text
[@holtzman2020]. Greedy decoding avoids the tail but repeats itself and is often dull. The
decoders in between cut the tail away and sample from what is left: top-k keeps a fixed
number of tokens [@fan2018], top-p keeps the smallest set holding a fixed share of the
probability [@holtzman2020]. The questions are how much each changes the distribution, and
what temperature does to the tail.
""",
        ),
        Section(
            "Truncation as a softmax over the kept logits",
            r"""
Sort the tokens by probability (the formula language has no sort: the logits below are
declared already sorted, $z_1 \ge z_2 \ge \dots \ge z_n$, and split into the first $k$, the
*kept* block $z_{\mathrm{K}}$, and the remaining $r = n - k$, the *dropped* block
$z_{\mathrm{D}}$). Top-k keeps a fixed $k$; top-p with threshold $P$ keeps the smallest $k$
whose kept mass reaches $P$; greedy decoding is $k = 1$. With $p = \operatorname{softmax}(z)$
over all $n$ tokens, written block by block, the kept mass $M$ and the truncated,
renormalized distribution $q$ on the kept tokens are
""",
            Definition("Z"),
            Definition("p_K"),
            Definition("p_D"),
            Definition("M"),
            Definition("q"),
            r"""
($q$ is zero on the dropped tokens.) The normalizer $Z$ (the partition sum) cancels, so
truncating and
renormalizing is the same as a softmax over the kept logits alone, which is how it is
implemented: the dropped logits are set to $-\infty$ (in practice a large negative number)
before the softmax.
""",
            Step(
                "q == softmax(z_K)",
                "$Z$ cancels in $p_{\\mathrm{K}} / \\sum p_{\\mathrm{K}}$",
                label="trunc-softmax",
            ),
            r"""
The kept mass is a difference of two log-sum-exps, the kept block's and the whole
vocabulary's, so it is computed stably the way the cross-entropy note computes its loss
([[cross-entropy:lse-shift]]):
""",
            Step(
                "log(M) == logsumexp(z_K) - log(Z)",
                "$M = \\sum_{i \\le k} e^{z_i} / Z$",
                label="kept-mass-lse",
            ),
        ),
        Section(
            "How far the truncated distribution is from p",
            r"""
The total-variation distance $\frac{1}{2} \sum_i |p_i - q_i|$ is the largest difference
between the probabilities that $p$ and $q$ give to any one event. On a kept token
$q_i = p_i / M \ge p_i$, and the kept tokens together gain exactly the dropped mass
$1 - M$; on a dropped token $q_i = 0$. So the distance is the dropped mass itself:
""",
            Step(
                "(sum(abs(p_K - q)) + sum(p_D)) / 2 == 1 - M",
                "$q_i - p_i = p_i (1/M - 1) \\ge 0$ on the kept tokens, sum $1 - M$",
                label="tv",
            ),
            r"""
Top-p with threshold $P$ keeps mass $M \ge P$, so its distance from $p$ is at most
$1 - P$ in every context; top-k gives no such guarantee ([[fig-truncation]]). In the other
direction of the KL divergence (from $q$ to $p$, which is finite because $q$ lives on
fewer tokens), every kept token contributes the same log-ratio $\log(1/M)$:
""",
            Step(
                "sum(q * log(q / p_K)) == -log(M)",
                "$q_i / p_i = 1/M$ on the kept tokens, and $\\sum q_i = 1$",
                label="kl-trunc",
            ),
            r"""
So $-\log M$ nats is what the decoder gives up, measured against the model: keeping
mass $M = """
            + f"{TOP_P:g}"
            + r"""$ costs $-\log M \approx """
            + f"{-np.log(TOP_P):.3f}"
            + r"""$ nats per token, and a sequence sampled from $q$ is
$1/M$ times as likely under $q$ as under $p$, per token.

The entropy of $q$ is related to $p$'s by the grouping rule: first decide between the
kept and the dropped block (a coin with probability $M$), then pick a token inside the
block. With $q_{\mathrm{D}}$ the renormalized dropped block, $H_{\mathrm{p}}$ the entropy of $p$
written block by block, and $h$ the entropy of the coin,
""",
            Definition("q_D"),
            Definition("H_p"),
            Definition("h"),
            Step(
                "H_p == h + M * entropy(q) + (1 - M) * entropy(q_D)",
                "$\\log p_i = \\log M + \\log q_i$ on K, "
                "$\\log(1 - M) + \\log q_{\\mathrm{D}, i}$ on D",
                label="entropy-split",
            ),
            r"""
Truncation replaces $H_{\mathrm{p}}$ by $H(q)$: it removes the coin and the
entropy inside the tail. When the tail is a long list of rare tokens, $H(q_{\mathrm{D}})$
is large and $H(q)$ is much smaller than $H(p)$; the figure shows both for Zipf-like
distributions, $p_i \propto i^{-s}$ over $n = """
            + str(N_VOCAB)
            + r"""$ tokens, one peaked ($s = """
            + f"{ZIPF['peaked']:g}"
            + r"""$) and one flat ($s = """
            + f"{ZIPF['flat']:g}"
            + r"""$), standing for a context where the next token is nearly determined and
one where many continuations are reasonable. Top-"""
            + str(TOP_K)
            + r""" keeps """
            + f"{TOPK_MASS['peaked']:.2f}"
            + r""" of the mass in the peaked context and only """
            + f"{TOPK_MASS['flat']:.2f}"
            + r""" in the flat one; top-p with $P = """
            + f"{TOP_P:g}"
            + r"""$ keeps """
            + str(_pk)
            + r""" tokens in the first and """
            + str(_pf)
            + r""" in the second, adapting the cut to the shape of the distribution, which
is the argument for nucleus sampling [@holtzman2020]. The entropy of the nucleus is """
            + f"{TOPP_H['peaked']:.2f}"
            + r""" nats against $H(p) = """
            + f"{FULL_H['peaked']:.2f}"
            + r"""$ (peaked) and """
            + f"{TOPP_H['flat']:.2f}"
            + r""" against """
            + f"{FULL_H['flat']:.2f}"
            + r""" (flat).""",
            Figure(
                "truncation",
                "Kept mass $M$ (left) and entropy of the truncated distribution $q$ (right) as "
                "the number of kept tokens $k$ grows, for a peaked and a flat Zipf-like "
                f"distribution over {N_VOCAB} tokens, evaluated from the definitions of $M$ and "
                f"$q$ above. Squares: top-k with $k = {TOP_K}$ (dashed vertical line). Circles: "
                f"top-p with $P = {TOP_P:g}$ (dashed horizontal line), whose $k$ depends on the "
                "distribution. Dotted lines: the entropy of $p$ itself.",
                draw_truncation,
                label="fig-truncation",
            ),
        ),
        Section(
            "Temperature and the mass of the tail",
            r"""
Temperature divides the logits by $T$ before the softmax (the softmax note,
[[softmax:dh-dt-vector]]). Dividing by $T > 0$ keeps the order of the logits, so the
top-$k$ set does not change with $T$, but its mass does. Write $M_{\mathrm{T}}$ for the kept mass at
temperature $T$, and $\mu_{\mathrm{K}}$, $\mu_{\mathrm{D}}$ for the mean logit of each block
under its own tempered softmax:
""",
            Definition("Z_T"),
            Definition("M_T"),
            Definition("mu_K"),
            Definition("mu_D"),
            r"""
The mass outside the kept set, $1 - M_{\mathrm{T}}$, then changes at the rate
""",
            Step(
                "grad(1 - M_T, T) == M_T * (1 - M_T) * (mu_K - mu_D) / T**2",
                "quotient rule; $\\partial_T e^{z_i/T} = -z_i e^{z_i/T} / T^2$",
                label="tail-dt",
            ),
            r"""
Every kept logit is at least every dropped logit, so $\mu_{\mathrm{K}} \ge \min_{i \le k}
z_i \ge \max_{i > k} z_i \ge \mu_{\mathrm{D}}$, and the rate is never negative: **the tail
mass never decreases as the temperature rises**, and increases strictly unless all
the logits are equal. This holds for every cut-off $k$ at once, so raising $T$
moves mass down the ranking at every level ([[fig-tail]]; the test file checks the sign on
random sorted logits and the values against finite differences). Two consequences: at a
higher temperature top-k throws away more of the distribution (its distance from the
tempered $p$, [[tv]], grows), and top-p must keep more tokens to reach the same $P$. As
$T \to 0$ with a unique largest logit, the mass outside the top token goes to zero and
sampling becomes greedy decoding.
""",
            Figure(
                "tail",
                f"Left: the mass outside the top {TOP_K} tokens, $1 - M_{{\\mathrm{{T}}}}$, for "
                "the two distributions of [[fig-truncation]] as the temperature rises, evaluated "
                "from the definition of $M_{\\mathrm{T}}$. Right: its rate of change from the "
                "verified formula [[tail-dt]] (lines) against the numerical slope of the left "
                "curves (circles); positive throughout.",
                draw_tail,
                label="fig-tail",
            ),
        ),
        Section(
            "Never sampling a low-probability token",
            r"""
Call a token *low-probability* when its probability is below some threshold, and suppose
that after every prefix the low-probability tokens together hold mass $b$ (the next-token
distribution may depend on the prefix in any other way). A sequence of $L$ sampled tokens
avoids all of them with probability $(1 - b)^L$. The step checks this by enumerating every
one of the $4^L$ sequences of a small sampler over four tokens, two of them
low-probability, whose next-token distribution depends on the previous token (the
enumeration is one side, the closed form the other):
""",
            Step(
                (avoid_probability, (1 - b) ** L),
                "enumeration",
                label="avoid",
                display=r"\Pr[\text{no low-probability token in } L \text{ steps}] = "
                r"(1 - b)^{L}",
            ),
            r"""
If the low-probability mass is at least $b$ after every prefix, the same product gives at
most $(1 - b)^L$. The decay is exponential in the length: with $b = """
            + f"{AVOID_B:g}"
            + r"""$ and $L = """
            + str(AVOID_L)
            + r"""$ the chance of never sampling from the tail is $"""
            + _sci(AVOID_P)
            + r"""$. Truncation changes the formula at its root: a token that top-k or top-p
drops has probability zero under $q$, so if the cut removes every low-probability token the
sequence avoids them with probability one, whatever $L$. What remains is the error made
by the kept tokens, which no decoder can remove: that is the subject of the hallucination
note.
""",
        ),
        Section(
            "Implications for language models",
            r"""
- **Truncation is a softmax with a mask.** Top-k and top-p [[trunc-softmax]] set the
  dropped logits to a large negative number; the cost is the dropped mass, $1 - M$ in
  total variation [[tv]] and $-\log M$ nats in KL [[kl-trunc]].
- **Top-p adapts to the context, top-k does not.** A fixed $k$ drops much of a flat
  distribution and keeps junk in a peaked one; a fixed $P$ bounds the distance from $p$ by
  $1 - P$ everywhere ([[fig-truncation]]).
- **Temperature and truncation interact.** Raising $T$ moves mass into the tail
  [[tail-dt]], which a truncation then removes again; common settings combine a moderate
  temperature with top-p.
- **Long texts reach the tail.** Without truncation, the probability of never sampling
  a token from a tail of mass $b$ decays as $(1 - b)^L$ [[avoid]]; one of the reasons why
  sampled long answers contain errors that the model itself rates as unlikely.
- **Identities checked by enumeration.** Step [[avoid]] compares an enumeration with a
  closed form; its exact route runs at random rational $b$ with $L = """
            + f"{INTEGER_RANGE[0]}, \\dots, {INTEGER_RANGE[1]}"
            + r"""$, and its
  float64 route re-evaluates the same two sides, so it is not an independent second
  route for that step.
""",
        ),
    ),
    references=(
        Reference(
            "holtzman2020",
            "A. Holtzman, J. Buys, L. Du, M. Forbes, Y. Choi. The curious case of neural text "
            "degeneration. *ICLR 2020*.",
            "https://arxiv.org/abs/1904.09751",
        ),
        Reference(
            "fan2018",
            "A. Fan, M. Lewis, Y. Dauphin. Hierarchical neural story generation. *ACL 2018*, "
            "pp. 889-898.",
            "https://arxiv.org/abs/1805.04833",
        ),
    ),
)
