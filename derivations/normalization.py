"""Note 7: LayerNorm and RMSNorm backward, residual connections, GELU, SiLU and SwiGLU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine import build_environment, parse_formula, to_numpy
from engine.notes import Definition, Figure, Note, Reference, Section, Step
from engine.notes.prose import sci

# ---------------------------------------------------------------- numbers and figures

WIDTH = 64  # width of the random networks of the depth figure
DEPTH = 48
WEIGHT_SCALES = (0.5, 1.0, 2.0)  # W entries ~ N(0, scale^2 / WIDTH)
SEED = 0

# Right sides of the verified steps the figures and prose numbers evaluate.
PLAIN_JACOBIAN = "diag(1 - tanh(W @ x)**2) @ W"
RESIDUAL_JACOBIAN = "eye(n) + diag(1 - tanh(W @ x)**2) @ W"
GELU_DERIVATIVE = "g * (Phi + x * phi)"
GELU_DEFS = {"Phi": "(1 + erf(x / sqrt(2))) / 2", "phi": "exp(-x**2 / 2) / sqrt(2 * pi)"}

Layer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def jacobian_norms(plain: Layer, residual: Layer) -> dict[tuple[str, float], np.ndarray]:
    """Norm of the input-output Jacobian after each layer, plain and residual tanh networks.

    `plain(x, W)` and `residual(x, W)` are one layer's Jacobian at its input x (the right
    sides of [[plain-jacobian]] and [[residual-jacobian]]); the product is taken in order.
    """
    rng = np.random.default_rng(SEED)
    out: dict[tuple[str, float], np.ndarray] = {}
    for scale in WEIGHT_SCALES:
        weights = [
            rng.standard_normal((WIDTH, WIDTH)) * scale / np.sqrt(WIDTH) for _ in range(DEPTH)
        ]
        x0 = rng.standard_normal(WIDTH)
        for kind, layer in (("plain", plain), ("residual", residual)):
            x, total, norms = x0.copy(), np.eye(WIDTH), []
            for w in weights:
                total = layer(x, w) @ total
                norms.append(np.linalg.norm(total, 2))
                x = np.tanh(w @ x) + (x if kind == "residual" else 0.0)
            out[(kind, scale)] = np.array(norms)
    return out


def _engine(text: str, defs: dict[str, str] | None = None, **types: str) -> Callable:
    """A NumPy callable of formula text, through the engine's parser and NumPy backend."""
    return to_numpy(parse_formula(text, build_environment(types, defs)))


def _prose_numbers() -> dict[str, str]:
    """The numbers the prose quotes, computed from the same formulas as the figures."""
    env = {"x": "real[n]", "W": "real[n, n]"}
    plain, residual = _engine(PLAIN_JACOBIAN, **env), _engine(RESIDUAL_JACOBIAN, **env)
    norms = jacobian_norms(lambda x, w: plain(x=x, W=w), lambda x, w: residual(x=x, W=w))
    last = {key: float(v[-1]) for key, v in norms.items()}
    xs = np.linspace(-4.0, 4.0, 8001)
    slope = _engine(GELU_DERIVATIVE, GELU_DEFS, x="real[n]", g="real[n]")(x=xs, g=np.ones_like(xs))
    return {
        "plain_small": sci(last[("plain", WEIGHT_SCALES[0])]),
        "plain_large": sci(last[("plain", WEIGHT_SCALES[-1])]),
        "residual_low": f"{min(last[('residual', s)] for s in WEIGHT_SCALES):.0f}",
        "residual_high": f"{max(last[('residual', s)] for s in WEIGHT_SCALES):.0f}",
        "gelu_peak": f"{slope.max():.2f}",
        "gelu_peak_at": f"{xs[slope.argmax()]:.2f}",
        "gelu_dip": f"{slope.min():.2f}",
        "gelu_dip_at": f"{xs[slope.argmin()]:.2f}",
    }


NUMBERS = _prose_numbers()


def _networks(ctx: Any) -> dict[tuple[str, float], np.ndarray]:
    """`jacobian_norms` with each layer's Jacobian evaluated from the verified steps."""
    plain, residual = ctx.step("plain-jacobian")[1], ctx.step("residual-jacobian")[1]
    return jacobian_norms(
        lambda x, w: ctx.evaluate(plain, {"x": x, "W": w}),
        lambda x, w: ctx.evaluate(residual, {"x": x, "W": w}),
    )


def draw_depth(ctx: Any):
    """Spectral norm of the Jacobian through depth, plain vs residual, three weight scales."""
    norms = _networks(ctx)
    fig = ctx.figure(6.6, 2.7)
    left, right = fig.subplots(1, 2, sharey=True)
    layers = np.arange(1, DEPTH + 1)
    for ax, kind, title in ((left, "plain", "plain"), (right, "residual", "residual")):
        for scale in WEIGHT_SCALES:
            ax.plot(layers, norms[(kind, scale)], label=f"$\\sigma_W = {scale:g}$")
        ax.set_yscale("log")
        ax.set_xlabel("layer $\\ell$")
        ax.set_title(
            f"{title}: $x_{{\\ell+1}} = "
            + ("x_\\ell + " * (kind == "residual"))
            + "\\tanh(W_\\ell x_\\ell)$",
            fontsize=9,
        )
    left.set_ylabel("$\\|\\partial x_\\ell / \\partial x_0\\|_2$")
    left.legend(loc="lower left", fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def draw_activations(ctx: Any):
    """GELU (exact and tanh), SiLU and ReLU, and their derivatives from the verified steps."""
    xs = np.linspace(-4.0, 4.0, 321)
    ones = np.ones_like(xs)
    fig = ctx.figure(6.6, 2.7)
    left, right = fig.subplots(1, 2)
    curves = (
        ("GELU", "gelu(x)", ctx.step("gelu-derivative")[1]),
        ("GELU (tanh)", "gelu_tanh(x)", ctx.step("gelu-tanh-derivative")[1]),
        ("SiLU", "silu(x)", ctx.step("silu-derivative")[1]),
        ("ReLU", "relu(x)", ctx.step("relu-derivative")[1]),
    )
    for name, value, slope in curves:
        style = "--" if "tanh" in name else "-"
        left.plot(xs, ctx.evaluate(value, {"x": xs}), style, label=name)
        right.plot(xs, ctx.evaluate(slope, {"x": xs, "g": ones}), style, label=name)
    left.set_xlabel("$x$")
    left.set_ylabel("activation")
    left.legend(loc="upper left", fontsize=7, frameon=False)
    right.set_xlabel("$x$")
    right.set_ylabel("derivative")
    right.axhline(0.0, color="0.3", lw=0.6)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- the note

NOTE = Note(
    name="normalization",
    order=7,
    title="Normalization, residuals and activations",
    summary=(
        "The pieces of a transformer block around attention: LayerNorm and RMSNorm with their "
        "backward passes derived step by step (the gradient is orthogonal to $\\mathbf{1}$, "
        "and to $\\hat{x}$ up to a term in $\\epsilon$), the residual connection's Jacobian "
        "$I + J$ and why it keeps gradients alive through depth, and the GELU, SiLU and "
        "SwiGLU activations with their derivatives."
    ),
    vars={
        "x": "real[n]",
        "g": "real[n]",
        "w": "real[n]",
        "b": "real[n]",
        "eps": "positive",
        "X": "real[m, n]",
        "G": "real[m, n]",
        "W": "real[n, n]",
        "W_1": "real[k, n]",
        "W_2": "real[k, n]",
        "dh": "real[k]",
    },
    defs={
        "sigma": "sqrt(var(x) + eps)",
        "xhat": "(x - mean(x)) / sigma",
        "dx": "(g - mean(g) - xhat * mean(g * xhat)) / sigma",
        "sigma_row": "sqrt(var(X, axis=-1, keepdims=True) + eps)",
        "Xhat": "(X - mean(X, axis=-1, keepdims=True)) / sigma_row",
        "rhat": "x / sqrt(mean(x**2) + eps)",
        "Phi": "(1 + erf(x / sqrt(2))) / 2",
        "phi": "exp(-x**2 / 2) / sqrt(2 * pi)",
        "a": "sqrt(2 / pi) * (x + 0.044715 * x**3)",
        "t": "tanh(a)",
        "kappa": "sqrt(2 / pi) * (1 + 3 * 0.044715 * x**2)",
        "u": "W_1 @ x",
        "v": "W_2 @ x",
        "du": "dh * v * sigmoid(u) * (1 + u * (1 - sigmoid(u)))",
    },
    references=(
        Reference(
            "layernorm",
            "J. L. Ba, J. R. Kiros, G. E. Hinton, Layer Normalization, 2016.",
            "https://arxiv.org/abs/1607.06450",
        ),
        Reference(
            "rmsnorm",
            "B. Zhang, R. Sennrich, Root Mean Square Layer Normalization, NeurIPS 2019.",
            "https://arxiv.org/abs/1910.07467",
        ),
        Reference(
            "resnet",
            "K. He, X. Zhang, S. Ren, J. Sun, Deep Residual Learning for Image Recognition, "
            "CVPR 2016.",
            "https://arxiv.org/abs/1512.03385",
        ),
        Reference(
            "xiong",
            "R. Xiong et al., On Layer Normalization in the Transformer Architecture, ICML 2020.",
            "https://arxiv.org/abs/2002.04745",
        ),
        Reference(
            "gelu",
            "D. Hendrycks, K. Gimpel, Gaussian Error Linear Units (GELUs), 2016.",
            "https://arxiv.org/abs/1606.08415",
        ),
        Reference(
            "swiglu",
            "N. Shazeer, GLU Variants Improve Transformer, 2020.",
            "https://arxiv.org/abs/2002.05202",
        ),
    ),
    sections=(
        Section(
            "Intuition",
            "A transformer block is attention and a small MLP, each wrapped in two pieces of "
            "plumbing: a normalization that rescales every token's vector to a standard size, "
            "and a residual connection that adds the block's input back to its output. The "
            "plumbing is what makes a stack of dozens of blocks trainable. This note derives "
            "the backward pass of both normalizations used in LLMs, LayerNorm [@layernorm] and "
            "RMSNorm [@rmsnorm], shows what the residual connection does to the gradient, and "
            "derives the derivatives of the smooth activations that replaced ReLU.",
            "Notation: $x \\in \\mathbb{R}^n$ is one token's vector, $\\bar{x}$ the mean of "
            "its entries, $\\operatorname{Var}(x) = \\frac{1}{n} \\sum_i (x_i - \\bar{x})^2$ "
            "the variance (no Bessel correction), $\\epsilon > 0$ a small constant, $g$ the "
            "upstream gradient $\\partial L / \\partial y$ that backpropagation hands to a "
            "layer with output $y$. As in the attention note, every gradient claim is made "
            "for the linear surrogate $\\sum_i g_i y_i$ with $g$ a free vector, which makes it "
            "a statement about every loss at once. $\\sum(\\cdot)$ and "
            "$\\operatorname{mean}(\\cdot)$ without an index run over all entries.",
        ),
        Section(
            "LayerNorm",
            "LayerNorm centres a vector, divides it by its standard deviation, and then "
            "applies a learned gain $w$ and bias $b$ entry by entry: $y = w \\odot \\hat{x} + "
            "b$ with the standard deviation $\\sigma$ and the normalized vector",
            Definition("sigma"),
            Definition("xhat"),
            "The normalized vector has mean zero and, up to $\\epsilon$, unit second moment:",
            Step(
                "mean(xhat) == 0",
                "$\\sum_i (x_i - \\bar{x}) = 0$",
                label="ln-centred",
            ),
            Step(
                "mean(xhat**2) == var(x) / (var(x) + eps)",
                "$\\operatorname{mean}((x - \\bar{x})^2) = \\operatorname{Var}(x)$",
                label="ln-second-moment",
            ),
            "**The backward pass, one piece at a time.** $\\hat{x}$ depends on $x$ through "
            "the centred vector $x - \\bar{x}$ and through the variance. Centring subtracts "
            "the mean of the upstream gradient:",
            Step(
                "grad(sum(g * (x - mean(x))), x) == g - mean(g)",
                "$\\partial (x_i - \\bar{x}) / \\partial x_j = \\delta_{ij} - 1/n$",
                label="centering-gradient",
            ),
            "and the variance has the gradient",
            Step(
                "grad(var(x), x) == 2 * (x - mean(x)) / n",
                "[[centering-gradient]] with $g = 2 (x - \\bar{x}) / n$ and "
                "$\\sum_i (x_i - \\bar{x}) = 0$",
                label="variance-gradient",
            ),
            "By the quotient rule, $\\partial \\hat{x}_i / \\partial x_j = "
            "(\\delta_{ij} - 1/n) / \\sigma - (x_i - \\bar{x})\\, "
            "\\partial \\sigma / \\partial x_j / \\sigma^2$, and by "
            "[[variance-gradient]] $\\partial \\sigma / \\partial x_j = (x_j - \\bar{x}) / "
            "(n \\sigma) = \\hat{x}_j / n$. So the Jacobian of LayerNorm is a projection "
            "divided by $\\sigma$:",
            Step(
                "jacobian(xhat, x) == (eye(n) - ones(n, n) / n - outer(xhat, xhat) / n) / sigma",
                "quotient rule with [[centering-gradient]] and [[variance-gradient]]",
                label="ln-jacobian",
            ),
            "Multiplying the upstream gradient by this symmetric matrix gives the backward "
            "pass in the form every implementation uses (and the one `llm-math derive` "
            "prints for this loss):",
            Definition("dx"),
            Step(
                "grad(sum(g * xhat), x) == dx",
                "$g^\\top$ times [[ln-jacobian]]: $g - \\bar{g}\\,\\mathbf{1} - \\hat{x}\\, "
                "\\operatorname{mean}(g \\odot \\hat{x})$, divided by $\\sigma$",
                label="ln-backward",
            ),
            "The gain and bias receive the plain gradients of a product and a sum, and the "
            "gain scales the gradient that reaches $\\hat{x}$:",
            Step(
                "grad(sum(g * (w * xhat + b)), w) == g * xhat",
                "$y_i = w_i \\hat{x}_i + b_i$",
                label="ln-gain",
            ),
            Step(
                "grad(sum(g * (w * xhat + b)), x) == "
                "(g * w - mean(g * w) - xhat * mean(g * w * xhat)) / sigma",
                "[[ln-backward]] with $g \\odot w$ for $g$",
                label="ln-backward-gain",
            ),
            "**What the gradient cannot do.** Adding the same constant to every entry of $x$ "
            "does not change $\\hat{x}$, so the gradient has no component along "
            "$\\mathbf{1}$:",
            Step(
                "sum(dx) == 0",
                "$\\sum_i (g_i - \\bar{g}) = 0$ and $\\sum_i \\hat{x}_i = 0$ by [[ln-centred]]",
                label="ln-orthogonal-ones",
            ),
            "Scaling $x$ by a factor $c > 0$ would not change $\\hat{x}$ either if $\\epsilon$ "
            "were 0, and then the gradient would also be orthogonal to $\\hat{x}$. With "
            "$\\epsilon > 0$ it is orthogonal up to a term that vanishes as "
            "$\\epsilon / \\operatorname{Var}(x) \\to 0$:",
            Step(
                "sum(dx * xhat) == eps * sum(g * xhat) / sigma**3",
                "[[ln-centred]] and [[ln-second-moment]]: "
                "$\\sum_i \\hat{x}_i^2 = n \\operatorname{Var}(x) / \\sigma^2$",
                label="ln-orthogonal-xhat",
            ),
            "Geometrically, LayerNorm's backward pass removes from $g$ the two directions "
            "along which the forward pass is (nearly) constant, and divides what is left by "
            "$\\sigma$. A large input therefore receives a small gradient; this is what keeps "
            "activations that grow during training from producing gradients that grow with "
            "them.",
            "**A batch of tokens.** A sequence is normalized token by token, one row of "
            "$X \\in \\mathbb{R}^{m \\times n}$ at a time:",
            Definition("sigma_row"),
            Definition("Xhat"),
            Step(
                "grad(sum(G * Xhat), X) == (G - mean(G, axis=-1, keepdims=True) - Xhat * "
                "mean(G * Xhat, axis=-1, keepdims=True)) / sigma_row",
                "[[ln-backward]], row by row",
                label="ln-backward-rows",
            ),
        ),
        Section(
            "RMSNorm",
            "RMSNorm [@rmsnorm], used by LLaMA and most recent LLMs, drops the centring and "
            "divides by the root mean square:",
            Definition("rhat"),
            "Without the centring, only the variance-like term remains in the backward pass:",
            Step(
                "grad(sum(g * rhat), x) == (g - rhat * mean(g * rhat)) / sqrt(mean(x**2) + eps)",
                "quotient rule; $\\partial \\sqrt{\\operatorname{mean}(x^2) + \\epsilon} / "
                "\\partial x_j = \\hat{r}_j / n$",
                label="rms-backward",
            ),
            "RMSNorm is invariant to scaling $x$ (when $\\epsilon = 0$) but not to shifting "
            "it, so its gradient is orthogonal to $x$ up to an $\\epsilon$ term, and not to "
            "$\\mathbf{1}$:",
            Step(
                "sum((g - rhat * mean(g * rhat)) / sqrt(mean(x**2) + eps) * x) == "
                "eps * sum(g * rhat) / (mean(x**2) + eps)",
                "$\\sum_i \\hat{r}_i x_i = n \\operatorname{mean}(x^2) / "
                "\\sqrt{\\operatorname{mean}(x^2) + \\epsilon}$",
                label="rms-orthogonal-x",
            ),
            "Saving the centring saves one reduction per token in the forward and in the "
            "backward pass; [@rmsnorm] reports that the re-centring of LayerNorm contributes "
            "little to its benefit.",
        ),
        Section(
            "Residual connections",
            "A residual block computes $y = x + f(x)$ instead of $y = f(x)$ [@resnet]. Its "
            "Jacobian is the identity plus the Jacobian of the branch. For a tanh layer "
            "$f(x) = \\tanh(W x)$:",
            Step(
                "jacobian(tanh(W @ x), x) == " + PLAIN_JACOBIAN,
                "chain rule; $\\tanh' = 1 - \\tanh^2$",
                label="plain-jacobian",
            ),
            Step(
                "jacobian(x + tanh(W @ x), x) == " + RESIDUAL_JACOBIAN,
                "$\\partial x / \\partial x = I$ plus [[plain-jacobian]]",
                label="residual-jacobian",
            ),
            "Backpropagation through $L$ layers multiplies $L$ such Jacobians. Without "
            "the residual, each factor $\\operatorname{diag}(1 - \\tanh^2)\\, W$ has norm at "
            "most $\\|W\\|_2$ because $0 < 1 - \\tanh^2 \\le 1$, so when the weights are "
            "small the product shrinks geometrically and the gradient vanishes; when they "
            "are large it can grow instead. With the residual each factor is $I + J_\\ell$: "
            "the identity path carries the gradient through every layer, and the branches "
            "add to it. [[fig-depth]] multiplies the verified Jacobians [[plain-jacobian]] "
            f"and [[residual-jacobian]] through random networks of width {WIDTH}. After "
            f"{DEPTH} layers the plain network's Jacobian has norm "
            f"${NUMBERS['plain_small']}$ for the smallest weights and "
            f"${NUMBERS['plain_large']}$ for the largest; the residual network's lies "
            f"between {NUMBERS['residual_low']} and {NUMBERS['residual_high']} for all three "
            "scales. The residual does not make the product norm-preserving: with these "
            "initializations it grows with depth (one reason deep transformers scale their "
            "branches down at initialization), but the identity path keeps it from "
            "collapsing the way the plain network's does.",
            Figure(
                "depth",
                "Spectral norm of the Jacobian from the input to layer $\\ell$ of a random "
                f"tanh network of width {WIDTH}, weights with entries $\\mathcal{{N}}(0, "
                f"\\sigma_W^2 / {WIDTH})$, without (left) and with (right) residual connections. "
                "Each layer's Jacobian is evaluated from the verified formulas.",
                draw_depth,
                label="fig-depth",
            ),
            "Where the normalization sits matters for the same reason. In the original "
            "transformer the normalization comes after the residual sum (post-LN, "
            "$y = \\operatorname{LN}(x + f(x))$), so the gradient of every layer passes "
            "through a LayerNorm Jacobian [[ln-jacobian]] on its way down; in pre-LN, "
            "$y = x + f(\\operatorname{LN}(x))$, used by GPT-2 and later LLMs, the identity "
            "path bypasses every normalization. [@xiong] show that at initialization the "
            "gradients of the parameters near the output of a post-LN transformer are large, "
            "which is why post-LN needs a learning-rate warm-up and pre-LN trains without "
            "one; their analysis is not reproduced here.",
        ),
        Section(
            "Activations: GELU, SiLU and SwiGLU",
            "ReLU's derivative jumps from 0 to 1 at the origin. The activations of LLMs are "
            "smooth versions of it that weigh the input by how likely it is to be large. "
            "GELU [@gelu] is $x\\,\\Phi(x)$ with $\\Phi$ the standard normal distribution "
            "function, $\\Phi(x) = \\frac{1}{2}(1 + \\operatorname{erf}(x / \\sqrt{2}))$. Its "
            "derivative is $\\Phi(x) + x\\,\\varphi(x)$ with $\\varphi$ the normal density; "
            "entry by entry,",
            Definition("Phi"),
            Definition("phi"),
            Step(
                "grad(sum(g * gelu(x)), x) == " + GELU_DERIVATIVE,
                "product rule; $\\Phi' = \\varphi = e^{-x^2/2} / \\sqrt{2\\pi}$",
                label="gelu-derivative",
            ),
            "GPT-2 and many implementations use the tanh approximation "
            "$\\frac{x}{2}(1 + \\tanh(a))$ with",
            Definition("a"),
            "whose derivative involves $t = \\tanh(a)$ and $\\kappa = a'(x)$,",
            Definition("t"),
            Definition("kappa"),
            "and is",
            Step(
                "grad(sum(g * gelu_tanh(x)), x) == g * ((1 + t) / 2 + x * (1 - t**2) * kappa / 2)",
                "$\\tanh' = 1 - \\tanh^2$",
                label="gelu-tanh-derivative",
            ),
            "For comparison, ReLU's derivative is a step (0 at the origin itself, by the "
            "convention of PyTorch and of this engine):",
            Step(
                "grad(sum(g * relu(x)), x) == g * step(x)",
                "$\\operatorname{relu}(x) = x$ for $x > 0$ and $0$ for $x < 0$",
                label="relu-derivative",
            ),
            "SiLU (also called Swish) is $x\\,\\sigma(x)$ with the logistic sigmoid "
            "$\\sigma$; since $\\sigma' = \\sigma (1 - \\sigma)$,",
            Step(
                "grad(sum(g * silu(x)), x) == g * sigmoid(x) * (1 + x * (1 - sigmoid(x)))",
                "product rule; $\\sigma' = \\sigma(1 - \\sigma)$",
                label="silu-derivative",
            ),
            Figure(
                "activations",
                "GELU (exact and tanh form), SiLU and ReLU (left) and their derivatives "
                "(right), drawn from the verified derivatives above; the two GELU forms "
                "are indistinguishable at this scale.",
                draw_activations,
                label="fig-activations",
            ),
            "Unlike ReLU's, the smooth derivatives are not confined to $[0, 1]$ (see "
            "[[fig-activations]]): GELU's rises to "
            f"{NUMBERS['gelu_peak']} at $x \\approx {NUMBERS['gelu_peak_at']}$ and falls to "
            f"${NUMBERS['gelu_dip']}$ at $x \\approx {NUMBERS['gelu_dip_at']}$, so a "
            "moderately negative input still passes a (reversed) gradient instead of none.",
            "**SwiGLU** [@swiglu], the MLP of LLaMA and PaLM, gates one projection of the "
            "input with the SiLU of another: $h = \\operatorname{SiLU}(W_1 x) \\odot (W_2 x)$ "
            "with",
            Definition("u"),
            Definition("v"),
            "With $\\mathrm{d}h$ the upstream gradient of $h$, the gate's pre-activation "
            "$u$ receives, by [[silu-derivative]] with upstream gradient "
            "$\\mathrm{d}h \\odot v$,",
            Definition("du"),
            "Each weight matrix receives an outer product of the gradient reaching its "
            "output with the input, and the input receives the sum of both paths:",
            Step(
                "grad(sum(dh * (silu(u) * v)), W_1) == outer(du, x)",
                "$\\partial u_i / \\partial (W_1)_{ij} = x_j$",
                label="swiglu-gate-weight",
            ),
            Step(
                "grad(sum(dh * (silu(u) * v)), W_2) == outer(dh * silu(u), x)",
                "$\\partial v_i / \\partial (W_2)_{ij} = x_j$",
                label="swiglu-up-weight",
            ),
            Step(
                "grad(sum(dh * (silu(u) * v)), x) == W_1.T @ du + W_2.T @ (dh * silu(u))",
                "both paths",
                label="swiglu-input",
            ),
        ),
    ),
)
