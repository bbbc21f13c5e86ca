"""Note 1: the cross-entropy loss of next-token prediction, its gradient and log-sum-exp."""

import numpy as np
import sympy

from engine import build_environment, parse_formula, to_numpy
from engine.notes import Chain, Definition, Figure, Note, Reference, Section, Step
from engine.notes.symbols import Named, array, delta, indices, size, total

n = size("n")
z, y = array("z"), array("y")
i, j, k, t = indices("i j k t")


def p(a):
    """p_a = softmax(z)_a, unfolded when a step is checked."""
    return Named("p", sympy.exp(z[a]) / total(sympy.exp(z[k]), k, n), a)


L = Named("L", -total(y[i] * sympy.log(p(i)), i, n))

# Numbers quoted in the prose, computed here (not typed): the shifted log-sum-exp of the
# figure's logits (m, m-1, m-2, m-3.5) minus m, by the engine's logsumexp, and the largest
# exponent before exp overflows in float64.
FIGURE_LOGITS = np.array([0.0, -1.0, -2.0, -3.5])
LSE_TAIL = float(
    to_numpy(parse_formula("logsumexp(z)", build_environment({"z": "real[n]"})))(z=FIGURE_LOGITS)
)
EXP_OVERFLOW = float(np.log(np.finfo(float).max))
_mantissa, _exponent = f"{np.finfo(float).max:.1e}".split("e")
DOUBLE_MAX = rf"{_mantissa} \times 10^{{{int(_exponent)}}}"


def draw_overflow(ctx):
    """Naive log(sum(exp(z))) against the verified log-sum-exp, as the logits move."""
    base = FIGURE_LOGITS
    shifts = np.linspace(-1000.0, 1000.0, 2001)
    naive, stable = [], []
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        for c in shifts:
            values = {"z": base + c}
            naive.append(float(ctx.evaluate("log(sum(exp(z)))", values)) - c)
            stable.append(float(ctx.evaluate("logsumexp(z)", values)) - c)
    naive_arr = np.array(naive)
    broken = ~np.isfinite(naive_arr)
    naive_arr[broken] = np.nan
    low = float(np.log(np.finfo(float).smallest_subnormal))
    high = float(np.log(np.finfo(float).max))
    fig = ctx.figure(5.5, 2.8)
    ax = fig.add_subplot()
    ax.axvspan(shifts[0], low, color="C3", alpha=0.12, lw=0)
    ax.axvspan(high, shifts[-1], color="C3", alpha=0.12, lw=0)
    ax.plot(
        shifts, np.array(stable), lw=3.0, color="C0", label=r"$\mathrm{logsumexp}(z) - m$ (shifted)"
    )
    ax.plot(
        shifts,
        naive_arr,
        lw=1.4,
        ls="--",
        color="C3",
        label=r"$\log(\mathrm{sum}(\exp z)) - m$ (naive)",
    )
    ax.text(
        (shifts[0] + low) / 2, 0.8, f"naive\n$= -\\infty$\n$m < {low:.0f}$", ha="center", fontsize=7
    )
    ax.text(
        (shifts[-1] + high) / 2,
        0.8,
        f"naive\n$= \\infty$\n$m > {high:.0f}$",
        ha="center",
        fontsize=7,
    )
    ax.set_xlim(shifts[0], shifts[-1])
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("largest logit $m$")
    ax.set_ylabel("value minus $m$")
    ax.legend(loc="lower center", frameon=False)
    return fig


NOTE = Note(
    name="cross-entropy",
    order=1,
    title="Cross-entropy loss and next-token prediction",
    summary=r"""
A language model is trained to predict the next token, and the loss it minimises is the
cross-entropy between the observed token and the model's softmax distribution. This note
shows that this is maximum likelihood, that minimising cross-entropy is the same as
minimising a KL divergence ($\mathrm{CE} = H + \mathrm{KL}$), derives the famous gradient
$p - y$ step by step in index notation, and explains the log-sum-exp trick that keeps the
loss finite when logits are large.
""",
    vars={"z": "real[n]", "y": "simplex[n]", "c": "real"},
    defs={"p": "softmax(z)"},
    arrays={"z": "real[n]", "y": "simplex[n]"},
    indices={"i": "n", "j": "n", "t": "n"},
    sections=(
        Section(
            "Intuition",
            r"""
At every position a language model reads a prefix and outputs one score (a *logit*) $z_i$
for each of the $n$ tokens of its vocabulary. The softmax turns the scores into a
probability distribution $p$ over the next token. Training shows the model the token that
actually came next and asks: how much probability did you give it? The loss is the
negative logarithm of that probability. A confident correct prediction costs almost
nothing; a confident wrong one costs a lot, without bound as $p_t \to 0$.
""",
            r"""
Everything below is stated for one position; a training batch averages the same loss over
all positions of all sequences, so every formula carries over by linearity.
""",
        ),
        Section(
            "Formulation: maximum likelihood",
            r"""
Write the model's prediction as the softmax of the logits, and the target as a
distribution $y$ over the vocabulary (one-hot for an observed token, a soft label in
distillation or label smoothing).
""",
            Definition("p"),
            Definition(p(i), p(i).body),
            r"""
The cross-entropy of the prediction $p$ against the target $y$ is the expected negative
log-probability under the target:
""",
            Definition("cross_entropy(p, y)", "-sum(y * log(p))"),
            r"""
For an observed token $t$ the target is one-hot, $y_i = \delta_{it}$, and the sum keeps a
single term: the loss is the negative log-likelihood of the token that occurred.
""",
            Step(
                (-total(delta(i, t) * sympy.log(p(i)), i, n), -sympy.log(p(t))),
                "only $i = t$ survives",
                label="ce-onehot",
            ),
            r"""
The likelihood of a whole training corpus is the product of these per-token probabilities
(by the chain rule of probability, $P(x_1, \dots, x_T) = \prod_s P(x_s \mid x_{<s})$), so
its logarithm is a sum of per-token log-probabilities. Maximising the likelihood is
therefore *exactly* minimising the summed cross-entropy [[ce-onehot]]: next-token
training is maximum-likelihood estimation [@goodfellow2016].
""",
        ),
        Section(
            "Cross-entropy is entropy plus KL divergence",
            r"""
Split the log-probability as $\log p_i = \log y_i - \log (y_i / p_i)$. The first part
gives the entropy of the target, which the model cannot change; the second gives the
Kullback--Leibler divergence from the target to the model [@cover2006]:
""",
            Step(
                "cross_entropy(p, y) == entropy(y) + kl(y, p)",
                "add and subtract $\\sum_i y_i \\log y_i$",
                label="ce-h-kl",
            ),
            r"""
Because $H(y)$ does not depend on the logits, both objectives have the same gradient, and
so the same minimisers. Maximum likelihood, minimum cross-entropy and minimum
$D_{\mathrm{KL}}(y \,\|\, p)$ are one and the same training signal:
""",
            Step(
                "grad(cross_entropy(p, y), z) == grad(kl(y, p), z)",
                "$H(y)$ is constant in $z$",
                label="ce-kl-grad",
            ),
            r"""
The KL divergence is zero exactly when $p = y$. For a one-hot target that needs an
infinite logit gap, so the loss keeps pushing but never reaches zero.
""",
        ),
        Section(
            "The gradient with respect to the logits",
            r"""
Write the loss as $L$ and differentiate with respect to one logit $z_j$. The only fact we
need about the softmax is the derivative of its logarithm. Since
$\log p_i = z_i - \log \sum_k e^{z_k}$,
""",
            Definition(L, L.body),
            Step(
                (sympy.Derivative(sympy.log(p(i)), z[j]), delta(i, j) - p(j)),
                "$\\partial_{z_j} \\log\\sum_k e^{z_k} = p_j$",
                label="dlogp",
            ),
            r"""
Now the chain rule, one line at a time; each line is checked on its own.
""",
            Chain(
                sympy.Derivative(L, z[j]),
                [
                    (
                        -total(y[i] * sympy.Derivative(sympy.log(p(i)), z[j]), i, n),
                        "linearity",
                    ),
                    (-total(y[i] * (delta(i, j) - p(j)), i, n), "by [[dlogp]]"),
                    (-y[j] + p(j) * total(y[i], i, n), "the $\\delta_{ij}$ picks $i = j$"),
                    (p(j) - y[j], "$\\sum_i y_i = 1$", "ce-grad-index"),
                ],
            ),
            r"""
In vector form this is the identity every deep-learning framework implements for its fused
softmax-cross-entropy kernel:
""",
            Step(
                "grad(cross_entropy(p, y), z) == p - y",
                "[[ce-grad-index]] for every $j$",
                label="ce-grad",
            ),
            r"""
Read the gradient as a tug of war. Gradient descent moves $z$ along $y - p$: the observed
token's logit rises by its *missing* probability $1 - p_t$, and every other token's logit
falls by the probability $p_i$ the model wasted on it. The pushes cancel,
$\sum_i (p_i - y_i) = 0$, so the update only reshuffles mass between tokens. When the model
is already right ($p \approx y$) the gradient vanishes: cross-entropy stops teaching what the
model already predicts with confidence.
""",
            Step(
                "sum(grad(cross_entropy(p, y), z)) == 0",
                "$\\sum_i p_i = \\sum_i y_i = 1$",
                label="ce-grad-sum",
            ),
        ),
        Section(
            "The log-sum-exp trick",
            rf"""
Computing $p = \mathrm{{softmax}}(z)$ and then $\log p_t$ is a bad idea in floating point.
The largest double is about ${DOUBLE_MAX}$, so $e^{{z}}$ overflows to infinity as soon
as $z > \log({DOUBLE_MAX}) \approx {EXP_OVERFLOW:.2f}$, and small probabilities underflow to
zero, where $\log 0 = -\infty$. Both happen with realistic logits (large activations,
low temperatures). The cure is an exact identity: shifting all logits by any constant $c$
changes nothing.
""",
            Step(
                "logsumexp(z) == c + log(sum(exp(z - c)))",
                "$e^{z_k} = e^{c} e^{z_k - c}$",
                label="lse-shift",
            ),
            r"""
Choosing $c = m = \max_k z_k$ makes every exponent $z_k - m \le 0$, so nothing overflows,
and the largest term is exactly $1$, so the sum is at least $1$ and its logarithm is
finite [@blanchard2021]. Then never form $p$ at all: compute the loss from the logits.
""",
            Step(
                "cross_entropy(p, y) == logsumexp(z) - sum(y * z)",
                "$\\log p_i = z_i - \\operatorname{logsumexp}(z)$ and $\\sum_i y_i = 1$",
                label="ce-lse",
            ),
            r"""
For an observed token $t$ (a one-hot target, $y_i = \delta_{it}$) the last term is $z_t$:
the loss is $\operatorname{logsumexp}(z) - z_t$, computed from the logits alone.
""",
            Figure(
                "overflow",
                r"""
Log-sum-exp of the four logits $z = (m, m-1, m-2, m-3.5)$, minus $m$, evaluated in
float64 from the naive form and from the engine's log-sum-exp, which uses the shift of
[[lse-shift]]. The naive form only works in a window: beyond it $e^{m}$ overflows to
infinity, or every $e^{z_k}$ underflows to zero and the logarithm is $-\infty$ (shaded).
"""
                + rf"""The shifted form gives $\log(1 + e^{{-1}} + e^{{-2}} + e^{{-3.5}}) \approx
{LSE_TAIL:.4f}$ for every $m$.
""",
                draw_overflow,
                label="fig-overflow",
            ),
        ),
        Section(
            "Implications for language models",
            r"""
- **Likelihood is not truth.** Maximum likelihood fits the distribution of the training
  text, not the facts it describes. A falsehood that is common in the data earns a high
  likelihood, and a true statement phrased unusually earns a low one. Minimising
  [[ce-h-kl]] rewards imitation, which is one root of confident hallucination.
- **KL toward the data is mass-covering.** $D_{\mathrm{KL}}(y \,\|\, p)$ punishes
  $p_i \approx 0$ wherever the data has $y_i > 0$, so a trained model spreads some
  probability over every continuation it has seen plausible in similar contexts. Sampling
  then sometimes picks one of those low-probability, possibly wrong, tokens. Kalai and
  Vempala show that a calibrated language model (calibration is what the log loss rewards)
  must hallucinate arbitrary facts at a rate close to the fraction of such facts seen only
  once in its training data [@kalai2024].
- **No reward for abstaining.** The loss [[ce-onehot]] only asks for probability on the
  observed token. Unless the data contain "I don't know" in the right places, nothing in
  next-token training teaches the model to say it.
- **Saturation.** The gradient $p - y$ [[ce-grad]] vanishes on tokens the model already
  predicts confidently, and is largest on tokens it gets wrong; label smoothing (a soft
  $y$) keeps a small push even on confident tokens, and [[ce-h-kl]] still holds for it.
- **Numerics.** Production kernels compute [[ce-lse]] from the logits with the shift of
  [[lse-shift]] and never materialise $\log p$ through $p$.
""",
        ),
    ),
    references=(
        Reference(
            "goodfellow2016",
            "I. Goodfellow, Y. Bengio, A. Courville. *Deep Learning*, MIT Press, 2016, "
            "Sections 5.5 (maximum likelihood) and 6.2.2 (softmax units).",
            "https://www.deeplearningbook.org/",
        ),
        Reference(
            "cover2006",
            "T. M. Cover, J. A. Thomas. *Elements of Information Theory*, 2nd ed., Wiley, "
            "2006, Chapter 2.",
        ),
        Reference(
            "blanchard2021",
            "P. Blanchard, D. J. Higham, N. J. Higham. Accurately computing the log-sum-exp "
            "and softmax functions. *IMA Journal of Numerical Analysis* 41(4), 2021.",
            "https://doi.org/10.1093/imanum/draa038",
        ),
        Reference(
            "kalai2024",
            "A. T. Kalai, S. S. Vempala. Calibrated language models must hallucinate. *STOC 2024*.",
            "https://arxiv.org/abs/2311.14648",
        ),
    ),
)
