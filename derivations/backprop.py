"""Note 6: backpropagation: the chain rule as vector-Jacobian products, an MLP by hand, BPTT."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine import build_environment, parse_formula, to_numpy
from engine.notes import Definition, Figure, Note, Reference, Section, Step
from engine.notes.prose import sci

# ---------------------------------------------------------------- numbers and the figure

WIDTH = 32  # hidden size of the RNN of the figure
STEPS_T = 60
WEIGHT_SCALES = (0.5, 1.0, 1.5)  # W entries ~ N(0, scale^2 / WIDTH)
SEED = 1
RNN_STEP_JACOBIAN = "diag(1 - h1**2) @ W"  # right side of [[rnn-step]]


Jacobian = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def rnn_gradient_norms(step_jacobian: Jacobian) -> dict[float, np.ndarray]:
    """||dh_t / dh_0||_2 for t = 1..STEPS_T of a tanh RNN with random inputs, per weight scale.

    `step_jacobian(h0, a1, W)` is one step's Jacobian at the previous state h0 and the input
    a1 (the right side of [[rnn-step]]); the product over the steps is taken in order.
    """
    rng = np.random.default_rng(SEED)
    out = {}
    for scale in WEIGHT_SCALES:
        w = rng.standard_normal((WIDTH, WIDTH)) * scale / np.sqrt(WIDTH)
        inputs = rng.standard_normal((STEPS_T, WIDTH)) * 0.5
        h, total, norms = np.zeros(WIDTH), np.eye(WIDTH), []
        for a in inputs:
            total = step_jacobian(h, a, w) @ total
            h = np.tanh(w @ h + a)
            norms.append(np.linalg.norm(total, 2))
        out[scale] = np.array(norms)
    return out


def _prose_numbers() -> dict[str, str]:
    env = build_environment(
        {"h0": "real[r]", "a1": "real[r]", "W": "real[r, r]"}, {"h1": "tanh(W @ h0 + a1)"}
    )
    jac = to_numpy(parse_formula(RNN_STEP_JACOBIAN, env))
    norms = rnn_gradient_norms(lambda h, a, w: jac(h0=h, a1=a, W=w))
    return {
        f"at_{scale:g}".replace(".", "_"): sci(float(values[-1])) for scale, values in norms.items()
    }


NUMBERS = _prose_numbers()


def draw_bptt(ctx: Any):
    """||dh_t/dh_0|| against t for three weight scales, from the verified step Jacobian."""
    rhs = ctx.step("rnn-step")[1]
    norms = rnn_gradient_norms(lambda h, a, w: ctx.evaluate(rhs, {"h0": h, "a1": a, "W": w}))
    fig = ctx.figure(5.0, 2.8)
    ax = fig.subplots()
    for scale, values in norms.items():
        ax.plot(np.arange(1, STEPS_T + 1), values, label=f"$\\sigma_W = {scale:g}$")
    ax.set_yscale("log")
    ax.set_xlabel("time steps $t$")
    ax.set_ylabel("$\\|\\partial h_t / \\partial h_0\\|_2$")
    ax.legend(loc="lower left", fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the note

NOTE = Note(
    name="backprop",
    order=6,
    title="Backpropagation and the chain rule",
    summary=(
        "How every gradient in the other notes is computed: the chain rule applied backwards, "
        "one vector-Jacobian product per operation. A two-layer network's gradients derived "
        "by hand in matrix form (with the $1/B$ of a batch mean), what reverse mode costs, "
        "and why gradients through many layers or time steps vanish or explode."
    ),
    vars={
        "X": "real[B, m]",
        "W1": "real[m, k]",
        "W2": "real[k, c]",
        "Y": "real[B, c]",
        "Z": "real[B, c]",
        "A": "real[B, k]",
        "G": "real[B, k]",
        "M": "real[B, k]",
        "N": "real[k, c]",
        "U": "real[B, c]",
        "W": "real[r, r]",
        "h0": "real[r]",
        "a1": "real[r]",
        "a2": "real[r]",
        "a3": "real[r]",
    },
    defs={
        "H": "tanh(X @ W1)",
        "F": "H @ W2",
        "L": "sum((F - Y)**2) / (2 * B)",
        "E": "(F - Y) / B",
        "D": "(E @ W2.T) * (1 - H**2)",
        "h1": "tanh(W @ h0 + a1)",
        "h2": "tanh(W @ h1 + a2)",
        "h3": "tanh(W @ h2 + a3)",
    },
    references=(
        Reference(
            "rumelhart",
            "D. E. Rumelhart, G. E. Hinton, R. J. Williams, Learning representations by "
            "back-propagating errors, Nature 323, 1986.",
            "https://doi.org/10.1038/323533a0",
        ),
        Reference(
            "griewank",
            "A. Griewank, A. Walther, Evaluating Derivatives: Principles and Techniques of "
            "Algorithmic Differentiation, 2nd ed., SIAM 2008.",
            "https://doi.org/10.1137/1.9780898717761",
        ),
        Reference(
            "bengio",
            "Y. Bengio, P. Simard, P. Frasconi, Learning long-term dependencies with gradient "
            "descent is difficult, IEEE Trans. Neural Networks 5(2), 1994.",
            "https://doi.org/10.1109/72.279181",
        ),
        Reference(
            "pascanu",
            "R. Pascanu, T. Mikolov, Y. Bengio, On the difficulty of training recurrent neural "
            "networks, ICML 2013.",
            "https://arxiv.org/abs/1211.5063",
        ),
        Reference(
            "karpathy",
            "A. Karpathy, Building makemore Part 4: Becoming a Backprop Ninja, 2022.",
            "https://www.youtube.com/watch?v=q8SA3rM6ckI",
        ),
    ),
    sections=(
        Section(
            "Intuition",
            "A network is a composition of simple operations: matrix products, elementwise "
            "nonlinearities, sums. Training needs the gradient of one scalar, the loss, with "
            "respect to millions of parameters. The chain rule says the derivative of a "
            "composition is the product of the operations' Jacobians; backpropagation "
            "[@rumelhart] evaluates that product from the loss end, so that every factor is "
            "multiplied into a vector, never into another matrix. Each operation then needs "
            "one rule: given the gradient with respect to its output, return the gradient "
            "with respect to its inputs, a *vector-Jacobian product* (VJP). `llm-math "
            "derive` is this procedure with the rules written down once and checked.",
            "Notation: a batch of $B$ examples is stacked in the rows of $X \\in "
            "\\mathbb{R}^{B \\times m}$; $\\mathrm{d}V$ is the gradient of the loss with "
            "respect to a quantity $V$, with the shape of $V$. Local rules are stated for "
            "free matrices ($Z, A, M, N$) and free upstream gradients ($G$, $U$), as in the "
            "attention note; a claim about $\\sum(G \\odot f(\\cdot))$ with $G$ free is a "
            "statement about every loss at once.",
        ),
        Section(
            "Reverse mode as vector-Jacobian products",
            "Take $y = f(x)$ inside a larger computation with loss $L$, and suppose "
            "$\\mathrm{d}y = \\partial L / \\partial y$ is known. By the chain rule "
            "$\\partial L / \\partial x_j = \\sum_i \\mathrm{d}y_i\\, \\partial y_i / "
            "\\partial x_j$: the row vector $\\mathrm{d}y^\\top$ times the Jacobian of $f$. "
            "For the operations of a network these products have closed forms that never "
            "build the Jacobian. Two are enough for this note. A matrix product passes the "
            "gradient back through the transposed factors:",
            Step(
                "grad(sum(U * (M @ N)), M) == U @ N.T",
                "$\\partial (M N)_{il} / \\partial M_{ij} = N_{jl}$",
                label="vjp-left",
            ),
            Step(
                "grad(sum(U * (M @ N)), N) == M.T @ U",
                "$\\partial (M N)_{il} / \\partial N_{jl} = M_{ij}$",
                label="vjp-right",
            ),
            "and an elementwise function multiplies by its derivative, entry by entry (a "
            "diagonal Jacobian):",
            Step(
                "grad(sum(G * tanh(A)), A) == G * (1 - tanh(A)**2)",
                "$\\tanh' = 1 - \\tanh^2$",
                label="vjp-tanh",
            ),
            "The mean squared error of a batch, $\\frac{1}{2B} \\sum (Z - Y)^2$, starts the "
            "backward pass:",
            Step(
                "grad(sum((Z - Y)**2) / (2 * B), Z) == (Z - Y) / B",
                "$\\partial (z - y)^2 / \\partial z = 2 (z - y)$",
                label="vjp-mse",
            ),
            "The $1/B$ is there because the loss is a mean over the batch: every example's "
            "gradient is divided by $B$, so the batch gradient is the average of the "
            "per-example gradients, and its size does not grow with the batch.",
        ),
        Section(
            "A two-layer network by hand",
            "The network maps a batch $X$ through a tanh hidden layer to outputs $F$, with a "
            "squared-error loss against targets $Y$:",
            Definition("H"),
            Definition("F"),
            Definition("L"),
            "Walk the graph $X \\to H \\to F \\to L$ backwards. [[vjp-mse]] with $Z = F$ gives "
            "the output error",
            Definition("E"),
            "then [[vjp-right]] with $M = H$, $N = W_2$ gives the last layer's weight "
            "gradient, a product of the layer's input and its output error:",
            Step(
                "grad(L, W2) == H.T @ E",
                "[[vjp-mse]], then [[vjp-right]]",
                label="grad-w2",
            ),
            "[[vjp-left]] carries the error back to $H$ as $E W_2^\\top$, and [[vjp-tanh]] "
            "through the nonlinearity gives the hidden layer's error",
            Definition("D"),
            "with which the first layer has the same form as the second:",
            Step(
                "grad(L, W1) == X.T @ D",
                "[[vjp-left]], [[vjp-tanh]], then [[vjp-right]] with $M = X$",
                label="grad-w1",
            ),
            Step(
                "grad(L, X) == D @ W1.T",
                "[[vjp-left]] with $N = W_1$",
                label="grad-x",
            ),
            "Each weight gradient is (layer input)$^\\top$ times (error at the layer's "
            "output): $\\mathrm{d}W = X^\\top \\delta$, summed over the batch by the matrix "
            "product, with the $1/B$ of the mean already inside $E$. Each line above is "
            "checked end to end against the gradient of the composed loss, not against the "
            "local rules it was derived from; [@karpathy] works through the same exercise "
            "for a larger network.",
        ),
        Section(
            "What reverse mode costs",
            "Count multiplications. The forward pass computes $X W_1$ ($B m k$) and $H W_2$ "
            "($B k c$). The backward pass computes $H^\\top E$ ($B k c$), $E W_2^\\top$ "
            "($B c k$) and $X^\\top D$ ($B m k$), plus $D W_1^\\top$ ($B m k$) if the input's "
            "gradient is needed; the elementwise steps are lower order. So one backward pass "
            "costs about twice the forward pass's matrix products, and a training step "
            "(forward and backward) about three forward passes, whatever the number of "
            "parameters. This is the cheap-gradient principle of reverse-mode "
            "differentiation [@griewank]: the gradient of a scalar costs a small constant "
            "times the function. Forward mode (pushing one tangent vector from the input "
            "forward) would need one pass per parameter.",
            "The price is memory: the backward pass needs $H$ (for [[grad-w2]] and for "
            "$1 - H^2$ in $D$) and $X$ (for [[grad-w1]]), so every intermediate activation "
            "of the forward pass is kept until the backward pass has used it. Activation "
            "memory, not parameter memory, is what limits the batch size and context length "
            "of LLM training; recomputing activations instead of storing them "
            "(checkpointing) trades one more forward pass for it.",
        ),
        Section(
            "Vanishing and exploding gradients",
            "The gradient with respect to something $T$ operations before the loss is a "
            "product of $T$ Jacobians. A recurrent network makes this visible: with state "
            "$h_t = \\tanh(W h_{t-1} + a_t)$ (inputs $a_t$ already projected), one step's "
            "Jacobian is",
            Definition("h1"),
            Step(
                "jacobian(h1, h0) == " + RNN_STEP_JACOBIAN,
                "chain rule with [[vjp-tanh]]'s derivative; $a_1$ does not depend on $h_0$",
                label="rnn-step",
            ),
            "and backpropagation through time multiplies them, newest first:",
            Definition("h2"),
            Definition("h3"),
            Step(
                "jacobian(h3, h0) == diag(1 - h3**2) @ W @ diag(1 - h2**2) @ W @ "
                "diag(1 - h1**2) @ W",
                "[[rnn-step]] three times",
                label="bptt",
            ),
            "Each factor has spectral norm at most $\\|W\\|_2$, because "
            "$0 < 1 - \\tanh^2 \\le 1$. If $\\|W\\|_2 < 1$ the product shrinks at least "
            "geometrically with $t$ and the gradient from distant steps vanishes "
            "[@bengio]; if the weights are large it can instead grow, and the gradient "
            "explodes [@pascanu]. [[fig-bptt]] multiplies the verified step Jacobians "
            f"through a tanh RNN of width {WIDTH} for {STEPS_T} steps: the norm of "
            "$\\partial h_t / \\partial h_0$ at the last step is "
            f"${NUMBERS['at_0_5']}$, ${NUMBERS['at_1']}$ and ${NUMBERS['at_1_5']}$ for "
            "$\\sigma_W = 0.5, 1, 1.5$.",
            Figure(
                "bptt",
                f"Norm of $\\partial h_t / \\partial h_0$ in a tanh RNN of width {WIDTH} with "
                "random weights of entries $\\mathcal{N}(0, \\sigma_W^2 / "
                f"{WIDTH})$ and random inputs, from the verified step Jacobian.",
                draw_bptt,
                label="fig-bptt",
            ),
            "Transformers avoid the recurrence: every position reaches every earlier one "
            "through one attention step, and depth is handled by residual connections, "
            "whose Jacobian $I + J$ keeps an identity path through every layer (the "
            "normalization note, [[normalization:residual-jacobian]]). Exploding gradients "
            "still occur in LLM training and are handled by clipping the gradient's global "
            "norm.",
        ),
    ),
)
