"""Note 10: the mathematics of hallucination: likelihood, facts seen once, grading, sampling."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy

from engine import build_environment, parse_formula, to_numpy
from engine.notes import Definition, Figure, Note, Reference, Section, Step
from engine.notes.symbols import param

a, b = param("a", "unit"), param("b", "unit")  # shape of the fact distribution
N = param("N", "integer")  # the number of training examples
c = param("c", "unit")  # the model's confidence that its answer is right
t = param("t", "unit")  # the confidence threshold of the grading
eps = param("eps", "unit")  # the per-token error probability
L = param("L", "integer")  # the number of generated tokens
j = sympy.Symbol("j", integer=True)  # the summation index of the binomial terms

VARS = {
    "f": "simplex[n]",
    "z": "real[n]",
    "m": "positive",
    "Delta": "positive",
    "T": "positive",
}
DEFS = {"p": "softmax(z)", "eps": "m * exp(-Delta / T) / (1 + m * exp(-Delta / T))"}

# ---------------------------------------------------------------- Good-Turing by enumeration


def fact_distribution(values: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """Three facts with probabilities (a, (1 - a) b, (1 - a)(1 - b))."""
    pa, pb = values["a"], values["b"]
    return (pa, (1 - pa) * pb, (1 - pa) * (1 - pb))


def _samples(values: Mapping[str, Any]):
    """Every sequence of N draws, with its probability."""
    pi = fact_distribution(values)
    for seq in itertools.product(range(len(pi)), repeat=int(values["N"])):
        prob = sympy.Integer(1)
        for x in seq:
            prob *= pi[x]
        yield seq, prob


def expected_missing_mass(values: Mapping[str, Any]) -> sympy.Expr:
    """E[M_0]: the probability of the facts not in the sample, averaged over all samples."""
    pi = fact_distribution(values)
    return sum(
        (
            prob * sum(pi[x] for x in range(len(pi)) if x not in seq)
            for seq, prob in _samples(values)
        ),
        sympy.Integer(0),
    )


def expected_singleton_fraction(values: Mapping[str, Any]) -> sympy.Expr:
    """E[N_1 / N]: the fraction of the sample that are facts seen exactly once."""
    n_draws = int(values["N"])
    return sum(
        (
            prob * sum(1 for x in set(seq) if seq.count(x) == 1) / n_draws
            for seq, prob in _samples(values)
        ),
        sympy.Integer(0),
    )


def good_turing_bias(values: Mapping[str, Any]) -> sympy.Expr:
    """E[N_1 / N] - E[M_0], both by enumeration."""
    return expected_singleton_fraction(values) - expected_missing_mass(values)


def _closed(power: int, weight: int):
    """sum_x pi_x^weight (1 - pi_x)^(N - power), a callable of the parameter values."""

    def side(values: Mapping[str, Any]) -> sympy.Expr:
        n_draws = int(values["N"])
        return sum(x**weight * (1 - x) ** (n_draws - power) for x in fact_distribution(values))

    side.__name__ = f"sum_pi{weight}_one_minus_pi_N_minus_{power}"
    return side


# ---------------------------------------------------------------- grading


def expected_score(values: Mapping[str, Any]) -> sympy.Expr:
    """Answer with confidence c: +1 if right (probability c), -t/(1-t) if wrong."""
    conf, thr = values["c"], values["t"]
    outcomes = ((conf, sympy.Integer(1)), (1 - conf, -thr / (1 - thr)))
    return sum((prob * score for prob, score in outcomes), sympy.Integer(0))


# ---------------------------------------------------------------- numbers quoted in the prose

_ENV = build_environment(VARS, DEFS)
_CE = to_numpy(parse_formula("cross_entropy(softmax(z), f)", _ENV))
_EPS = to_numpy(parse_formula("eps", _ENV))

CORPUS = np.array([0.7, 0.3])  # the true answer, a popular misconception
HEDGE = np.array([0.99, 0.01])
CE_ML = float(_CE(z=np.log(CORPUS), f=CORPUS))
CE_TRUTHFUL = float(_CE(z=np.log(HEDGE), f=CORPUS))

RIVALS, GAP, LENGTH = 10.0, 6.0, 200
TEMPS = (0.5, 0.7, 1.0)
EPS_AT = {temp: float(_EPS(m=RIVALS, Delta=GAP, T=temp)) for temp in TEMPS}
NO_ERROR_AT = {temp: (1 - e) ** LENGTH for temp, e in EPS_AT.items()}
# Kalai & Vempala's last error term at delta = 1/100 is sqrt(6 ln 600) / sqrt(N) <= 7 / sqrt(N)
KV_ROOT = float(np.sqrt(6 * np.log(600)))


def _pct(x: float) -> str:
    return f"{100 * x:.2g}%"


def _num(x: float) -> str:
    """Two significant digits, as a power of ten below 0.01 (inline math)."""
    if x >= 0.01:
        return f"${x:.2g}$"
    mantissa, exponent = f"{x:.1e}".split("e")
    return rf"${mantissa} \times 10^{{{int(exponent)}}}$"


# ---------------------------------------------------------------- the figure


def draw_accumulation(ctx: Any):
    """Left: the per-token error eps(T) for three gaps. Right: P(no error in L tokens)."""
    temps = np.geomspace(0.2, 3.0, 121)
    lengths = np.unique(np.geomspace(1, 5000, 120).astype(int)).astype(float)
    fig = ctx.figure(6.6, 2.6)
    left, right = fig.subplots(1, 2)
    for gap in (GAP - 2, GAP, GAP + 2):
        vals = [float(ctx.evaluate("eps", {"m": RIVALS, "Delta": gap, "T": x})) for x in temps]
        left.semilogy(temps, vals, label=rf"$\Delta = {gap:g}$")
    left.set_xlabel("temperature $T$")
    left.set_ylabel(r"per-token error $\epsilon$")
    left.legend(frameon=False, fontsize=7)
    for temp in TEMPS:
        e = float(ctx.evaluate("eps", {"m": RIVALS, "Delta": GAP, "T": temp}))
        right.semilogx(lengths, (1 - e) ** lengths, label=f"$T = {temp:g}$")
        right.semilogx(lengths, np.maximum(1 - lengths * e, 0), ":", lw=0.9, color="0.5")
    right.set_xlabel("tokens generated $L$")
    right.set_ylabel("$P$(no error)")
    right.set_ylim(0, 1.02)
    right.legend(frameon=False, fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the note


def no_error_by_enumeration(values) -> float:
    """1 minus the chance of an error, summed over all 2^L error patterns in float64"""
    eps, length = values["eps"], values["L"]
    some = 0.0
    for pattern in itertools.product((False, True), repeat=length):
        k = sum(pattern)
        if k:
            some += eps**k * (1 - eps) ** (length - k)
    return (1 - some) - (1 - length * eps)


NOTE = Note(
    name="hallucination",
    order=10,
    title="The mathematics of hallucination",
    summary=r"""
A language model *hallucinates* when it states something false with the fluency of a fact.
This note collects the mathematical reasons, each in a formula that can be checked: maximum
likelihood reproduces the frequencies of its data, true or not; facts seen once in training
leave a missing mass that a calibrated model must fill with guesses (Good–Turing, and the
bound of Kalai and Vempala); grading that gives nothing for "I don't know" rewards
guessing; attention dilutes a single relevant fact in a long context; and small per-token
error probabilities compound over long answers, faster at higher temperature. Each section
ends with what a mitigation changes in its formula.
""",
    vars=VARS,
    defs=DEFS,
    params={
        "a": "unit",
        "b": "unit",
        "N": "integer",
        "c": "unit",
        "t": "unit",
        "eps": "unit",
        "L": "integer",
    },
    sections=(
        Section(
            "Intuition",
            r"""
Nothing in next-token training refers to truth. The loss rewards the model for assigning
the training text high probability (the cross-entropy note); a false sentence that is
common in the data is rewarded like a true one, and a true fact seen once gives almost no
evidence. At generation time the softmax must put its unit of probability somewhere (the
softmax note: there is no "none of the above"), evaluations often score an abstention like
an error, and sampling draws a token from the tail now and then. These are different
mechanisms, and they respond to different fixes.
""",
        ),
        Section(
            "Likelihood is not truth",
            r"""
Take one question and the answers that follow it in the corpus, with frequencies $f$ (a
distribution over the possible answers). A model with logits $z$ answers with
""",
            Definition("p"),
            r"""
and its average log-likelihood on the corpus is $\sum_i f_i \log p_i$. Its shortfall from
the best possible value is the KL divergence $\sum_i f_i \log (f_i / p_i)$ (the
cross-entropy note, [[cross-entropy:ce-h-kl]]), and written with the ratios
$r_i = p_i / f_i$ it is a sum of terms that are never negative:
""",
            Step(
                "sum(f * log(f)) - sum(f * log(p)) == sum(f * (p / f - 1 - log(p / f)))",
                "add $\\sum_i (p_i - f_i) = 0$",
                label="kl-terms",
            ),
            r"""
Each term $f_i (r_i - 1 - \log r_i)$ is $\ge 0$, because $\log r \le r - 1$, with equality
only at $r_i = 1$. So the KL divergence is never negative (Gibbs' inequality) and is zero
only at $p = f$: **the maximum-likelihood model reproduces the corpus frequencies**, and
the loss gradient [[cross-entropy:ce-grad]] vanishes exactly there. The loss contains
$f$, and nothing else about the answers; whether an answer is true does not enter.

A small example: a question whose true answer follows it in """
            + _pct(CORPUS[0])
            + r""" of the corpus and a popular misconception in """
            + _pct(CORPUS[1])
            + r""". The maximum-likelihood model states the misconception """
            + _pct(CORPUS[1])
            + r""" of the time, at a cross-entropy of """
            + f"{CE_ML:.3f}"
            + r""" nats. A model that puts """
            + _pct(HEDGE[0])
            + r""" on the truth has the higher cross-entropy """
            + f"{CE_TRUTHFUL:.3f}"
            + r""": training prefers the model that repeats the falsehood (the test file
checks this by searching all two-answer models on a fine grid).
""",
            r"""
*Mitigation in the formula*: only $f$ can change. Curating the data lowers the frequency
of the misconception; fine-tuning on preferences changes the objective so that it is no
longer the likelihood of the corpus.
""",
        ),
        Section(
            "Facts seen once: the missing mass",
            r"""
Now let the training data be $N$ independent draws from a distribution $\pi$ over a very
large set of arbitrary facts (birthdays, say: each one appears in the data or it does not,
and nothing about the others predicts it). After the sample, the *missing mass* $M_0$ is the
total probability of the facts that were never drawn, and $N_1$ is the number of facts
drawn exactly once. Good and Turing's estimate [@good1953] of the missing mass is the
fraction of the sample made of such singletons, $N_1 / N$. Its expectation is close to that
of $M_0$. The steps below compute both expectations by enumerating all $3^N$ samples from a
distribution of three facts, $\pi = (a, (1-a)b, (1-a)(1-b))$, and compare with closed forms:
""",
            Step(
                (expected_missing_mass, _closed(0, 1)),
                "$\\Pr[x \\text{ unseen}] = (1 - \\pi_x)^N$, linearity",
                label="gt-missing",
                display=r"\mathbb{E}[M_0] = \sum_x \pi_x (1 - \pi_x)^{N}",
            ),
            Step(
                (expected_singleton_fraction, _closed(1, 1)),
                "$\\Pr[x \\text{ seen once}] = N \\pi_x (1 - \\pi_x)^{N-1}$",
                label="gt-singletons",
                display=r"\mathbb{E}[N_1 / N] = \sum_x \pi_x (1 - \pi_x)^{N-1}",
            ),
            Step(
                (good_turing_bias, _closed(1, 2)),
                "subtract: $(1-\\pi_x)^{N-1} - (1-\\pi_x)^{N} = \\pi_x (1-\\pi_x)^{N-1}$",
                label="gt-bias",
                display=r"\mathbb{E}[N_1 / N] - \mathbb{E}[M_0] = "
                r"\sum_x \pi_x^2 (1 - \pi_x)^{N-1}",
            ),
            r"""
Each $\pi_x (1 - \pi_x)^{N-1}$ is at most $1/N$ (its maximum over $\pi_x$ is at
$\pi_x = 1/N$), and $\sum_x \pi_x = 1$, so the singleton fraction overestimates the
missing mass on average by between $0$ and $1/N$ (checked over a grid in the test file).
For arbitrary facts the missing mass is what the model cannot know: the facts it never
saw, in proportion to how often they would be asked about.

Kalai and Vempala [@kalai2024] turn this into a lower bound on hallucination. In their
model, documents each state one arbitrary fact, drawn from a distribution over a set of
possible facts; the model generates documents, and a generated fact that is not true is a
hallucination. A model is *calibrated*, in their sense, when the statements to which it
gives probability in any one range (a bin, $b$ of them) have, under the true distribution,
the same total probability as under the model; the miscalibration
$\mathrm{Mis}_b$ measures the departure from this, summed over the bins. Their main result,
Theorem 1, is quoted here with its error terms: for any $\delta \in (0, 1]$, with
probability at least $1 - \delta$ over the $N$ training documents,
$$
\text{hallucination rate} \;\ge\; \widehat{\mathrm{MF}} \;-\; \mathrm{Mis}_b
\;-\; \frac{3 e^{-m}}{\delta} \;-\; \sqrt{\frac{6 \ln(6/\delta)}{N}},
$$
where $\widehat{\mathrm{MF}}$, the *monofact rate*, is the fraction of training documents
whose fact appears exactly once, $N_1 / N$ above, and $e^{-m}$ comes from the paper's
sparsity assumption: the true facts are few, about a fraction $e^{-m}$ of the plausible
statements, and no one fact has much probability. The paper's introduction quotes the
bound at confidence level 0.99 ($\delta = 1/100$), where the third term reads
$300\,|\text{facts}| / |\text{possible hallucinations}|$ and the last is at most
$7/\sqrt{N}$ ($\sqrt{6 \ln 600} \approx$ """
            + _num(KV_ROOT)
            + r"""). The bound says nothing
for facts that appear often, and nothing about systematic facts (arithmetic), which
are not arbitrary. The mechanism is [[gt-missing]] and [[gt-singletons]]: a calibrated
model must give the unseen facts about the missing mass, it cannot tell which of the many
plausible unseen statements are true, and so most of that mass goes to falsehoods. Kalai,
Nachum, Vempala and Zhang [@kalai2025] give a related bound for the error of a base model
through the singleton rate $\mathrm{sr}$ of its prompts (their Theorem 2, quoted),
$$
\mathrm{err} \;\ge\; \mathrm{sr} - \frac{2}{\min |\mathcal{E}|}
- \frac{35 + 6 \ln N}{\sqrt{N}} - \delta_{\mathrm{cal}},
$$
where $|\mathcal{E}|$ is the number of plausible wrong answers to a prompt (the minimum is
over prompts) and $\delta_{\mathrm{cal}}$ is a calibration error of the model (their $\delta$,
renamed here: above, $\delta$ is a confidence level).

*Mitigation in the formula*: the bound is driven by $N_1 / N$. Facts that appear many times
are not singletons and carry no such floor; retrieval supplies the fact at answer time,
which takes it out of the model's missing mass. Giving up calibration (answering "I don't
know" on low-evidence facts) escapes the bound too, which is the next section's subject.
""",
        ),
        Section(
            "Grading rewards guessing",
            r"""
Suppose an evaluation gives $1$ for a right answer, $0$ for "I don't know", and $-t/(1-t)$
for a wrong answer, for a threshold $t \in (0, 1)$ announced with the question
[@kalai2025]. A model whose answer is right with probability $c$ expects, if it answers,
""",
            Step(
                (expected_score, (c - t) / (1 - t)),
                "$c \\cdot 1 + (1 - c) \\cdot (-t/(1-t))$ over a common denominator",
                label="score",
                display=r"c \cdot 1 + (1 - c)\left(-\frac{t}{1-t}\right) = \frac{c - t}{1 - t}",
            ),
            r"""
Since $1 - t > 0$, answering beats abstaining (score $0$) exactly when $c > t$. Ordinary
right-or-wrong grading is the case $t = 0$: the expected score of a guess is $c$, which is
positive for every $c > 0$, so a model optimized for such benchmarks should never abstain,
however unsure it is. This is the second of the two causes that [@kalai2025] identify:
the first, statistical, is in the previous two sections; this one is an incentive.

*Mitigation in the formula*: choose $t > 0$. Then the best policy is to answer only when
$c > t$, and a model that does so, with calibrated $c$, makes wrong statements only on
questions where it is more than $t$ sure.
""",
        ),
        Section(
            "Attention dilution",
            r"""
In a long context, a single relevant token whose score exceeds $n - 1$ others by a gap
$\Delta$ gets attention weight $e^{\Delta} / (e^{\Delta} + n - 1)$ (the attention note,
[[attention:dilution]]), which falls like $e^{\Delta} / n$; keeping it fixed needs a gap
that grows like $\log n$
([[attention:needed-score]]). A fact present in the context can therefore be diluted
below the model's prior, and the answer falls back to what the training frequencies say.

*Mitigation in the formula*: retrieval and reranking shorten the context (smaller $n$) and
put the relevant passage where the model attends to it (a larger gap $s$).
""",
        ),
        Section(
            "Sampling error accumulates",
            r"""
If every generated token is wrong with probability $\epsilon$, independently, an answer of
$L$ tokens contains no error with probability $(1 - \epsilon)^L$ (the decoding note,
[[decoding:avoid]], which checks this for a sampler whose distribution depends on the
prefix). For small $\epsilon$ this is $1 - L\epsilon$ plus a remainder given by the binomial
theorem:
""",
            Step(
                (
                    (1 - eps) ** L - (1 - L * eps),
                    sympy.Sum(sympy.binomial(L, j) * (-eps) ** j, (j, 2, L)),
                ),
                "binomial theorem, the terms $j = 0, 1$ moved left",
                label="expansion",
                numeric=no_error_by_enumeration,
                display=r"(1 - \epsilon)^L - (1 - L\epsilon) = "
                r"\sum_{j=2}^{L} \binom{L}{j} (-\epsilon)^j",
            ),
            r"""
The remainder starts with $+\binom{L}{2}\epsilon^2$, and in fact $1 - L\epsilon \le
(1-\epsilon)^L \le e^{-L\epsilon}$ for all $\epsilon \in [0, 1]$: the first-order formula
is a lower bound, accurate while $L\epsilon \ll 1$, and the error-free probability decays
exponentially once $L\epsilon$ is of order one.

Where does $\epsilon$ come from? Take the simplest picture: the right token has a logit
$\Delta$ above each of $m$ wrong tokens, and sampling is at temperature $T$. Then the
per-token error and its rate of change with $T$ are
""",
            Definition("eps"),
            Step(
                "eps == sigmoid(log(m) - Delta / T)",
                "divide by $1 + m e^{-\\Delta/T}$ top and bottom; $m = e^{\\log m}$",
                label="eps-sigmoid",
            ),
            Step(
                "grad(eps, T) == eps * (1 - eps) * Delta / T**2",
                "$\\sigma' = \\sigma (1 - \\sigma)$, chain rule",
                label="deps-dt",
            ),
            r"""
This is the dilution law again, with $s = \Delta / T$ and $m = n - 1$: $1 - \epsilon$ is
the weight of one token against $m$ rivals. The rate [[deps-dt]] is positive, so **the
per-token error grows with the temperature**, and the growth is fast: $\epsilon$ is about
$m e^{-\Delta/T}$ while it is small. With $m = """
            + f"{RIVALS:g}"
            + r"""$ rivals and a gap $\Delta = """
            + f"{GAP:g}"
            + r"""$, $\epsilon$ is """
            + ", ".join(f"{_num(EPS_AT[x])} at $T = {x:g}$" for x in TEMPS)
            + r"""; over $L = """
            + str(LENGTH)
            + r"""$ tokens the chance of no error is then """
            + ", ".join(f"{NO_ERROR_AT[x]:.2g}" for x in TEMPS)
            + r""" ([[fig-accumulation]]).""",
            Figure(
                "accumulation",
                r"Left: the per-token error $\epsilon$ of [[eps-sigmoid]] against the "
                f"temperature, for $m = {RIVALS:g}$ rivals and three logit gaps $\\Delta$. "
                "Right: the probability $(1 - \\epsilon)^L$ of an error-free answer against "
                f"its length, for $\\Delta = {GAP:g}$ at three temperatures; dotted: the "
                "first-order lower bound $1 - L\\epsilon$ of [[expansion]]. Both evaluated "
                "from the verified formula for $\\epsilon$.",
                draw_accumulation,
                label="fig-accumulation",
            ),
            r"""
*Mitigation in the formula*: a lower temperature [[deps-dt]], a truncation that drops the
wrong tokens' tail (top-p, the decoding note), or a larger gap $\Delta$ (more evidence in
the context, a better-trained model) all lower $\epsilon$; shorter answers lower $L$.
""",
        ),
        Section(
            "What the formulas say together",
            r"""
- **Training matches frequencies** ([[kl-terms]]): falsehoods common in the data are
  reproduced at their frequency; no loss value can tell them apart from truths.
- **Rare facts leave a floor** ([[gt-missing]], [[gt-singletons]]): for arbitrary facts a
  calibrated model hallucinates at about the rate of facts seen once. Lowering it means
  more repetitions of the facts, retrieval, or giving up calibration by abstaining.
- **Evaluation sets the incentive** ([[score]]): with no credit for abstaining, guessing
  is always optimal; a stated threshold $t$ makes abstaining optimal below confidence $t$.
- **Context and decoding add errors** ([[attention:dilution]], [[deps-dt]]): long contexts
  dilute evidence, and every increase of temperature adds error probability that compounds
  over the length of the answer.
- **About the checks.** Steps [[gt-missing]] to [[gt-bias]], [[score]] and [[expansion]] are
  identities in scalar parameters. Each compares an enumeration (of samples, outcomes or
  binomial terms) with a closed form, exactly at random rational values; their float64
  pass re-evaluates the same two sides and is not an independent second route. The
  inequalities in the prose (Gibbs, the $1/N$ bias bound, the bounds on $(1-\epsilon)^L$)
  are argued in the prose rather than numbered; the test file checks them on grids.
""",
        ),
    ),
    references=(
        Reference(
            "good1953",
            "I. J. Good. The population frequencies of species and the estimation of population "
            "parameters. *Biometrika* 40(3-4):237-264, 1953.",
            "https://doi.org/10.1093/biomet/40.3-4.237",
        ),
        Reference(
            "kalai2024",
            "A. T. Kalai, S. S. Vempala. Calibrated language models must hallucinate. In "
            "*Proceedings of the 56th Annual ACM Symposium on Theory of Computing (STOC 2024)*, "
            "2024.",
            "https://arxiv.org/abs/2311.14648",
        ),
        Reference(
            "kalai2025",
            "A. T. Kalai, O. Nachum, S. S. Vempala, E. Zhang. Why language models hallucinate. "
            "arXiv:2509.04664, 2025.",
            "https://arxiv.org/abs/2509.04664",
        ),
    ),
)
