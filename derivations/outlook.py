"""Note 11: outlook: linearization, gradient descent on the linear model, the tangent kernel."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine import build_environment, parse_formula, to_numpy
from engine.notes import Definition, Figure, Note, Reference, Section, Step
from engine.notes.prose import sci

STEPS_K = 6  # the closed form is checked for k = 1..STEPS_K
OUTPUTS, PARAMETERS = 8, 32  # sizes of the figure's random Jacobian
ITERATIONS = 60
RATES = (1.0, 1.9, 2.05)  # learning rates in units of 1 / lambda_max(K)
SEED = 3

LINEAR_GRADIENT = "J.T @ (f0 + J @ (theta - theta0) - y)"  # right side of [[linear-gradient]]
LINEAR_TYPES = {
    "J": "real[n, m]",
    "theta": "real[m]",
    "theta0": "real[m]",
    "f0": "real[n]",
    "y": "real[n]",
}


def _descent_defs() -> dict[str, str]:
    """theta_k, f_k (gradient descent on the linearized model) and r_k (the closed form)."""
    defs = {"K": "J @ J.T", "r0": "f0 - y"}
    for k in range(1, STEPS_K + 1):
        defs[f"theta{k}"] = f"theta{k - 1 if k > 1 else 0} - eta * J.T @ (f{k - 1} - y)"
        defs[f"f{k}"] = f"f0 + J @ (theta{k} - theta0)"
        defs[f"r{k}"] = f"(eye(n) - eta * K) @ r{k - 1}"
    return defs


DEFS = _descent_defs()


def residual_norms(gradient: Any, jac: np.ndarray, rate: float) -> np.ndarray:
    """||f_k - y|| for k = 0..ITERATIONS of gradient descent with step `rate` on the linear
    model, each step's gradient from `gradient(theta=..., J=..., theta0=..., f0=..., y=...)`."""
    rng = np.random.default_rng(SEED + 1)
    f0, y = rng.standard_normal(OUTPUTS), rng.standard_normal(OUTPUTS)
    theta0 = np.zeros(PARAMETERS)
    theta, norms = theta0.copy(), []
    for _ in range(ITERATIONS + 1):
        norms.append(float(np.linalg.norm(f0 + jac @ (theta - theta0) - y)))
        theta = theta - rate * gradient(theta=theta, J=jac, theta0=theta0, f0=f0, y=y)
    return np.array(norms)


def jacobian_for_figure() -> tuple[np.ndarray, float]:
    """The figure's random Jacobian and the largest eigenvalue of K = J J^T."""
    rng = np.random.default_rng(SEED)
    jac = rng.standard_normal((OUTPUTS, PARAMETERS)) / np.sqrt(PARAMETERS)
    return jac, float(np.linalg.eigvalsh(jac @ jac.T).max())


def _prose_numbers() -> dict[str, str]:
    env = build_environment(LINEAR_TYPES)
    gradient = to_numpy(parse_formula(LINEAR_GRADIENT, env))
    jac, lam_max = jacobian_for_figure()
    final = {r: residual_norms(gradient, jac, r / lam_max)[-1] for r in RATES}
    return {
        "stable": sci(final[RATES[1]]),
        "unstable": sci(final[RATES[2]]),
    }


NUMBERS = _prose_numbers()


def draw_rates(ctx: Any):
    """||f_k - y|| against k at three step sizes, from the verified gradient."""
    rhs = ctx.step("linear-gradient")[1]
    jac, lam_max = jacobian_for_figure()
    fig = ctx.figure(5.0, 2.8)
    ax = fig.subplots()
    for r in RATES:
        norms = residual_norms(lambda **v: ctx.evaluate(rhs, v), jac, r / lam_max)
        ax.plot(np.arange(ITERATIONS + 1), norms, label=f"$\\eta = {r:g} / \\lambda_{{\\max}}$")
    ax.set_yscale("log")
    ax.set_xlabel("step $k$")
    ax.set_ylabel("$\\|f_k - y\\|$")
    ax.legend(loc="center left", fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def _residual_steps() -> list[Step]:
    steps = []
    for k in range(1, STEPS_K + 1):
        why = (
            "[[linear-gradient]] and $f_1 = f_0 + J(\\theta_1 - \\theta_0)$"
            if k == 1
            else f"step $k = {k}$, as for $k = 1$"
        )
        steps.append(Step(f"f{k} - y == r{k}", why, label=f"residual-{k}"))
    return steps


NOTE = Note(
    name="outlook",
    order=11,
    title="Outlook: linearization and the neural tangent kernel",
    summary=(
        "What happens when a network barely moves from its initialization: its first-order "
        "Taylor model is linear in the parameters, gradient descent on it has a closed form "
        "governed by the kernel $K = J J^\\top$, and it converges exactly when the step size "
        "is below $2 / \\lambda_{\\max}(K)$. What this 'lazy' picture explains about LLMs, "
        "and what it does not."
    ),
    vars={**LINEAR_TYPES, "eta": "positive"},
    defs=DEFS,
    references=(
        Reference(
            "jacot",
            "A. Jacot, F. Gabriel, C. Hongler, Neural Tangent Kernel: Convergence and "
            "Generalization in Neural Networks, NeurIPS 2018.",
            "https://arxiv.org/abs/1806.07572",
        ),
        Reference(
            "lee",
            "J. Lee et al., Wide Neural Networks of Any Depth Evolve as Linear Models Under "
            "Gradient Descent, NeurIPS 2019.",
            "https://arxiv.org/abs/1902.06720",
        ),
        Reference(
            "chizat",
            "L. Chizat, E. Oyallon, F. Bach, On Lazy Training in Differentiable Programming, "
            "NeurIPS 2019.",
            "https://arxiv.org/abs/1812.07956",
        ),
        Reference(
            "yang",
            "G. Yang, E. J. Hu, Tensor Programs IV: Feature Learning in Infinite-Width Neural "
            "Networks, ICML 2021.",
            "https://arxiv.org/abs/2011.14522",
        ),
        Reference(
            "malladi",
            "S. Malladi, A. Wettig, D. Yu, D. Chen, S. Arora, A Kernel-Based View of Language "
            "Model Fine-Tuning, ICML 2023.",
            "https://arxiv.org/abs/2210.05643",
        ),
    ),
    sections=(
        Section(
            "Intuition",
            "Every other note derives an exact formula. This one is about an approximation "
            "that the theory of deep learning leans on: near its initialization $\\theta_0$, "
            "a network's outputs on the training inputs change, to first order, linearly in "
            "the parameters. If training does not move the parameters far, the linear model "
            "describes the whole of training, and gradient descent on it can be solved in "
            "closed form. The matrix that governs it, $K = J J^\\top$, is the *neural tangent "
            "kernel* [@jacot]. The note derives the closed form, checks it, states when it "
            "converges, and ends with what is and is not known about LLMs in this picture.",
            "Notation: $f \\in \\mathbb{R}^n$ stacks the network's outputs on $n$ training "
            "inputs, $\\theta \\in \\mathbb{R}^m$ its parameters, $J = \\partial f / "
            "\\partial \\theta \\in \\mathbb{R}^{n \\times m}$ the Jacobian at $\\theta_0$, "
            "$f_0$ the outputs there, $y$ the targets and $\\eta$ the step size. Subscripts "
            "$k$ count gradient-descent steps.",
        ),
        Section(
            "The linearized model",
            "The first-order Taylor model of the outputs is $f(\\theta) \\approx f_0 + "
            "J(\\theta - \\theta_0)$. With the squared loss $\\frac{1}{2}\\|f - y\\|^2$ its "
            "gradient in $\\theta$ is $J^\\top$ times the residual:",
            Step(
                "grad(sum((f0 + J @ (theta - theta0) - y)**2) / 2, theta) == " + LINEAR_GRADIENT,
                "chain rule",
                label="linear-gradient",
            ),
            "Gradient descent from $\\theta_0$ takes the steps and gives the outputs",
            Definition("theta1"),
            Definition("f1"),
            "and so on for $k = 2, 3, \\dots$. Multiplying the update by $J$ shows what it "
            "does to the residual $r_k = f_k - y$: it multiplies it by $I - \\eta K$, with",
            Definition("K"),
            Definition("r0"),
            Definition("r1"),
            "Unrolled, $r_k = (I - \\eta K)^k (f_0 - y)$. The steps below run gradient "
            "descent itself (the definitions $\\theta_k$, $f_k$, nested $k$ deep) and check "
            f"that its residual is the closed form, for $k = 1, \\dots, {STEPS_K}$:",
            *_residual_steps(),
        ),
        Section(
            "When it converges",
            "$K = J J^\\top$ is symmetric and positive semidefinite, so it has an orthonormal "
            "eigenbasis with eigenvalues $\\lambda_i \\ge 0$. In that basis $(I - \\eta K)^k$ "
            "multiplies the $i$-th component of the residual by $(1 - \\eta \\lambda_i)^k$. "
            "Components with $\\lambda_i = 0$ (output directions the parameters cannot reach "
            "to first order) never change; every other component decays exactly when "
            "$|1 - \\eta \\lambda_i| < 1$, that is $0 < \\eta < 2 / \\lambda_i$. So gradient "
            "descent on the linear model fits every reachable direction if and only if "
            "$\\eta < 2 / \\lambda_{\\max}(K)$, and the slowest direction, the smallest "
            "positive eigenvalue, sets the time it takes. [[fig-rates]] runs the descent with "
            f"a random $J$ of size ${OUTPUTS} \\times {PARAMETERS}$ from the verified gradient "
            "[[linear-gradient]]: after "
            f"{ITERATIONS} steps the residual is ${NUMBERS['stable']}$ at "
            f"$\\eta = {RATES[1]:g} / \\lambda_{{\\max}}$ and ${NUMBERS['unstable']}$ at "
            f"$\\eta = {RATES[2]:g} / \\lambda_{{\\max}}$, just past the threshold. This is "
            "the same condition as for gradient descent on any quadratic (the SGD note's "
            "heavy ball with $\\rho = 0$), because the linearized loss is a quadratic in "
            "$\\theta$ with Hessian $J^\\top J$, whose nonzero eigenvalues are those of "
            "$K$.",
            Figure(
                "rates",
                f"Residual norm of gradient descent on a linearized model with a random "
                f"${OUTPUTS} \\times {PARAMETERS}$ Jacobian, at three step sizes in units of "
                "$1 / \\lambda_{\\max}(K)$, each step computed from the verified gradient.",
                draw_rates,
                label="fig-rates",
            ),
        ),
        Section(
            "What this says about LLMs",
            "[@jacot] showed that as the width of a network grows, with the standard "
            "initialization and scaling, its tangent kernel at initialization converges to a "
            "fixed kernel and stays nearly constant during training; [@lee] showed that wide "
            "networks trained by gradient descent then follow their linearization closely. "
            "[@chizat] named this the *lazy* regime and showed that it is a matter of "
            "scaling, not of width alone: it appears whenever the outputs move much faster "
            "than the parameters.",
            "- **What it explains.** In the lazy regime training is a convex problem in "
            "disguise: the loss of the linear model is a quadratic, the closed form above "
            "holds, the learning rate has a sharp stability limit set by $\\lambda_{\\max}$, "
            "and what the model learns is kernel regression with $K$. [@malladi] found that "
            "fine-tuning a pretrained language model on a downstream task with a prompt "
            "often behaves like this kernel: the fine-tuned model's predictions are close to "
            "those of kernel regression with the pretrained model's tangent kernel.",
            "- **What it does not.** A lazy network does not learn features: $J$, and with "
            "it the representation, stays what it was at initialization. Pretraining an LLM "
            "is the opposite case: its value lies in the representations it learns, which "
            "change substantially, and parameterizations designed to keep feature learning "
            "alive at large width [@yang] are used to transfer hyperparameters across model "
            "sizes. The neural tangent kernel is therefore a good local model of a step, of "
            "fine-tuning or of a small learning rate, not a theory of what pretraining "
            "learns; that theory does not yet exist.",
        ),
    ),
)
