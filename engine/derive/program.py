"""Backward programs: named intermediates, then one gradient expression per variable."""

from __future__ import annotations

from dataclasses import dataclass

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

    def claim_sides(self, wrt: str) -> tuple[Expr, Expr]:
        """The claim `grad(output, x) == gradient` (or jacobian) that certifies one result."""
        var: Var = self.env.vars[wrt]
        return call(self.kind, self.output, var), dict(self.gradients)[wrt]

    def verify(self, seed: int = 0) -> dict[str, Result]:
        """Check every gradient by both routes of the verifier."""
        results = {}
        for wrt, _ in self.gradients:
            lhs, rhs = self.claim_sides(wrt)
            results[wrt] = verify_sides(lhs, rhs, self.env, seed=seed, name=f"d/d{wrt}")
        return results
