"""Backward programs: named intermediates, then one gradient expression per variable."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from engine.expr import Expr, Ref, Var, call
from engine.parser import Environment
from engine.verify import Result, verify_sides


@dataclass(frozen=True)
class Assignment:
    """One line of a program, `name = expr`; later lines refer to it through `ref`."""

    name: str
    expr: Expr

    @property
    def ref(self) -> Ref:
        return Ref(self.name, self.expr)


@dataclass(frozen=True)
class Program:
    """The derivative of `output` as a program.

    `steps` are intermediates in order (their expressions may use earlier steps and the
    environment's definitions as `Ref` nodes); `gradients` maps each variable to its gradient
    (kind "grad", `output` a scalar) or Jacobian (kind "jacobian", `output` a vector).
    """

    output: Expr
    env: Environment
    steps: tuple[Assignment, ...]
    gradients: tuple[tuple[str, Expr], ...]
    kind: str = "grad"
    # Verifier results per variable, once `verify` has run (see `with_results`).
    results: tuple[tuple[str, Result], ...] = ()

    def claim_sides(self, wrt: str) -> tuple[Expr, Expr]:
        """The claim `grad(output, x) == gradient` (or jacobian) that certifies one result."""
        var: Var = self.env.vars[wrt]
        return call(self.kind, self.output, var), dict(self.gradients)[wrt]

    def verify(self, seed: int = 0) -> dict[str, Result]:
        """Check every gradient by both routes of the verifier."""
        from engine.verify.exact import sharing

        results = {}
        with sharing():  # one reverse sweep at each exact point serves every gradient
            for wrt, _ in self.gradients:
                lhs, rhs = self.claim_sides(wrt)
                results[wrt] = verify_sides(lhs, rhs, self.env, seed=seed, name=f"d/d{wrt}")
        return results

    def with_results(self, results: dict[str, Result]) -> Program:
        """The same program, carrying the verifier's results."""
        return replace(self, results=tuple(results.items()))

    @property
    def verified(self) -> bool:
        """True when every gradient has been checked by the verifier and passed."""
        return bool(self.results) and all(r.passed for _, r in self.results)

    def gradient_names(self) -> dict[str, str]:
        """The name each gradient is printed under: `dQ`, `J` for a Jacobian.

        Never a name the program also uses: with a variable or definition `dQ` (an upstream
        gradient), the gradient of Q is `grad_Q` (see `engine.derive.names`). `derive` keeps
        these names free when it names its steps.
        """
        from engine.derive.names import Names

        taken = Names(self.env.names())
        taken.update(a.name for a in self.steps)
        return {w: taken.gradient(w, self.kind) for w, _ in self.gradients}

    def gradient_name(self, wrt: str) -> str:
        """The name the gradient of `wrt` is printed under (see `gradient_names`)."""
        return self.gradient_names()[wrt]

    def verification_line(self) -> str:
        """One line saying how the program was verified (or that it was not)."""
        if not self.results:
            return "not verified"
        bad = [w for w, r in self.results if not r.passed]
        if bad:
            return "NOT verified: the verifier rejected " + ", ".join(bad)
        worst = max((r for _, r in self.results), key=_numeric_error)
        return "verified: " + worst.summary()

    def to_text(self) -> str:
        """The program in the formula language, one `name = expr` per line."""
        from engine.printing.size_names import named_sizes
        from engine.printing.text import to_text

        names = self.gradient_names()
        with named_sizes(self.env.size_rels):  # `d`, not `dh*h`, where d = h * dh
            lines = [f"{a.name} = {to_text(a.expr)}" for a in self.steps]
            lines += [f"{names[w]} = {to_text(g)}" for w, g in self.gradients]
        return "\n".join(lines)

    def to_latex(self) -> str:
        """The program as a LaTeX `aligned` block in textbook notation."""
        from engine.printing.latex import latex_name, to_latex
        from engine.printing.size_names import named_sizes

        names = self.gradient_names()
        with named_sizes(self.env.size_rels):
            rows = [f"{latex_name(a.name)} &= {to_latex(a.expr)}" for a in self.steps]
            rows += [f"{latex_name(names[w])} &= {to_latex(g)}" for w, g in self.gradients]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def _repr_markdown_(self) -> str:
        from engine.display import program_markdown

        return program_markdown(self)

    def to_json(self) -> dict[str, Any]:
        """Steps, gradients and the verification, as plain JSON data."""
        from engine.printing.text import to_text

        return {
            "output": to_text(self.output),
            "kind": self.kind,
            "program": [{"name": a.name, "expr": to_text(a.expr)} for a in self.steps],
            "gradients": {w: to_text(g) for w, g in self.gradients},
            # Which name holds each gradient when the program is read as lines (see
            # `gradient_names`): {"X": "dX"}, or {"X": "grad_X"} beside a variable dX.
            "gradient_names": self.gradient_names(),
            "verified": self.verified,
            "verification": self.verification_line(),
            "checks": {w: r.to_json() for w, r in self.results},
        }


def _numeric_error(r: Result) -> float:
    return max((c.max_error for c in r.checks if c.method == "numeric"), default=0.0)
