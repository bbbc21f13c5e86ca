"""Note 2: softmax and token competition: the Jacobian, shift invariance and temperature."""

import numpy as np
import sympy
from matplotlib.ticker import MaxNLocator

from engine.notes import Chain, Definition, Figure, Note, Reference, Section, Step
from engine.notes.symbols import Named, array, delta, indices, param, size, total

n = size("n")
z = array("z")
i, j, k, r = indices("i j k r")
T = param("T", "positive")
eps = param("eps", "unit")
ell = param("ell", "integer")

S = Named("S", total(sympy.exp(z[k]), k, n))


def p(a):
    """p_a = softmax(z)_a."""
    return Named("p", sympy.exp(z[a]) / total(sympy.exp(z[k]), k, n), a)


def q(a):
    """q_a = softmax(z / T)_a, the distribution at temperature T."""
    return Named("q", sympy.exp(z[a] / T) / total(sympy.exp(z[k] / T), k, n), a)


mu = Named("mu", total(q(r) * z[r], r, n))
H = Named("H", -total(q(i) * sympy.log(q(i)), i, n))

LOGITS = np.array([3.0, 2.2, 1.5, 0.4, 0.0, -0.8, -1.6, -2.5])


def draw_competition(ctx):
    """Every probability as the first logit is raised: the first gains what all others lose."""
    gains = np.linspace(-4.0, 6.0, 201)
    probs = np.array([ctx.evaluate("p", {"z": LOGITS[:5] + np.eye(5)[0] * g}) for g in gains])
    jac = np.array(
        [ctx.evaluate(ctx.step("jacobian")[1], {"z": LOGITS[:5] + np.eye(5)[0] * g}) for g in gains]
    )
    fig = ctx.figure(6.3, 2.4)
    left, right = fig.subplots(1, 2)
    for a in range(5):
        left.plot(gains, probs[:, a], label=f"$p_{a + 1}$", lw=2.4 if a == 0 else 1.4)
        right.plot(gains, jac[:, a, 0], lw=2.4 if a == 0 else 1.4)
    left.set_xlabel("change of the first logit")
    left.set_ylabel("probability")
    left.legend(frameon=False, fontsize=7, ncol=1)
    right.axhline(0.0, color="0.3", lw=0.8)
    right.set_xlabel("change of the first logit")
    right.set_ylabel(r"$\partial p_i / \partial z_1$")
    fig.tight_layout()
    return fig


def draw_temperature(ctx):
    """The distribution at three temperatures, its entropy, and the verified dH/dT."""
    temps = np.geomspace(0.05, 20.0, 241)
    ent = np.array([float(ctx.evaluate("entropy(q)", {"z": LOGITS, "T": t})) for t in temps])
    slope_expr = ctx.step("dh-dt-vector")[1]
    slope = np.array([float(ctx.evaluate(slope_expr, {"z": LOGITS, "T": t})) for t in temps])
    finite = np.gradient(ent, temps)
    fig = ctx.figure(6.3, 2.6)
    dist, entropy, rate = fig.subplots(1, 3)
    ranks = np.arange(1, len(LOGITS) + 1)
    for t in (0.3, 1.0, 3.0):
        dist.plot(
            ranks, ctx.evaluate("q", {"z": LOGITS, "T": t}), marker="o", ms=3, label=f"$T = {t:g}$"
        )
    dist.set_xlabel("token (by logit)")
    dist.set_ylabel("probability")
    dist.legend(frameon=False, fontsize=7)
    dist.xaxis.set_major_locator(MaxNLocator(integer=True))  # tokens are counted
    entropy.semilogx(temps, ent, lw=2.0)
    entropy.axhline(np.log(len(LOGITS)), color="0.4", ls=":", lw=1.0)
    entropy.text(0.06, np.log(len(LOGITS)) - 0.25, r"$\log n$", fontsize=7, color="0.3")
    entropy.set_xlabel("temperature $T$")
    entropy.set_ylabel("entropy $H$ (nats)")
    rate.semilogx(temps, slope, lw=2.0, label=r"$\mathrm{Var}_q(z) / T^3$ (verified)")
    rate.semilogx(temps[::12], finite[::12], "o", ms=3, color="C3", label="slope of $H$")
    rate.set_xlabel("temperature $T$")
    rate.set_ylabel(r"$\mathrm{d}H / \mathrm{d}T$")
    # Above the axes: inside, any corner would cover the curve or the finite differences.
    rate.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def first_error_by_enumeration(values) -> float:
    """the chance of at least one error, summed over all 2^ell error patterns in float64"""
    import itertools

    eps, ell = values["eps"], values["ell"]
    total_ = 0.0
    for pattern in itertools.product((False, True), repeat=ell):
        if any(pattern):
            k = sum(pattern)
            total_ += eps**k * (1 - eps) ** (ell - k)
    return total_


NOTE = Note(
    name="softmax",
    order=2,
    title="Softmax and token competition",
    summary=r"""
The softmax turns a vector of logits into a probability distribution, and because the
probabilities must sum to one, tokens compete: raising one logit lowers every other
probability. This note derives the softmax Jacobian $\operatorname{diag}(p) - p p^\top$ in
index notation, shows the competition ($\partial p_j / \partial z_i = -p_i p_j < 0$), shift
invariance, and how temperature trades confidence for diversity: the entropy never
decreases as the temperature rises (it increases strictly unless all logits are equal), at
the rate $\mathrm{d}H/\mathrm{d}T = \operatorname{Var}_q(z) / T^3$.
""",
    vars={"z": "real[n]", "v": "real[n]", "g": "real[n]", "c": "real", "T": "positive"},
    defs={"p": "softmax(z)", "q": "softmax(z / T)"},
    arrays={"z": "real[n]"},
    indices={"i": "n", "j": "n"},
    params={"T": "positive", "eps": "unit", "ell": "integer"},
    sections=(
        Section(
            "Intuition",
            r"""
A softmax has a fixed budget: one unit of probability, shared among all $n$ tokens. A
logit is a bid for a share of that budget, and a share can only grow if others shrink.
This is the *competition* between tokens that the rest of the note makes precise: the
derivative of any probability with respect to a rival's logit is negative, and the total
change of all probabilities is always zero.
""",
        ),
        Section(
            "Formulation",
            "The softmax [@bridle1990] of the logits $z$ is",
            Definition("p"),
            Definition(p(i), p(i).body),
            Definition(S, S.body),
            "The outputs are positive and sum to one, whatever the logits:",
            Step("sum(p) == 1", "$\\sum_i e^{z_i} = S$", label="sum-one"),
        ),
        Section(
            "The Jacobian, in index notation",
            r"""
Differentiate $p_i = e^{z_i} / S$ with respect to $z_j$. The numerator depends on $z_j$
only when $i = j$, and $\partial S / \partial z_j = e^{z_j}$; the quotient rule does the
rest.
""",
            Chain(
                sympy.Derivative(p(i), z[j]),
                [
                    (
                        (delta(i, j) * sympy.exp(z[i]) * S - sympy.exp(z[i]) * sympy.exp(z[j]))
                        / S**2,
                        "quotient rule",
                    ),
                    (
                        p(i) * (delta(i, j) - p(j)),
                        "$p_i = e^{z_i} / S$, $p_j = e^{z_j} / S$; factor $p_i$",
                        "jac-index",
                    ),
                ],
            ),
            r"""
Collected into a matrix, with $J_{ij} = \partial p_i / \partial z_j$, the diagonal part
is $\operatorname{diag}(p)$ and the rest is the outer product $p p^\top$:
""",
            Step(
                "jacobian(p, z) == diag(p) - outer(p, p)",
                "[[jac-index]] for all $i, j$",
                label="jacobian",
            ),
            r"""
In backpropagation nobody forms the $n \times n$ matrix: the vector-Jacobian product with
an upstream gradient $g$ costs $O(n)$, and this is the softmax backward pass used inside
every attention layer:
""",
            Step(
                "grad(sum(g * p), z) == p * (g - sum(p * g))",
                "$J^\\top g$ with $J$ from [[jacobian]]",
                label="softmax-vjp",
            ),
        ),
        Section(
            "Token competition",
            r"""
For two different tokens, $i \neq j$, the delta in [[jac-index]] is zero: raising a
rival's logit lowers every other token's probability, in proportion to both probabilities.
To state it for all pairs at once we multiply by $1 - \delta_{ij}$, which is zero on the
diagonal:
""",
            Step(
                (
                    (1 - delta(i, j)) * sympy.Derivative(p(j), z[i]),
                    -(1 - delta(i, j)) * p(i) * p(j),
                ),
                "[[jac-index]], off the diagonal",
                label="competition",
            ),
            r"""
The token whose logit rises gains $p_j (1 - p_j)$, and that gain is paid exactly by the
others: each column of the Jacobian sums to zero, because the total is always one
[[sum-one]].
""",
            Step(
                (sympy.Derivative(p(j), z[j]), p(j) * (1 - p(j))),
                "[[jac-index]] with $i = j$",
                label="self-gain",
            ),
            Step(
                (total(sympy.Derivative(p(i), z[j]), i, n), sympy.Integer(0)),
                "$\\sum_i p_i = 1$ for all $z$",
                label="zero-sum",
            ),
            r"""
The Jacobian is also symmetric and positive semi-definite: in any direction $v$ its
quadratic form is the variance of $v$ under $p$. So the softmax is the gradient of a
convex function, log-sum-exp, whose Hessian it is.
""",
            Step(
                "sum(v * (jacobian(p, z) @ v)) == sum(p * v**2) - sum(p * v)**2",
                "[[jacobian]], expand",
                label="psd",
            ),
            Step(
                "jacobian(grad(logsumexp(z), z), z) == diag(p) - outer(p, p)",
                "$\\nabla \\operatorname{logsumexp} = p$",
                label="lse-hessian",
            ),
            Figure(
                "competition",
                r"""
Left: the five probabilities of the logits $z = (3, 2.2, 1.5, 0.4, 0)$ as the first logit
is moved, evaluated from the verified definition of $p$. Right: the first column of the
Jacobian [[jacobian]], $\partial p_i / \partial z_1$: positive for $p_1$ itself
[[self-gain]], negative for every rival [[competition]], summing to zero [[zero-sum]].
""",
                draw_competition,
                label="fig-competition",
            ),
        ),
        Section(
            "Shift invariance",
            r"""
Adding the same constant $c$ to every logit multiplies numerator and denominator by
$e^{c}$, so the distribution does not change. Logits are only defined up to a constant,
and the direction $\mathbf{1}$ is in the null space of the Jacobian:
""",
            Step("softmax(z + c) == softmax(z)", "$e^{z_i + c} = e^{c} e^{z_i}$", label="shift"),
            Step(
                "jacobian(p, z) @ ones(n) == 0 * ones(n)",
                "rows of [[jacobian]] sum to $p_i - p_i \\sum_j p_j$",
                label="null-ones",
            ),
            r"""
This is why a model can subtract the maximum logit before exponentiating without
changing any probability (the log-sum-exp trick, equation [[cross-entropy:lse-shift]] of
the cross-entropy note), and why only logit *differences* carry information.
""",
        ),
        Section(
            "Temperature",
            r"""
Sampling at temperature $T$ divides the logits by $T$ before the softmax. Low
temperature sharpens the distribution toward the most likely token (greedy decoding is
the limit $T \to 0$); high temperature flattens it toward uniform [@hinton2015].
""",
            Definition("q"),
            Definition(q(i), q(i).body),
            Definition(mu, mu.body),
            Definition(H, H.body),
            r"""
How fast does the entropy $H = -\sum_i q_i \log q_i$ of the sampled distribution change
with $T$? First the derivative of one probability: $\log q_i = z_i / T - \log \sum_k
e^{z_k / T}$, so its $T$-derivative is $-(z_i - \mu)/T^2$, where $\mu$ is the mean logit
under $q$.
""",
            Step(
                (sympy.Derivative(q(i), T), -q(i) * (z[i] - mu) / T**2),
                "$\\partial_T \\log q_i = -(z_i - \\mu)/T^2$",
                label="dq-dt",
            ),
            r"""
Then the entropy, one line at a time. The term $-\sum_i \partial_T q_i$ that the product
rule produces vanishes because $\sum_i q_i = 1$; the term with $\log \sum_k e^{z_k/T}$
vanishes because $\sum_i q_i (z_i - \mu) = 0$; what is left is a variance.
""",
            Chain(
                sympy.Derivative(H, T),
                [
                    (
                        -total(sympy.Derivative(q(i), T) * sympy.log(q(i)), i, n),
                        "product rule, $\\sum_i \\partial_T q_i = 0$",
                    ),
                    (
                        total(q(i) * (z[i] - mu) * sympy.log(q(i)), i, n) / T**2,
                        "by [[dq-dt]]",
                    ),
                    (
                        total(q(i) * (z[i] - mu) * z[i], i, n) / T**3,
                        "$\\log q_i = z_i/T - \\log \\sum_k e^{z_k/T}$",
                    ),
                    (
                        total(q(i) * (z[i] - mu) ** 2, i, n) / T**3,
                        "subtract $\\mu \\sum_i q_i (z_i - \\mu) = 0$",
                        "dh-dt-index",
                    ),
                ],
            ),
            "In vector form, with $\\operatorname{Var}_q(z) = \\sum_i q_i z_i^2 - \\mu^2$:",
            Step(
                "grad(entropy(q), T) == (sum(q * z**2) - sum(q * z)**2) / T**3",
                "[[dh-dt-index]]",
                label="dh-dt-vector",
            ),
            r"""
A variance is never negative, so **the entropy never decreases with temperature**, and
it is strictly increasing unless all logits are equal. At $T \to \infty$ every token gets
$1/n$ and the entropy reaches its maximum, $n$ terms of $-\frac{1}{n} \log \frac{1}{n}$,
which add up to $\log n$.
""",
            Figure(
                "temperature",
                r"""
Eight logits at three temperatures (left); the entropy of $\operatorname{softmax}(z/T)$
climbing from $0$ toward $\log 8$, the entropy of the uniform distribution (middle); and its
rate of change
from the verified formula [[dh-dt-vector]] (line), against the numerical slope of the
middle curve (dots). The entropy grows fastest where the spread of the logits under $q$
is large compared with $T^3$.
""",
                draw_temperature,
                label="fig-temperature",
            ),
        ),
        Section(
            "Implications for language models",
            r"""
- **Competition is built in.** Because of [[zero-sum]], the only way training can raise
  the probability of the correct token is by lowering others; the cross-entropy gradient
  $p - y$ is this competition seen from the loss.
- **There is no "none of the above".** The outputs always sum to one [[sum-one]]. When the
  model has no good continuation (an unknowable fact, a question outside its data), the
  probability still has to go somewhere, and it goes to the most plausible-looking tokens.
  Fluent text is produced with the same mechanism whether or not it is true.
- **Sampling is randomness by design.** At $T = 1$ a token that has probability
  $\epsilon$ is emitted with probability $\epsilon$, at every step. If each of $\ell$
  steps risks an error with probability $\epsilon$, the first error comes within $\ell$
  steps with probability $1 - (1 - \epsilon)^{\ell}$ [[first-error]]: small per-token
  risks compound over long answers [@holtzman2020] (the hallucination note,
  [[hallucination:deps-dt]], shows how temperature sets $\epsilon$).
- **Temperature is a dial between repetition and error.** By [[dh-dt-vector]], raising
  $T$ always adds entropy: more diverse text, and more low-probability (possibly false)
  tokens. Lowering it concentrates on the mode, which is only as truthful as the mode of
  the training distribution.
- **Logits are relative.** Shift invariance [[shift]] means a logit alone says nothing;
  a raw logit is not a confidence score.
""",
            Step(
                (
                    total(eps * (1 - eps) ** r, r, ell),
                    1 - (1 - eps) ** ell,
                ),
                "geometric series: first error at step $r + 1$",
                label="first-error",
                numeric=first_error_by_enumeration,
            ),
        ),
    ),
    references=(
        Reference(
            "bridle1990",
            "J. S. Bridle. Probabilistic interpretation of feedforward classification network "
            "outputs, with relationships to statistical pattern recognition. In "
            "*Neurocomputing*, NATO ASI Series F 68, Springer, 1990.",
        ),
        Reference(
            "hinton2015",
            "G. Hinton, O. Vinyals, J. Dean. Distilling the knowledge in a neural network. "
            "NIPS Deep Learning Workshop, 2015.",
            "https://arxiv.org/abs/1503.02531",
        ),
        Reference(
            "holtzman2020",
            "A. Holtzman, J. Buys, L. Du, M. Forbes, Y. Choi. The curious case of neural text "
            "degeneration. *ICLR 2020*.",
            "https://arxiv.org/abs/1904.09751",
        ),
    ),
)
