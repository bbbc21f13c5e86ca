"""Note 5: SGD, momentum and AdamW: minibatch noise, heavy ball, decoupled decay, clipping."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy

from engine.notes import Definition, Figure, Note, Reference, Section, Step
from engine.notes.symbols import param

DATA = 6  # examples in the small dataset whose minibatches are enumerated
GRADS = [param(f"g{i}", "real") for i in range(1, DATA + 1)]  # per-example gradients
B = param("B", "integer")  # the batch size
eta, h, rho = param("eta", "positive"), param("h", "positive"), param("rho", "unit")
kappa = param("kappa", "positive")  # the condition number
alpha, lam = param("alpha", "positive"), param("lam", "positive")
beta1, beta2 = param("beta1", "unit"), param("beta2", "unit")
theta0 = param("theta0", "positive")  # the starting value of one parameter
t = param("t", "integer")  # the step number

PARAMS = {
    **{g.name: "real" for g in GRADS},
    "B": "integer",
    "eta": "positive",
    "h": "positive",
    "rho": "unit",
    "kappa": "positive",
    "alpha": "positive",
    "lam": "positive",
    "beta1": "unit",
    "beta2": "unit",
    "theta0": "positive",
    "t": "integer",
}

# ---------------------------------------------------------------- minibatches, enumerated


def _grads(values: Mapping[str, Any]) -> list[Any]:
    return [values[g.name] for g in GRADS]


def _batch_means(values: Mapping[str, Any]) -> list[Any]:
    """The minibatch gradient of every batch of B distinct examples (all C(6, B) of them)."""
    grads, size = _grads(values), int(values["B"])
    return [
        sum(grads[i] for i in batch) / size for batch in itertools.combinations(range(DATA), size)
    ]


def minibatch_mean(values: Mapping[str, Any]) -> sympy.Expr:
    """E[g_B] over a uniformly random batch, by enumeration."""
    means = _batch_means(values)
    return sum(means, sympy.Integer(0)) / len(means)


def minibatch_variance(values: Mapping[str, Any]) -> sympy.Expr:
    """Var[g_B] over a uniformly random batch, by enumeration."""
    means = _batch_means(values)
    centre = sum(means, sympy.Integer(0)) / len(means)
    return sum(((x - centre) ** 2 for x in means), sympy.Integer(0)) / len(means)


def full_gradient(values: Mapping[str, Any]) -> sympy.Expr:
    """The full-batch gradient, the plain mean of the per-example gradients."""
    return sum(_grads(values), sympy.Integer(0)) / DATA


def variance_formula(values: Mapping[str, Any]) -> sympy.Expr:
    """sigma^2 / B * (N - B) / (N - 1), with sigma^2 the per-example variance."""
    grads, size = _grads(values), values["B"]
    mean = sum(grads, sympy.Integer(0)) / DATA
    sigma2 = sum(((x - mean) ** 2 for x in grads), sympy.Integer(0)) / DATA
    return sigma2 / size * (DATA - size) / (DATA - 1)


# ---------------------------------------------------------------- heavy ball


def heavy_ball_step(u: Any, th: Any, step: Any, curvature: Any, momentum: Any) -> tuple:
    """One step on f = h theta^2 / 2: u <- rho u + h theta, theta <- theta - eta u."""
    u = momentum * u + curvature * th
    return u, th - step * u


def heavy_ball_matrix(values: Mapping[str, Any]) -> sympy.Matrix:
    """The 2 x 2 matrix of the step on (u, theta), read off by applying it to unit vectors."""
    cols = [
        heavy_ball_step(*e, values["eta"], values["h"], values["rho"]) for e in ((1, 0), (0, 1))
    ]
    return sympy.Matrix([[cols[0][0], cols[1][0]], [cols[0][1], cols[1][1]]])


def hb_trace(values):
    return heavy_ball_matrix(values).trace()


def hb_det(values):
    return heavy_ball_matrix(values).det()


def hb_charpoly_at(x: int):
    """The characteristic polynomial det(x I - A) of the step matrix, at x."""

    def side(values: Mapping[str, Any]) -> sympy.Expr:
        return (x * sympy.eye(2) - heavy_ball_matrix(values)).det()

    side.__name__ = f"charpoly_at_{x}".replace("-", "minus_")
    return side


def polyak(kappa_value: Any) -> tuple[Any, Any]:
    """Polyak's step size and momentum for curvatures in [1, kappa]."""
    root = sympy.sqrt(kappa_value)
    return 4 / (1 + root) ** 2, ((root - 1) / (root + 1)) ** 2


def polyak_trace_at(which: str):
    """tr A of the step matrix at h = 1 ("flat") or h = kappa ("steep"), Polyak's eta, rho."""

    def side(values: Mapping[str, Any]) -> sympy.Expr:
        k = values["kappa"]
        step, momentum = polyak(k)
        curvature = 1 if which == "flat" else k
        return heavy_ball_matrix({"eta": step, "h": curvature, "rho": momentum}).trace()

    side.__name__ = f"polyak_trace_{which}"
    return side


# ---------------------------------------------------------------- weight decay in Adam


SQRT_DIGITS = 80


def adam_run(values: Mapping[str, Any], decay: Any, decoupled: bool, grad: Any = 0) -> Any:
    """theta after t Adam steps (eps = 0) on a coordinate whose loss gradient is `grad`.

    L2 inside Adam feeds g + lam theta to the moving averages; AdamW feeds g and subtracts
    alpha lam theta separately. With grad = 0 AdamW's m and v stay 0 (the ratio is taken as 0).
    On exact inputs the square roots are evaluated to SQRT_DIGITS digits, so the "exact" check
    of a step that uses this function is an 80-digit one.
    """
    a, b1, b2 = values["alpha"], values["beta1"], values["beta2"]
    th, m, v = values["theta0"], sympy.Integer(0), sympy.Integer(0)
    for k in range(1, int(values["t"]) + 1):
        g = grad if decoupled else grad + decay * th
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g**2
        mhat, vhat = m / (1 - b1**k), v / (1 - b2**k)
        # the square root to 80 digits: exact nested radicals grow with every step
        ratio = 0 if vhat == 0 else mhat / sympy.sqrt(vhat).evalf(SQRT_DIGITS)
        th = th - a * ratio - (a * decay * th if decoupled else 0)
    return th


def l2_run(values):
    """L2 inside Adam, with the note's lam."""
    return adam_run(values, values["lam"], decoupled=False)


def l2_run_unit_decay(values):
    """L2 inside Adam, with lam = 1."""
    return adam_run(values, sympy.Integer(1), decoupled=False)


def adamw_run(values):
    return adam_run(values, values["lam"], decoupled=True)


# ---------------------------------------------------------------- numbers and the figure

FIGURE_GRADS = (3, -1, 4, 1, -5, 9)  # the per-example gradients of the figure's dataset
KAPPA = 50  # the condition number of the Adam note's quadratic
GD_RATE = (KAPPA - 1) / (KAPPA + 1)  # gradient descent with its best step 2 / (1 + kappa)
HB_RATE = (np.sqrt(KAPPA) - 1) / (np.sqrt(KAPPA) + 1)
STEPS_GD = int(np.ceil(np.log(1e-3) / np.log(GD_RATE)))  # to shrink the error 1000-fold
STEPS_HB = int(np.ceil(np.log(1e-3) / np.log(HB_RATE)))


def spectral_radius(step: float, curvature: float, momentum: float) -> float:
    """Largest |eigenvalue| of the step matrix, from heavy_ball_matrix."""
    a = heavy_ball_matrix({"eta": step, "h": curvature, "rho": momentum})
    return float(np.max(np.abs(np.linalg.eigvals(np.array(a, dtype=float)))))


def draw_rates(ctx: Any):
    """Left: minibatch variance against B. Right: contraction per step against curvature."""
    fig = ctx.figure(6.6, 2.6)
    left, right = fig.subplots(1, 2)
    grads = {f"g{i + 1}": sympy.Integer(x) for i, x in enumerate(FIGURE_GRADS)}
    sizes = list(range(1, DATA + 1))
    exact = [float(minibatch_variance({**grads, "B": s})) for s in sizes]
    sigma2 = float(variance_formula({**grads, "B": 1}))
    closed = [float(variance_formula({**grads, "B": s})) for s in sizes]
    left.plot(sizes, closed, "-", color="C0", lw=1.0, label="closed form")
    left.plot(sizes, exact, "o", color="C0", label="all batches, enumerated")
    left.plot(sizes, [sigma2 / s for s in sizes], "--", color="0.4", label=r"$\sigma^2 / B$")
    left.set_xlabel("batch size $B$")
    left.set_ylabel("variance of the batch gradient")
    left.legend(frameon=False, fontsize=7)
    curv = np.geomspace(0.5, 2 * KAPPA, 300)
    gd_step = 2 / (1 + KAPPA)
    hb_step, hb_mom = (float(x) for x in polyak(sympy.Integer(KAPPA)))
    right.semilogx(curv, [spectral_radius(gd_step, x, 0.0) for x in curv], label="GD, best step")
    right.semilogx(
        curv, [spectral_radius(hb_step, x, hb_mom) for x in curv], label="heavy ball, Polyak"
    )
    right.axvspan(1, KAPPA, color="0.9", lw=0)
    right.axhline(1.0, color="C3", lw=0.8, ls=":")
    right.set_ylim(0, 1.5)
    right.set_xlabel("curvature $h$")
    right.set_ylabel("contraction per step")
    right.legend(frameon=False, fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the note

NOTE = Note(
    name="sgd",
    order=5,
    title="SGD, momentum and AdamW",
    summary=r"""
The optimizers that train language models, from the ground up: the minibatch gradient is an
unbiased estimate of the full gradient whose variance falls like $1/B$ (checked by
enumerating every minibatch of a small dataset); heavy-ball momentum on a quadratic, its
convergence condition and Polyak's optimal momentum for a condition number $\kappa$;
learning-rate schedules; why weight decay must be decoupled from Adam (AdamW); and
clipping by the global gradient norm.
""",
    vars={
        "g": "real[n]",
        "W": "real[k, n]",
        "tau": "positive",
        "alpha": "positive",
        "lam": "positive",
        "theta": "real",
        "r": "real",
        "beta1": "unit",
        "beta2": "unit",
    },
    defs={
        "G": "sqrt(sum(g ** 2) + sum(W ** 2))",
        "mhat1": "((1 - beta1) * (r + lam * theta)) / (1 - beta1)",
        "vhat1": "((1 - beta2) * (r + lam * theta) ** 2) / (1 - beta2)",
    },
    params=PARAMS,
    sections=(
        Section(
            "Minibatch gradients",
            r"""
The loss of a model is an average over $N$ training examples, and so is its gradient:
$\bar{g} = \frac{1}{N} \sum_{i} g_i$, where $g_i$ is the gradient on example $i$ (one
coordinate is enough to see what happens). Stochastic gradient descent [@robbins1951]
replaces $\bar{g}$ by the average $g_B$ over a random batch of $B$ distinct examples. The
steps below take a dataset of $N = """
            + str(DATA)
            + r"""$ examples with arbitrary gradients $g_1, \dots, g_"""
            + str(DATA)
            + r"""$, list every one of the
$\binom{"""
            + str(DATA)
            + r"""}{B}$ batches, and compare the mean and the variance of $g_B$ over them with the
closed forms, where $\sigma^2 = \frac{1}{N} \sum_i (g_i - \bar{g})^2$ is the variance of
the per-example gradients:
""",
            Step(
                (minibatch_mean, full_gradient),
                "each example is in the same fraction $B/N$ of the batches",
                label="sgd-unbiased",
                display=r"\mathbb{E}[g_B] = \bar{g}",
            ),
            Step(
                (minibatch_variance, variance_formula),
                "sampling without replacement: pairs are negatively correlated",
                label="sgd-variance",
                display=r"\operatorname{Var}[g_B] = \frac{\sigma^2}{B} \cdot \frac{N - B}{N - 1}",
            ),
            r"""
The minibatch gradient is right on average, and its noise falls like $1/B$ (exactly
$\sigma^2/B$ when examples are drawn with replacement, as in a stream of fresh data; the
factor $(N-B)/(N-1)$ is the finite-population correction, which makes the full batch
$B = N$ noiseless). Its standard deviation falls only like $1/\sqrt{B}$: quadrupling the
batch halves the noise ([[fig-rates]], left). This is one argument for raising the learning
rate with the batch size, and for why that stops paying once the noise is small compared
with the gradient itself.
""",
        ),
        Section(
            "Momentum: the heavy ball on a quadratic",
            r"""
Near a minimum the loss is close to a quadratic, and along each eigenvector of the Hessian
it is $f(\theta) = \frac{1}{2} h \theta^2$ with curvature $h$, gradient $h\theta$.
Heavy-ball momentum [@polyak1964] keeps a velocity $u$ (as in the Adam note's comparison):
$u \gets \rho\, u + h\theta$, then $\theta \gets \theta - \eta\, u$. One step is a
linear map of the state $(u, \theta)$; the checks below build its $2 \times 2$ matrix $A$ by
applying the update rule to the unit vectors, and compare:
""",
            Step(
                (hb_trace, 1 + rho - eta * h),
                "the update applied to $(1, 0)$ and $(0, 1)$",
                label="hb-trace",
                display=r"\operatorname{tr} A = 1 + \rho - \eta h",
            ),
            Step(
                (hb_det, rho),
                "the $\\eta h$ terms cancel",
                label="hb-det",
                display=r"\det A = \rho",
            ),
            r"""
The iteration converges when both eigenvalues of $A$ lie inside the unit circle. For a
real quadratic $x^2 - (\operatorname{tr} A)\, x + \det A$ that holds exactly when
$|\det A| < 1$ and the polynomial is positive at $x = 1$ and $x = -1$ (the
Jury conditions), and its values there are
""",
            Step(
                (hb_charpoly_at(1), eta * h),
                "$1 - (1 + \\rho - \\eta h) + \\rho$",
                label="hb-at-one",
                display=r"\det(I - A) = \eta h",
            ),
            Step(
                (hb_charpoly_at(-1), 2 * (1 + rho) - eta * h),
                "$1 + (1 + \\rho - \\eta h) + \\rho$",
                label="hb-at-minus-one",
                display=r"\det(-I - A) = 2(1 + \rho) - \eta h",
            ),
            r"""
So heavy ball with $0 \le \rho < 1$ converges on curvature $h$ exactly when
$0 < \eta h < 2(1 + \rho)$: momentum raises the largest stable step of gradient descent
($\rho = 0$, $\eta h < 2$) by the factor $1 + \rho$, up to twice as large. When the
eigenvalues are complex, their modulus is
$\sqrt{\det A} = \sqrt{\rho}$ [[hb-det]], whatever $h$: the iteration spirals in at the
rate $\sqrt{\rho}$ (the Adam note's figure shows this spiral).

For curvatures spread over $[1, \kappa]$ (condition number $\kappa$), Polyak's choice
$\eta = 4/(1 + \sqrt{\kappa})^2$, $\rho = \big((\sqrt{\kappa} - 1)/(\sqrt{\kappa} +
1)\big)^2$ makes the trace at the two ends of the spectrum $\pm 2\sqrt{\rho}$:
""",
            Step(
                (polyak_trace_at("flat"), 2 * (sympy.sqrt(kappa) - 1) / (sympy.sqrt(kappa) + 1)),
                "$1 + \\rho - \\eta$ over the common denominator $(1 + \\sqrt{\\kappa})^2$",
                label="polyak-flat",
                display=r"\operatorname{tr} A = 2 \frac{\sqrt{\kappa} - 1}{\sqrt{\kappa} + 1} "
                r"\text{ at } h = 1",
            ),
            Step(
                (polyak_trace_at("steep"), -2 * (sympy.sqrt(kappa) - 1) / (sympy.sqrt(kappa) + 1)),
                "$1 + \\rho - \\eta\\kappa$ over the same denominator",
                label="polyak-steep",
                display=r"\operatorname{tr} A = -2 \frac{\sqrt{\kappa} - 1}{\sqrt{\kappa} + 1} "
                r"\text{ at } h = \kappa",
            ),
            r"""
With $\det A = \rho$ [[hb-det]], the discriminant $(\operatorname{tr} A)^2 - 4 \det A$ is
then zero at $h = 1$ and $h = \kappa$: both ends sit exactly at a double eigenvalue, the
edge between real and complex. In between, the discriminant (a quadratic in $h$ that is
zero at both ends and opens upward) is negative,
the eigenvalues are complex, and every curvature in $[1, \kappa]$ contracts at the same
rate $\sqrt{\rho} = (\sqrt{\kappa} - 1)/(\sqrt{\kappa} + 1)$. Gradient descent with its
best step $2/(1 + \kappa)$ contracts at $(\kappa - 1)/(\kappa + 1)$. For $\kappa = """
            + str(KAPPA)
            + r"""$, the condition number of the Adam note's valley, that is """
            + f"{HB_RATE:.3f}"
            + r""" against """
            + f"{GD_RATE:.3f}"
            + r""" per step, or """
            + str(STEPS_HB)
            + r""" steps against """
            + str(STEPS_GD)
            + r""" to shrink the error a thousandfold ([[fig-rates]], right): the number of
steps grows like $\sqrt{\kappa}$ instead of $\kappa$. The Adam note's momentum run used
a larger $\rho$ and a smaller step than Polyak's, so its rate was $\sqrt{\rho}$ on both
coordinates, which is why its steep coordinate was still oscillating after many steps.
""",
            Figure(
                "rates",
                "Left: the variance of the minibatch gradient over all batches of the dataset "
                f"$g = {FIGURE_GRADS}$, enumerated (dots) and from the closed form (line) of "
                r"[[sgd-variance]], against $\sigma^2/B$ (with replacement, dashed). Right: the "
                "largest eigenvalue modulus "
                "of the step matrix built as in [[hb-trace]], for gradient descent with step "
                f"$2/(1 + \\kappa)$ and heavy ball with Polyak's parameters, $\\kappa = {KAPPA}$; "
                "curvatures in $[1, \\kappa]$ are shaded. Both methods diverge (above the "
                "dotted line) just past the largest curvature they were tuned for, at "
                "$h = \\kappa + 1$ for both.",
                draw_rates,
                label="fig-rates",
            ),
        ),
        Section(
            "Learning-rate schedules",
            r"""
LLM training does not keep $\eta$ fixed. A typical schedule warms up linearly over the
first $t_{\mathrm{w}}$ steps and then decays along a half cosine to $\eta_{\min}$ at the
last step $t_{\max}$ [@loshchilov2017]:
$$
\eta_t = \eta_{\max} \frac{t}{t_{\mathrm{w}}} \;\; (t \le t_{\mathrm{w}}), \qquad
\eta_t = \eta_{\min} + \frac{\eta_{\max} - \eta_{\min}}{2}
\Big(1 + \cos\frac{\pi (t - t_{\mathrm{w}})}{t_{\max} - t_{\mathrm{w}}}\Big)
\;\; (t > t_{\mathrm{w}}).
$$
These are definitions, not results. The warmup keeps the first steps small while Adam's
second-moment estimate still rests on very few gradients (the Adam note); the decay lets
the iterate settle once the gradient noise of [[sgd-variance]] dominates the remaining
progress.
""",
        ),
        Section(
            "Weight decay: L2 inside Adam versus AdamW",
            r"""
Weight decay pulls every parameter toward zero by a fraction $\lambda$ per unit of step.
With plain gradient descent, adding $\frac{\lambda}{2}\theta^2$ to the loss does exactly
that. Inside Adam it does not [@adamw]: the extra gradient $\lambda\theta$ goes through the
moving averages and is divided by $\sqrt{\hat{v}}$ with the rest. On the first step, with
loss gradient $r$ and $\epsilon = 0$, the bias-corrected averages are
""",
            Definition("mhat1"),
            Definition("vhat1"),
            Step(
                "alpha * mhat1 / sqrt(vhat1) == alpha * sign(r + lam * theta)",
                "$\\sqrt{a^2} = |a|$ and $a / |a| = \\operatorname{sign} a$",
                label="l2-first-step",
            ),
            r"""
The decay has been normalized away: as long as $|\lambda\theta| < |r|$ the step is
$\alpha \operatorname{sign}(r)$, the same as with no decay at all. The extreme case is a
parameter that gets no loss gradient ($r = 0$, e.g. the embedding of a token that never
occurs). With L2 inside Adam it receives only $\lambda\theta$, and since $m$ scales like
$\lambda$ and $\sqrt{v}$ too, $\lambda$ cancels from every step: the whole trajectory does
not depend on $\lambda$. The check runs $t$ steps of Adam ($\epsilon = 0$) with the
note's $\lambda$ and with $\lambda = 1$:
""",
            Step(
                (l2_run, l2_run_unit_decay),
                "$\\hat{m}_t / \\sqrt{\\hat{v}_t}$ is unchanged when every gradient is scaled",
                label="l2-lambda-free",
                display=r"\theta_t^{\mathrm{L2}}(\lambda) = \theta_t^{\mathrm{L2}}(1)",
            ),
            r"""
AdamW decouples the decay: the moving averages see only the loss gradient, and the decay
is applied to the parameter directly, $\theta \gets \theta - \alpha\big(\hat{m} /
(\sqrt{\hat{v}} + \epsilon) + \lambda \theta\big)$. The same idle parameter then shrinks
geometrically, at a rate set by $\lambda$ (the check runs the AdamW update $t$ times):
""",
            Step(
                (adamw_run, (1 - alpha * lam) ** t * theta0),
                "$\\hat{m} = 0$, so each step multiplies $\\theta$ by $1 - \\alpha\\lambda$",
                label="adamw-idle",
                display=r"\theta_t^{\mathrm{AdamW}} = (1 - \alpha\lambda)^{t}\, \theta_0",
            ),
            r"""
With L2 the decay of each coordinate is scaled by $1/\sqrt{\hat{v}}$, so parameters with
large gradients are barely regularized and idle ones move by about $\alpha$ per step
whatever $\lambda$ is; with AdamW every parameter decays by the same factor
$1 - \alpha\lambda$ per step on top of its normalized gradient step. AdamW is the standard
choice for language models, and its $\lambda$ is then a real knob.
""",
        ),
        Section(
            "Clipping by the global norm",
            r"""
A rare batch can produce a gradient far larger than usual (a loss spike), and one such
step can undo much training. Clipping by the global norm [@pascanu2013] computes the norm
$G$ of *all* gradients together (here a vector $g$ and a matrix $W$ stand for the
parameter tensors) and, when $G > \tau$, multiplies every gradient by $\tau / G$:
""",
            Definition("G"),
            Step(
                "sqrt(sum((tau / G * g) ** 2) + sum((tau / G * W) ** 2)) == tau",
                "one factor $\\tau/G$ for every tensor",
                label="clip-norm",
            ),
            r"""
The clipped gradient has norm exactly $\tau$ and the same direction as before, because
every tensor is scaled by the same factor (clipping each coordinate separately would
change the direction). Under SGD or momentum this caps the step at $\eta\tau$. Under Adam,
scaling *every* gradient by one factor would change nothing (the Adam note's scale
invariance, [[adam:scale-invariance]]); clipping only the rare huge gradient acts through
the moving averages instead, by keeping that one gradient from dominating $m$ and $v$
for the next $1/(1 - \beta)$ steps.
""",
        ),
        Section(
            "About the checks",
            r"""
Steps [[sgd-unbiased]] to [[adamw-idle]] except [[l2-first-step]] are identities in scalar
parameters: one side enumerates (all minibatches) or runs (the update rules), the other is
a closed form, and they are compared exactly at random rational values (the Adam runs
evaluate their square roots to """
            + str(SQRT_DIGITS)
            + r""" digits rather than as nested radicals). Their float64 pass
re-evaluates the same two sides and is not an independent second route. The inequalities
in the prose (the Jury conditions, the sign of the discriminant between the ends) are
checked on grids in the test file.
""",
        ),
    ),
    references=(
        Reference(
            "robbins1951",
            "H. Robbins, S. Monro. A stochastic approximation method. *The Annals of "
            "Mathematical Statistics* 22(3):400-407, 1951.",
            "https://doi.org/10.1214/aoms/1177729586",
        ),
        Reference(
            "polyak1964",
            "B. T. Polyak. Some methods of speeding up the convergence of iteration methods. "
            "*USSR Computational Mathematics and Mathematical Physics* 4(5):1-17, 1964.",
            "https://doi.org/10.1016/0041-5553(64)90137-5",
        ),
        Reference(
            "loshchilov2017",
            "I. Loshchilov, F. Hutter. SGDR: Stochastic gradient descent with warm restarts. "
            "*ICLR 2017*.",
            "https://arxiv.org/abs/1608.03983",
        ),
        Reference(
            "adamw",
            "I. Loshchilov, F. Hutter. Decoupled weight decay regularization. *ICLR 2019*.",
            "https://arxiv.org/abs/1711.05101",
        ),
        Reference(
            "pascanu2013",
            "R. Pascanu, T. Mikolov, Y. Bengio. On the difficulty of training recurrent "
            "neural networks. *ICML 2013*, PMLR 28(3):1310-1318.",
            "https://arxiv.org/abs/1211.5063",
        ),
    ),
)
