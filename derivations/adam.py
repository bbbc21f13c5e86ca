"""Note 4: Adam, its moving averages unrolled, bias correction, the first step, and a comparison."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import sympy

from engine import build_environment, parse_formula, to_numpy
from engine.notes import Definition, Figure, Named, Note, Reference, Section, Step
from engine.notes.prose import sci
from engine.notes.symbols import array, indices, param

# ---------------------------------------------------------------- symbols

beta1, beta2 = param("beta1", "unit"), param("beta2", "unit")
alpha, eps = param("alpha", "positive"), param("eps", "positive")
mu, nu = param("mu", "real"), param("nu", "positive")
t = param("t", "integer")  # the step number in identities; an index in index notation
g, m, v = array("g"), array("m"), array("v")
mhat, vhat, theta = array("mhat"), array("vhat"), array("theta")
(i,) = indices("i")
(ti,) = indices("t")  # the same name as the parameter t: an index where a note declares it so


def unrolled(beta: sympy.Symbol, name: str, entry, step: sympy.Expr) -> Named:
    """(1 - beta) sum_{i <= step} beta^(step - i) entry(i): the moving average, unrolled.

    Arrays are 0-based in the checks: step 0 is the first gradient, and step -1 (an empty sum)
    is the initial value 0.
    """
    body = (1 - beta) * sympy.Sum(beta ** (step - i) * entry(i), (i, 0, step))
    return Named(name, body, step)


def _grad(k: sympy.Expr) -> sympy.Expr:
    return g[k]


def _grad_squared(k: sympy.Expr) -> sympy.Expr:
    return g[k] ** 2


def _recursion(values: Mapping[str, Any], beta: sympy.Symbol, mean: sympy.Symbol) -> sympy.Expr:
    """E[m_t] from the recursion itself: m_0 = 0, m_i = beta m_(i-1) + (1 - beta) g_i.

    m_t is linear in g_1..g_t, so its expectation replaces every g_i by its mean (linearity;
    no independence needed).
    """
    steps = int(values["t"])
    b, expected = values[beta.name], values[mean.name]
    gs = sympy.symbols(f"g1:{steps + 1}")
    state = sympy.Integer(0)
    for gi in gs:
        state = b * state + (1 - b) * gi
    return sympy.expand(state).xreplace({gi: expected for gi in gs})


def first_moment_mean(values: Mapping[str, Any]) -> sympy.Expr:
    """E[m_t] for gradients with E[g_i] = mu."""
    return _recursion(values, beta1, mu)


def second_moment_mean(values: Mapping[str, Any]) -> sympy.Expr:
    """E[v_t] for gradients with E[g_i^2] = nu (v's recursion is m's with g_i^2 for g_i)."""
    return _recursion(values, beta2, nu)


def corrected_first_moment_mean(values: Mapping[str, Any]) -> sympy.Expr:
    """E[mhat_t] = E[m_t] / (1 - beta1^t)."""
    return first_moment_mean(values) / (1 - values["beta1"] ** values["t"])


def corrected_second_moment_mean(values: Mapping[str, Any]) -> sympy.Expr:
    """E[vhat_t] = E[v_t] / (1 - beta2^t)."""
    return second_moment_mean(values) / (1 - values["beta2"] ** values["t"])


# ---------------------------------------------------------------- the comparison figure

# The three optimizers in the formula language; the figure evaluates exactly these texts.
SGD_STEP = "theta - lr * g"
MOMENTUM_BUFFER = "rho * u + g"
MOMENTUM_STEP = "theta - lr * u"
ADAM_M = "beta1 * m + (1 - beta1) * g"
ADAM_V = "beta2 * v + (1 - beta2) * g ** 2"
ADAM_STEP = "theta - alpha * (m / (1 - beta1 ** t)) / (sqrt(v / (1 - beta2 ** t)) + eps)"
QUADRATIC = "sum(h * theta ** 2) / 2"
ROTATED_QUADRATIC = "theta @ (H @ theta) / 2"

CURVATURE = (1.0, 50.0)  # h: condition number 50
START = (-4.0, 1.0)
STEPS = 150
ROTATION = np.pi / 4  # the rotated valley of the figure's dashed line
SETTINGS = {
    "sgd": {"lr": 0.035},  # stability in the steep direction needs lr < 2 / 50 = 0.04
    "momentum": {"lr": 0.01, "rho": 0.9},
    "adam": {"alpha": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
}


# Numbers the prose quotes, computed from the settings (never typed).
H_STEEP = CURVATURE[1]
GD_LR = SETTINGS["sgd"]["lr"]
GD_FLAT, GD_STEEP = 1 - GD_LR * CURVATURE[0], 1 - GD_LR * CURVATURE[1]
MOM_LR, MOM_RHO = SETTINGS["momentum"]["lr"], SETTINGS["momentum"]["rho"]


def _heavy_ball_modulus(h: float) -> float:
    """Largest |eigenvalue| of the heavy-ball iteration (u, θ) on curvature h."""
    m = np.array([[MOM_RHO, h], [-MOM_LR * MOM_RHO, 1 - MOM_LR * h]])
    return float(np.max(np.abs(np.linalg.eigvals(m))))


MOM_RATE = max(_heavy_ball_modulus(h) for h in CURVATURE)
assert np.isclose(MOM_RATE, np.sqrt(MOM_RHO)), "the prose says the modulus is sqrt(rho)"


def _formula(text: str, **types: str):
    """A NumPy callable of one of the update rules above, through the engine's backend."""
    return to_numpy(parse_formula(text, build_environment(types)))


def _plain_runs(steps: int) -> dict[str, np.ndarray]:
    """θ after `steps` steps of gradient descent, heavy ball and Adam: the update rules above
    with the figure's settings, on the gradient h θ of the axis-aligned quadratic."""
    h, vec = np.array(CURVATURE), "real[k]"
    sgd = _formula(SGD_STEP, theta=vec, g=vec, lr="positive")
    buf = _formula(MOMENTUM_BUFFER, u=vec, g=vec, rho="unit")
    mom = _formula(MOMENTUM_STEP, theta=vec, u=vec, lr="positive")
    am = _formula(ADAM_M, m=vec, g=vec, beta1="unit")
    av = _formula(ADAM_V, v=vec, g=vec, beta2="unit")
    astep = _formula(
        ADAM_STEP,
        theta=vec,
        m=vec,
        v=vec,
        alpha="positive",
        beta1="unit",
        beta2="unit",
        t="positive",
        eps="positive",
    )
    out = {}
    th, u = np.array(START), np.zeros(2)
    for _ in range(steps):
        u = buf(u=u, g=h * th, rho=MOM_RHO)
        th = mom(theta=th, u=u, lr=MOM_LR)
    out["momentum"] = th
    th = np.array(START)
    for _ in range(steps):
        th = sgd(theta=th, g=h * th, lr=GD_LR)
    out["sgd"] = th
    for name, hess in (("adam", np.diag(h)), ("adam-rotated", _rotated_hessian())):
        a, m1, v1 = SETTINGS["adam"], np.zeros(2), np.zeros(2)
        th = np.array(START) if name == "adam" else rotation(ROTATION) @ np.array(START)
        for k in range(1, steps + 1):
            g = hess @ th
            m1, v1 = am(m=m1, g=g, beta1=a["beta1"]), av(v=v1, g=g, beta2=a["beta2"])
            th = astep(theta=th, m=m1, v=v1, t=float(k), **a)
        out[name] = (th, hess)
    return out


def _rotated_hessian() -> np.ndarray:
    r = rotation(ROTATION)
    return r @ np.diag(CURVATURE) @ r.T


def _sci(x: float) -> str:
    return f"${sci(x)}$"


def _loss(th: np.ndarray, hess: np.ndarray | None = None) -> float:
    hess = np.diag(CURVATURE) if hess is None else hess
    return float(0.5 * th @ hess @ th)


def rotation(angle: float) -> np.ndarray:
    """The 2 x 2 rotation by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def idle_jump(beta1: float, beta2: float) -> float:
    """The uncorrected first step in units of alpha, (1 - beta1) / sqrt(1 - beta2), evaluated
    from the right side of [[no-correction]] through the engine (g = 1, alpha = 1, eps = 0)."""
    jump = _formula(
        "alpha * (1 - beta1) / sqrt(1 - beta2) * sign(g)",
        alpha="positive",
        beta1="unit",
        beta2="unit",
        g="real",
    )
    return float(jump(alpha=1.0, beta1=beta1, beta2=beta2, g=1.0))


JUMP_0999 = f"{idle_jump(0.9, 0.999):.2f}"
JUMP_095 = f"{idle_jump(0.9, 0.95):.2f}"

MOM_STEEP_20 = abs(float(_plain_runs(20)["momentum"][1]))
GD_STEEP_20 = abs(float(_plain_runs(20)["sgd"][1]))
_RUNS_150 = _plain_runs(STEPS)
GD_LOSS_150 = _sci(_loss(_RUNS_150["sgd"])).strip("$")
MOM_LOSS_150 = _sci(_loss(_RUNS_150["momentum"]))
ADAM_LOSS_150 = _sci(_loss(*_RUNS_150["adam"]))
ADAM_ROTATED_LOSS_150 = _loss(*_RUNS_150["adam-rotated"])


def run_optimizers(
    ctx: Any, angle: float = 0.0, names: tuple[str, ...] = ("sgd", "momentum", "adam")
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Paths and losses of the optimizers on the quadratic, evaluated from the formulas.

    With `angle` = 0 the valley is aligned with the axes (gradient h * theta); otherwise it is
    rotated by `angle`, with Hessian H = R diag(h) R^T and the start rotated alike.
    """
    h = np.array(CURVATURE)
    if angle == 0.0:
        _, grad_rhs = ctx.step("quadratic-gradient")
        loss, data, start = ctx.formula(QUADRATIC), {"h": h}, np.array(START)
    else:
        _, grad_rhs = ctx.step("rotated-gradient")
        r = rotation(angle)
        data = {"H": r @ np.diag(h) @ r.T}
        loss, start = ctx.formula(ROTATED_QUADRATIC), r @ np.array(START)
    sgd, buf, mom = (ctx.formula(x) for x in (SGD_STEP, MOMENTUM_BUFFER, MOMENTUM_STEP))
    am, av, astep = (ctx.formula(x) for x in (ADAM_M, ADAM_V, ADAM_STEP))
    out = {}
    for name in names:
        p = SETTINGS[name]
        th = start
        u, m1, v1 = np.zeros(2), np.zeros(2), np.zeros(2)
        path, losses = [th], [float(ctx.evaluate(loss, {**data, "theta": th}))]
        for k in range(1, STEPS + 1):
            gk = ctx.evaluate(grad_rhs, {**data, "theta": th})
            if name == "sgd":
                th = ctx.evaluate(sgd, {"theta": th, "g": gk, **p})
            elif name == "momentum":
                u = ctx.evaluate(buf, {"u": u, "g": gk, "rho": p["rho"]})
                th = ctx.evaluate(mom, {"theta": th, "u": u, "lr": p["lr"]})
            else:
                m1 = ctx.evaluate(am, {"m": m1, "g": gk, "beta1": p["beta1"]})
                v1 = ctx.evaluate(av, {"v": v1, "g": gk, "beta2": p["beta2"]})
                th = ctx.evaluate(astep, {"theta": th, "m": m1, "v": v1, "t": float(k), **p})
            path.append(th)
            losses.append(float(ctx.evaluate(loss, {**data, "theta": th})))
        out[name] = (np.array(path), np.array(losses))
    return out


def draw_comparison(ctx: Any):
    """Left: paths over the loss contours. Right: loss against step (log scale)."""
    runs = run_optimizers(ctx)
    rotated = run_optimizers(ctx, ROTATION, ("adam",))["adam"][1]
    fig = ctx.figure(width=7.0, height=3.6)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
    xs, ys = np.linspace(-4.5, 1.5, 241), np.linspace(-1.3, 1.3, 161)
    gx, gy = np.meshgrid(xs, ys)
    term = ctx.formula("h * theta ** 2 / 2")
    fx = ctx.evaluate(term, {"h": np.full(gx.size, CURVATURE[0]), "theta": gx.ravel()})
    fy = ctx.evaluate(term, {"h": np.full(gy.size, CURVATURE[1]), "theta": gy.ravel()})
    levels = np.geomspace(0.01, 40, 12)
    left.contour(gx, gy, (fx + fy).reshape(gx.shape), levels=levels, colors="0.75", linewidths=0.7)
    labels = {
        "sgd": "SGD, lr 0.035",
        "momentum": r"momentum, lr 0.01, $\rho$ 0.9",
        "adam": r"Adam, $\alpha$ 0.1",
    }
    for name, (path, losses) in runs.items():
        left.plot(path[:, 0], path[:, 1], "-", marker=".", markersize=2.5, linewidth=0.9)
        (line,) = right.plot(np.arange(len(losses)), losses, label=labels[name])
    right.plot(
        np.arange(len(rotated)),
        rotated,
        "--",
        color=line.get_color(),
        label=r"Adam, valley rotated $45^\circ$",
    )
    left.plot([0], [0], "k*", markersize=7)
    left.set_xlabel(r"$\theta_1$ (curvature 1)")
    left.set_ylabel(r"$\theta_2$ (curvature 50)")
    left.set_title("Paths from $(-4, 1)$")
    right.set_yscale("log")
    right.set_xlabel("step")
    right.set_ylabel("loss")
    right.set_title(r"$f(\theta) = \frac{1}{2}(\theta_1^2 + 50\,\theta_2^2)$")
    fig.legend(*right.get_legend_handles_labels(), loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


# ---------------------------------------------------------------- the note


def weights_by_recursion(values) -> float:
    """the EMA of a constant gradient 1 from m_0 = 0, run for t updates in float64"""
    beta, m = values["beta1"], 0.0
    for _ in range(values["t"]):
        m = beta * m + (1 - beta) * 1.0
    return m


def _ema_of_constant(beta: float, mean: float, steps: int) -> float:
    m = 0.0
    for _ in range(steps):
        m = beta * m + (1 - beta) * mean
    return m


def mean_m_by_recursion(values) -> float:
    """E[m_t] by its own recursion E[m_t] = beta1 E[m_(t-1)] + (1 - beta1) mu from 0, float64"""
    return _ema_of_constant(values["beta1"], values["mu"], values["t"])


def mean_v_by_recursion(values) -> float:
    """E[v_t] by its own recursion E[v_t] = beta2 E[v_(t-1)] + (1 - beta2) nu from 0, float64"""
    return _ema_of_constant(values["beta2"], values["nu"], values["t"])


def mean_mhat_by_recursion(values) -> float:
    """the recursion for E[m_t], then divided by 1 - beta1^t, in float64"""
    return mean_m_by_recursion(values) / (1 - values["beta1"] ** values["t"])


def mean_vhat_by_recursion(values) -> float:
    """the recursion for E[v_t], then divided by 1 - beta2^t, in float64"""
    return mean_v_by_recursion(values) / (1 - values["beta2"] ** values["t"])


NOTE = Note(
    name="adam",
    order=4,
    title="Adam",
    summary=(
        "The Adam optimizer: its two moving averages unrolled into weighted sums, bias "
        "correction from the geometric series, why the first step is $\\alpha\\,"
        "\\operatorname{sign}(g)$, why the update ignores the scale of the gradient, and how "
        "it compares with SGD and momentum on an ill-conditioned quadratic."
    ),
    vars={
        "g": "real[n]",
        "m": "real[n]",
        "v": "positive[n]",
        "u": "real[n]",
        "theta": "real[n]",
        "h": "positive[n]",
        "H": "real[n, n]",
        "beta1": "unit",
        "beta2": "unit",
        "alpha": "positive",
        "eps": "positive",
        "lr": "positive",
        "rho": "unit",
        "c": "positive",
        "t": "positive",
    },
    defs={
        "m1": "(1 - beta1) * g",
        "v1": "(1 - beta2) * g ** 2",
        "mhat1": "m1 / (1 - beta1)",
        "vhat1": "v1 / (1 - beta2)",
    },
    arrays={"g": "real[T]"},
    indices={"t": "T"},
    params={
        "beta1": "unit",
        "beta2": "unit",
        "mu": "real",
        "nu": "positive",
        "t": "integer",
    },
    references=(
        Reference(
            "kingma",
            "D. P. Kingma, J. Ba, Adam: A Method for Stochastic Optimization, ICLR 2015.",
            "https://arxiv.org/abs/1412.6980",
        ),
        Reference(
            "adamw",
            "I. Loshchilov, F. Hutter, Decoupled Weight Decay Regularization, ICLR 2019.",
            "https://arxiv.org/abs/1711.05101",
        ),
        Reference(
            "radam",
            "L. Liu et al., On the Variance of the Adaptive Learning Rate and Beyond, ICLR 2020.",
            "https://arxiv.org/abs/1908.03265",
        ),
        Reference(
            "gpt3",
            "T. B. Brown et al., Language Models are Few-Shot Learners, NeurIPS 2020.",
            "https://arxiv.org/abs/2005.14165",
        ),
    ),
    sections=(
        Section(
            "Intuition",
            "Gradient descent moves every parameter by the learning rate times its gradient. "
            "That scale is wrong in two ways. Gradients are noisy, because each is computed on "
            "a small batch, so single steps zigzag. And different parameters have gradients of "
            "very different sizes, so one learning rate is too large for some and too small "
            "for others.",
            "Adam [@kingma] keeps two running averages for every parameter: $m$, the average "
            "of recent gradients (momentum: it cancels noise and keeps the direction that "
            "persists from step to step), and $v$, the average of recent squared gradients (a "
            "running estimate of the gradient's scale). The step is proportional to "
            "$m / \\sqrt{v}$, a signal-to-noise ratio. It has no units, so every parameter "
            "moves by about the learning rate $\\alpha$, whatever the size of its gradients.",
        ),
        Section(
            "The update rule",
            "At step $t = 1, 2, \\dots$ the gradient $g_t$ of the loss on the current batch is "
            "computed at $\\theta_{t-1}$, and with $m_0 = v_0 = 0$:",
            Definition(m[ti], beta1 * m[ti - 1] + (1 - beta1) * g[ti]),
            Definition(v[ti], beta2 * v[ti - 1] + (1 - beta2) * g[ti] ** 2),
            Definition(mhat[ti], m[ti] / (1 - beta1**ti)),
            Definition(vhat[ti], v[ti] / (1 - beta2**ti)),
            "and the parameters move by",
            "$$\n\\theta_t \\mathrel{:=} \\theta_{t-1} - \\alpha \\, "
            "\\frac{\\hat{m}_t}{\\sqrt{\\hat{v}_t} + \\epsilon}\n$$",
            "Every operation is elementwise: each parameter has its own $m$ and $v$. The "
            "defaults are $\\beta_1 = 0.9$, $\\beta_2 = 0.999$, $\\epsilon = 10^{-8}$ "
            "[@kingma]; LLM pretraining commonly uses $\\beta_2 = 0.95$ [@gpt3]. The hats are "
            "the bias corrections, derived below.",
        ),
        Section(
            "Unrolling the moving averages",
            "The recursion hides which gradients $m_t$ is made of. Write the candidate closed "
            "forms",
            "$$\n\\tilde{m}_t \\mathrel{:=} (1-\\beta_1) \\sum_{i=1}^{t} \\beta_1^{t-i} g_i, "
            "\\qquad \\tilde{v}_t \\mathrel{:=} (1-\\beta_2) \\sum_{i=1}^{t} "
            "\\beta_2^{t-i} g_i^2 .\n$$",
            "They start right: at $t = 0$ the sums are empty, $\\tilde{m}_0 = 0 = m_0$ and "
            "$\\tilde{v}_0 = 0 = v_0$. And they obey Adam's recursions (checked with the sums "
            "written out, for every $t$ up to $T = 2, 3, 4$):",
            Step(
                (
                    unrolled(beta1, "m", _grad, ti),
                    beta1 * unrolled(beta1, "m", _grad, ti - 1) + (1 - beta1) * g[ti],
                ),
                "split off the newest term $i = t$",
                label="unroll-m",
                display=r"\tilde{m}_t = \beta_1 \tilde{m}_{t-1} + (1-\beta_1)\, g_t",
            ),
            Step(
                (
                    unrolled(beta2, "v", _grad_squared, ti),
                    beta2 * unrolled(beta2, "v", _grad_squared, ti - 1) + (1 - beta2) * g[ti] ** 2,
                ),
                "as [[unroll-m]], with $g_i^2$ for $g_i$",
                label="unroll-v",
                display=r"\tilde{v}_t = \beta_2 \tilde{v}_{t-1} + (1-\beta_2)\, g_t^2",
            ),
            "By induction $m_t = \\tilde{m}_t$ and $v_t = \\tilde{v}_t$ at every step. "
            "So $m_t$ is a weighted average of all past gradients, with weight "
            "$(1-\\beta_1)\\beta_1^{t-i}$ on $g_i$: the newest gradient gets $1 - \\beta_1$ and "
            "every step back multiplies the weight by $\\beta_1$. The memory is about "
            "$1/(1-\\beta)$ steps: 10 for $\\beta_1 = 0.9$, 20 for $\\beta_2 = 0.95$, 1000 for "
            "$\\beta_2 = 0.999$. But the weights do not add up to one:",
            Step(
                (
                    (1 - beta1) * sympy.Sum(beta1 ** (t - i), (i, 1, t)),
                    1 - beta1**t,
                ),
                "geometric series: $(1-\\beta)(1 + \\beta + \\dots + \\beta^{t-1})$ telescopes",
                label="weights-sum",
                display=r"(1-\beta_1)\sum_{i=1}^{t} \beta_1^{t-i} = 1 - \beta_1^{t}",
                numeric=weights_by_recursion,
            ),
            "The missing weight $\\beta_1^t$ sits on the starting value $m_0 = 0$. With "
            "$\\beta_1 = 0.9$ the weights add up to 0.1 after one step and 0.65 after ten; with "
            "$\\beta_2 = 0.999$ they add up to 0.001 after one step and reach 0.63 only after "
            "1000 steps. Early in training both averages are pulled towards zero.",
        ),
        Section(
            "Bias correction",
            "Suppose the gradients are stationary: $\\mathbb{E}[g_i] = \\mu$ and "
            "$\\mathbb{E}[g_i^2] = \\nu$ at every step (they need not be independent). The "
            "expectations below are computed from the recursion itself, run for $t$ steps from "
            "$m_0 = 0$ and then averaged term by term; they are checked at "
            "$t = 1, \\dots, 6$.",
            Step(
                (first_moment_mean, (1 - beta1**t) * mu),
                "linearity of $\\mathbb{E}$, [[unroll-m]] and [[weights-sum]]",
                label="mean-m",
                numeric=mean_m_by_recursion,
                display=r"\mathbb{E}[m_t] = (1 - \beta_1^{t})\, \mu",
            ),
            Step(
                (second_moment_mean, (1 - beta2**t) * nu),
                "linearity of $\\mathbb{E}$, [[unroll-v]] and [[weights-sum]] for $\\beta_2$",
                label="mean-v",
                numeric=mean_v_by_recursion,
                display=r"\mathbb{E}[v_t] = (1 - \beta_2^{t})\, \nu",
            ),
            "Both averages underestimate by exactly the factor $1 - \\beta^t$, so dividing by "
            "it removes the bias at every step:",
            Step(
                (corrected_first_moment_mean, mu),
                "[[mean-m]] divided by $1 - \\beta_1^t$",
                label="unbiased-mhat",
                numeric=mean_mhat_by_recursion,
                display=r"\mathbb{E}[\hat{m}_t] = \mu",
            ),
            Step(
                (corrected_second_moment_mean, nu),
                "[[mean-v]] divided by $1 - \\beta_2^t$",
                label="unbiased-vhat",
                numeric=mean_vhat_by_recursion,
                display=r"\mathbb{E}[\hat{v}_t] = \nu",
            ),
            "As $t$ grows, $\\beta^t \\to 0$ and the correction fades; it matters during the "
            "first few hundred or thousand steps, exactly when the estimates rest on the "
            "fewest gradients.",
        ),
        Section(
            "The first step",
            "At $t = 1$ the averages hold a single gradient $g$:",
            Definition("m1"),
            Definition("v1"),
            Definition("mhat1"),
            Definition("vhat1"),
            "so the bias correction gives back the gradient itself, $\\hat{m}_1 = g$ and "
            "$\\hat{v}_1 = g^2$, and the first update is",
            Step(
                "alpha * mhat1 / (sqrt(vhat1) + eps) == alpha * g / (abs(g) + eps)",
                "$\\hat{m}_1 = g$, $\\hat{v}_1 = g^2$ and $\\sqrt{g^2} = |g|$",
                label="first-step",
            ),
            "For any gradient much larger than $\\epsilon$ this is the sign of the gradient "
            "times $\\alpha$:",
            Step(
                "alpha * g / abs(g) == alpha * sign(g)",
                "$g / |g| = \\operatorname{sign}(g)$ for $g \\ne 0$",
                label="first-step-sign",
            ),
            "Every parameter moves by almost exactly $\\alpha$ on the first step, whether its "
            "gradient is $10^{-6}$ or $10^{3}$. Without the bias correction the same step "
            "would be",
            Step(
                "alpha * m1 / sqrt(v1) == alpha * (1 - beta1) / sqrt(1 - beta2) * sign(g)",
                "$\\sqrt{(1-\\beta_2) g^2} = \\sqrt{1-\\beta_2}\\, |g|$",
                label="no-correction",
            ),
            f"which is ${JUMP_0999}\\,\\alpha$ with $\\beta_1 = 0.9$, $\\beta_2 = 0.999$: the "
            "uncorrected $v$ is far smaller than $m^2$. The same formula describes a later "
            "step of a parameter whose gradients were near zero for a long time (so $m$ and "
            "$v$ decayed to about 0, while the corrections are about 1 by then) and that "
            f"suddenly receives a gradient: it jumps by about ${JUMP_0999}\\,\\alpha$, or "
            f"${JUMP_095}\\,\\alpha$ with $\\beta_2 = 0.95$.",
        ),
        Section(
            "Adam ignores the scale of the gradient",
            "Multiply every gradient by a constant $c > 0$. By [[unroll-m]] and [[unroll-v]], "
            "$m$ scales by $c$ and $v$ by $c^2$, so one update step from the state "
            "$(c\\,m, c^2 v)$ with gradient $c\\,g$ is the step from $(m, v)$ with $g$; with "
            "$\\epsilon = 0$ (the bias corrections are common factors):",
            Step(
                "(beta1 * c * m + (1 - beta1) * c * g) / sqrt(beta2 * c ** 2 * v + "
                "(1 - beta2) * (c * g) ** 2) == "
                "(beta1 * m + (1 - beta1) * g) / sqrt(beta2 * v + (1 - beta2) * g ** 2)",
                "$\\sqrt{c^2 x} = c \\sqrt{x}$ for $c > 0$",
                label="scale-invariance",
            ),
            "Multiplying the loss by 1000 leaves Adam's steps unchanged (until the gradients "
            "come near $\\epsilon$), while it multiplies the steps of gradient descent by "
            "1000. The learning rate $\\alpha$ is a step size in the units of the parameters, "
            "not a factor on the gradient.",
        ),
        Section(
            "An ill-conditioned quadratic",
            "Take $f(\\theta) = \\frac{1}{2} \\sum_i h_i \\theta_i^2$ with curvatures "
            "$h = (1, 50)$: a valley 50 times steeper across than along. Its gradient is",
            Step(
                "grad(sum(h * theta ** 2) / 2, theta) == h * theta",
                "$\\partial (h_i \\theta_i^2 / 2) / \\partial \\theta_i = h_i \\theta_i$",
                label="quadratic-gradient",
            ),
            f"Gradient descent multiplies $\\theta_i$ by $1 - \\eta h_i$ each step, so it is "
            f"stable only for $\\eta < 2/{H_STEEP:g}$; at $\\eta = {GD_LR:g}$ the flat coordinate "
            f"shrinks by a factor of only {GD_FLAT:.3f} per step while the steep one is "
            f"multiplied by {GD_STEEP:.2f}, flipping sign every step. Heavy-ball momentum "
            f"($\\eta = {MOM_LR:g}$, $\\rho = {MOM_RHO:g}$) mixes each step with the last: on "
            "both coordinates its iteration has complex eigenvalues of modulus "
            f"$\\sqrt{{\\rho}} \\approx {MOM_RATE:.3f}$, so it contracts both by that factor "
            "per step, with oscillation. Along the valley that is faster than gradient "
            "descent; across it, slower: momentum's velocity carries the steep coordinate back "
            "and forth for longer, and after 20 steps it is still "
            f"$|\\theta_2| \\approx {MOM_STEEP_20:.2f}$ against gradient descent's "
            f"{GD_STEEP_20:.3f}. Adam divides each coordinate by the root mean square of its "
            "own gradients, which here puts the two directions on an equal footing "
            f"([[fig-optimizers]]). After {STEPS} steps gradient descent is still at a loss of "
            f"$\\frac{{1}}{{2}}({START[0] ** 2:g} \\cdot {GD_FLAT:.3f}^{{{2 * STEPS}}} + "
            f"{H_STEEP:g} \\cdot "
            f"{abs(GD_STEEP):.2f}^{{{2 * STEPS}}}) \\approx {GD_LOSS_150}$, while momentum is at "
            f"{MOM_LOSS_150} and Adam at {ADAM_LOSS_150}.",
            "This is the best case for Adam: the valley is aligned with the coordinate axes, "
            "so a per-coordinate scale is exactly the right correction. Rotate the valley by "
            "$45^\\circ$, $f(\\theta) = \\frac{1}{2} \\theta^\\top H \\theta$ with "
            "$H = R \\operatorname{diag}(h) R^\\top$, whose gradient is",
            Step(
                "grad(theta @ (H @ theta) / 2, theta) == (H + H.T) @ theta / 2",
                "product rule; this is $H \\theta$ for symmetric $H$",
                label="rotated-gradient",
            ),
            "Gradient descent and momentum combine gradients linearly, so rotating the "
            "problem just rotates their paths, and their losses are the same as before. "
            "Adam's division by $\\sqrt{\\hat{v}_t}$ acts coordinate by coordinate and does "
            "not commute with the rotation. With the same settings it is still at a loss of "
            f"about {ADAM_ROTATED_LOSS_150:.2f} after {STEPS} steps (dashed line). "
            "Adam's normalization is diagonal: its "
            "advantage on an ill-conditioned problem depends on the curvature being roughly "
            "aligned with the coordinates. The figure runs the update rules above, written in "
            "the formula language and evaluated step by step, on the verified gradients "
            "[[quadratic-gradient]] and [[rotated-gradient]].",
            Figure(
                "optimizers-quadratic",
                "SGD, heavy-ball momentum and Adam on $f(\\theta) = \\frac{1}{2}(\\theta_1^2 + "
                "50\\,\\theta_2^2)$ from $(-4, 1)$, 150 steps, step sizes as in the legend "
                "(Adam with $\\beta_1 = 0.9$, $\\beta_2 = 0.999$, $\\epsilon = 10^{-8}$). "
                "Dashed: Adam on the same valley rotated by $45^\\circ$ (gradient descent and "
                "momentum give identical losses there).",
                draw_comparison,
                label="fig-optimizers",
            ),
        ),
        Section(
            "Implications for LLMs",
            "- **One learning rate for very different parameters.** Embeddings, attention "
            "and MLP matrices, normalization gains and the output layer receive gradients "
            "that differ by orders of magnitude. By [[scale-invariance]] Adam's step does not "
            "depend on that scale, so a single $\\alpha$ can serve the whole model.",
            "- **Warmup.** Bias correction fixes the mean of $\\hat{v}_t$, by "
            "[[unbiased-vhat]], but not its spread: after a few steps it is an average of "
            "very few squared gradients, and [[first-step]] shows the earliest steps have "
            "size $\\alpha$ in every coordinate regardless of how reliable the gradient is. "
            "Learning-rate warmup keeps these early steps small; [@radam] analyses this "
            "variance and proposes a correction for it.",
            "- **Stability and $\\beta_2$.** A parameter that has been idle and receives a "
            "gradient again jumps by $\\alpha(1-\\beta_1)/\\sqrt{1-\\beta_2}$, by "
            f"[[no-correction]]: ${JUMP_0999}\\,\\alpha$ with $\\beta_2 = 0.999$, "
            f"${JUMP_095}\\,\\alpha$ "
            "with $\\beta_2 = 0.95$. A shorter memory for $v$ also adapts faster when the "
            "gradient scale changes, which is one way to see why LLM pretraining favours "
            "$\\beta_2 = 0.95$.",
            "- **$\\epsilon$ is a floor.** In [[first-step]], a gradient much smaller than "
            "$\\epsilon$ gives the step $\\alpha g / \\epsilon$ instead of "
            "$\\alpha\\,\\operatorname{sign}(g)$; in general, coordinates whose gradient RMS "
            "$\\sqrt{\\hat{v}_t}$ is well below $\\epsilon$ take plain momentum steps "
            "$\\alpha \\hat{m}_t / \\epsilon$ instead of normalized ones. In very large "
            "models per-coordinate gradients can be small enough for this to matter.",
            "- **Weight decay.** An $L_2$ penalty added to the loss is divided by "
            "$\\sqrt{\\hat{v}}$ like the rest of the gradient, so it decays parameters with "
            "large gradients less. AdamW [@adamw] applies the decay to $\\theta$ directly, "
            "outside the normalization; it is the standard choice for LLMs (derived in the SGD "
            "note, [[sgd:l2-first-step]] to [[sgd:adamw-idle]]).",
            "- **Memory.** $m$ and $v$ are two extra numbers per parameter: the optimizer "
            "state is twice the size of the model, a large part of the memory of training.",
        ),
    ),
)
