"""llm-math-notes: machine-checked derivations for the mathematics of large language models."""

from engine.api import assert_claim, derive, verify
from engine.backends.numpy_backend import to_numpy
from engine.backends.sympy_backend import to_sympy
from engine.budget import BudgetExceeded
from engine.derive import Program
from engine.expr import EngineError, Expr
from engine.parser import Environment, ParseError, build_environment, parse_equation, parse_formula
from engine.verify import Counterexample, Result, verify_sides

__all__ = [
    "BudgetExceeded",
    "Counterexample",
    "EngineError",
    "Environment",
    "Expr",
    "Program",
    "ParseError",
    "Result",
    "assert_claim",
    "build_environment",
    "derive",
    "parse_equation",
    "parse_formula",
    "to_numpy",
    "to_sympy",
    "verify",
    "verify_sides",
]
