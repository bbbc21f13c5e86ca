"""Mixed abusive inputs for the command line (formulas, claims files, derive options), mutated
from valid ones by a seeded generator, and a runner that checks each ends cleanly in budget.

Shared by tests/test_cli_fuzz.py (a few thousand inputs in CI) and benchmarks/fuzz_cli.py
(the long run). Same seed, same inputs: a failure is reproduced by its seed and index.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import CliRunner

from engine.cli import cli
from engine.functions import REGISTRY

VARS = {
    "z": "real[n]",
    "y": "simplex[n]",
    "t": "onehot[n]",
    "w": "positive[n]",
    "s": "real",
    "u": "unit",
    "Q": "real[n, d]",
    "K": "real[n, d]",
    "V": "real[n, d]",
    "A": "real[n, n]",
}
EQUATIONS = (
    "grad(cross_entropy(softmax(z), y), z) == softmax(z) - y",
    "sum(softmax(z)) == 1",
    "grad(logsumexp(z), z) == softmax(z)",
    "jacobian(softmax(z), z) == diag(softmax(z)) - outer(softmax(z), softmax(z))",
    "log_softmax(z) == z - logsumexp(z)",
    "softmax(z + s) == softmax(z)",
    "entropy(y) == -sum(y * log(y))",
    "kl(y, softmax(z)) == cross_entropy(softmax(z), y) - entropy(y)",
    "grad(sum(sigmoid(z)), z) == sigmoid(z) * (1 - sigmoid(z))",
    "sum(t * log(softmax(z))) == -cross_entropy(softmax(z), t)",
    "mean(z) == sum(z) / n",
    "var(z) == mean(z ** 2) - mean(z) ** 2",
    "grad(sum(tanh(z)), z) == 1 - tanh(z) ** 2",
    "sum(softmax(Q @ K.T / sqrt(d)), axis=-1) == ones(n)",
    "trace(A) == sum(diag(A))",
    "(Q @ K.T).T == K @ Q.T",
    "grad(s ** 2, s) == 2 * s",
    "exp(log(w)) == w",
    "sqrt(w) ** 2 == w",
    "relu(z) - relu(-z) == z",
    "grad(sum(softplus(z)), z) == sigmoid(z)",
    "abs(z) == sign(z) * z",
    "softmax(z / u) == softmax(z / u)",
    "sum(expand_dims(z, axis=1) * eye(n), axis=0) == z",
    "grad(cross_entropy(softmax(z), y), z) == y - softmax(z)",
)
DERIVE_EXPRS = (
    "cross_entropy(softmax(z), y)",
    "sum(softmax(z) * y)",
    "logsumexp(z)",
    "softmax(z)",
    "sum(tanh(A @ z) * y)",
    "sum(sigmoid(z) * w)",
    "mean((A @ z) ** 2)",
    "grad(logsumexp(z), z)",
    "jacobian(softmax(z), z)",
    "sum(gelu(z) * y)",
    "sum(log_softmax(z) * t)",
    "sum(A * outer(z, y))",
    "entropy(softmax(z / u))",
    "kl(y, softmax(z))",
    "sum(relu(z) ** 2) / n",
    "var(z) + mean(z)",
    "sum(exp(z - logsumexp(z)))",
    "sqrt(sum(w))",
    "cross_entropy(softmax(A @ z), y)",
    "sum(O * (softmax(Q @ K.T / sqrt(d)) @ V))",  # attention: about 2 s, usually over budget
)
# Pieces spliced into inputs: the language's own words and the audit's hostile ones.
TOKENS = (
    *sorted(name for name, f in REGISTRY.items() if f.public),
    *VARS,
    "pi", "n", "d", "m", "==", "(", ")", ",", "+", "-", "*", "/", "**", "@", ".T", "axis=",
    "axis=-1", "keepdims=True", "keepdims=1", "0", "1", "2", "64", "0.5", "1e308", "1e-308",
    "9" * 40, "9" * 400, "10 ** 10 ** 10", "__import__('os')", "os.system('x')", "lambda: 0",
    "[1, 2]", "{}", "'text'", "x[0]", "a if b else c", "not z", "z % 2", "z // 2", "~z", "²",
    "１", "\x00", "\n", "\t", "  ", "é", "∑", "\ud800", ";", "#", "\\", ":=", "...", "None",
    "True", "grad(", "jacobian(", "sum(", "softmax(softmax(softmax(", ")))", "__class__",
    "exp(exp(exp(", "tanh(" * 30,
)  # fmt: skip
TYPES = ("real[n]", "simplex[n]", "onehot[n]", "real[n, d]", "positive", "real", "unit[n]")
TOML_SNIPPETS = (
    "[vars]\n", "[defs]\n", "[[claim]]\n", 'name = "c"\n', 'equation = "sum(z) == sum(z)"\n',
    'z = "real[n]"\n', 'p = "softmax(z)"\n', 'expect = "fail"\n', "x = [[[[1]]]]\n",
    "a.b.c.d = 1\n", "[vars.z]\n", 'equation = """sum(z)\n== sum(z)"""\n', "= = =\n",
    'z = "real[²]"\n', "name = 3\n", "[unknown]\n", 'note = "n"\n', "[[claim]]\nname = 'x'\n",
)  # fmt: skip


@dataclass
class FuzzInput:
    """One command line (arguments after `llm-math`) and the files it reads."""

    args: list[str]
    files: dict[str, str] = field(default_factory=dict)


def mutate(rng: random.Random, text: str, rounds: int | None = None) -> str:
    """`text` after a few random edits: deletions, insertions of TOKENS, duplications, swaps."""
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3)) if rounds is None else rounds):
        i = rng.randrange(len(text) + 1)
        j = min(len(text), i + rng.randrange(1, 12))
        op = rng.randrange(6)
        if op == 0:
            text = text[:i] + text[j:]
        elif op == 1:
            text = text[:i] + rng.choice(TOKENS) + text[i:]
        elif op == 2:
            text = text[:i] + text[i:j] * rng.randrange(2, 5) + text[j:]
        elif op == 3:
            char = chr(rng.choice((rng.randrange(32, 127), rng.randrange(160, 0x3000))))
            text = text[:i] + char + text[i + 1 :]
        elif op == 4:
            text = text[:i] + rng.choice(TOKENS) + text[j:]
        else:
            text = text[j:] + text[:i]
    return text


def _names(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z_]\w*", text))


def _declarations(rng: random.Random, text: str, sizes: float = 0.08) -> list[str]:
    args = []
    for name, vtype in VARS.items():
        if name in _names(text) or rng.random() < 0.05:
            if rng.random() < 0.05:
                vtype = mutate(rng, rng.choice(TYPES), 1)
            args += ["--var", f"{name}={vtype}"]
    if rng.random() < 0.15:
        args += ["--def", mutate(rng, "p=softmax(z)")]
    if rng.random() < sizes:
        args += ["--size", rng.choice(("n=5", "n=200", "d=3", "n=4097", "n=0", "n=x", "n=²"))]
    if rng.random() < 0.05:
        args += ["--seed", rng.choice(("0", "7", "-1", "99999999999999999999"))]
    return args


def _verify_inline(rng: random.Random) -> FuzzInput:
    equation = mutate(rng, rng.choice(EQUATIONS))
    args = ["verify", *_declarations(rng, equation), equation]
    if rng.random() < 0.2:
        args.insert(1, "--json")
    return FuzzInput(args)


def _verify_file(rng: random.Random) -> FuzzInput:
    lines = ["[vars]"] + [f'{k} = "{v}"' for k, v in VARS.items() if rng.random() < 0.6]
    lines += ["[defs]", 'p = "softmax(z)"']
    for i in range(rng.randrange(1, 3)):
        equation = mutate(rng, rng.choice(EQUATIONS)).replace("\\", "").replace('"', "'")
        lines += ["[[claim]]", f'name = "c{i}"', f'equation = "{equation}"']
    text = "\n".join(lines) + "\n"
    if rng.random() < 0.5:
        text = mutate(rng, text) if rng.random() < 0.5 else _splice_toml(rng, text)
    args = ["verify", "claims.toml"]
    if rng.random() < 0.3:
        args.insert(1, "--json")
    return FuzzInput(args, {"claims.toml": text})


def _splice_toml(rng: random.Random, text: str) -> str:
    lines = text.splitlines(keepends=True)
    for _ in range(rng.randrange(1, 4)):
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(TOML_SNIPPETS))
    return "".join(lines)


def _derive(rng: random.Random) -> FuzzInput:
    expr = mutate(rng, rng.choice(DERIVE_EXPRS))
    args = ["derive", expr, *_declarations(rng, expr + " O", sizes=0.02)]
    if "O" in expr:
        args += ["--var", "O=real[n, d]"]
    wrt = [v for v in VARS if v in _names(expr) and rng.random() < 0.7]
    if rng.random() < 0.2:
        wrt = [mutate(rng, rng.choice(("z", "Q,K", "z,z", "s")), 1)]
    for w in wrt:
        args += ["--wrt", w]
    if rng.random() < 0.4:
        args += ["--format", rng.choice(("text", "latex", "json", "python", "html", ""))]
        if rng.random() < 0.5:
            args += ["--target", rng.choice(("numpy", "jax", "torch", "cuda"))]
    files = {}
    if rng.random() < 0.1:
        files["spec.toml"] = mutate(rng, '[vars]\nz = "real[n]"\n[defs]\np = "softmax(z)"\n')
        args += ["--file", "spec.toml"]
    return FuzzInput(args, files)


def inputs(seed: int, count: int) -> Iterator[FuzzInput]:
    """`count` mixed inputs, the same ones for the same seed."""
    rng = random.Random(seed)
    makers = (_verify_inline, _verify_inline, _verify_file, _verify_file, _derive)
    for _ in range(count):
        yield rng.choice(makers)(rng)


@dataclass
class Outcome:
    """How one input ended."""

    args: list[str]
    exit_code: int
    seconds: float
    problem: str | None  # a traceback, an escaped exception or a bad exit code


def run_one(item: FuzzInput, workdir: Path, timeout: float) -> Outcome:
    """Run `item` in-process with --timeout `timeout`; files are written into `workdir`."""
    args = list(item.args)
    for name, text in item.files.items():
        path = workdir / name
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        args = [str(path) if a == name else a for a in args]
    args.insert(1, f"--timeout={timeout:g}")
    start = time.perf_counter()
    result = CliRunner().invoke(cli, args)
    seconds = time.perf_counter() - start
    problem = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        problem = f"exception {type(result.exception).__name__}: {result.exception}"
    elif "Traceback" in result.output:
        problem = "traceback in the output"
    elif result.exit_code not in (0, 1, 2):
        problem = f"exit code {result.exit_code}: {result.output[-300:]}"
    return Outcome(args, result.exit_code, seconds, problem)


def budgets(item: FuzzInput) -> int:
    """How many time budgets `item` may use in a row: one per claim and one per file read."""
    claims = sum(text.count("[[claim]]") for text in item.files.values())
    return 1 + len(item.files) + claims
