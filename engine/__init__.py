"""llm-math-notes: machine-checked derivations for the mathematics of large language models."""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# Public names and the module each comes from. They are imported on first use (PEP 562), so
# `import engine` and `llm-math --help` do not pay for SymPy, NumPy or SciPy.
_EXPORTS = {
    "assert_claim": "engine.api",
    "derive": "engine.api",
    "verify": "engine.api",
    "to_numpy": "engine.backends.numpy_backend",
    "to_sympy": "engine.backends.sympy_backend",
    "BudgetExceeded": "engine.budget",
    "Program": "engine.derive",
    "EngineError": "engine.expr",
    "Expr": "engine.expr",
    "Environment": "engine.parser",
    "ParseError": "engine.parser",
    "build_environment": "engine.parser",
    "parse_equation": "engine.parser",
    "parse_formula": "engine.parser",
    "parse_claim": "engine.parser",  # inequality claims
    "Counterexample": "engine.verify",
    "Result": "engine.verify",
    "verify_sides": "engine.verify",
}

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
    "parse_claim",
    "parse_equation",
    "parse_formula",
    "to_numpy",
    "to_sympy",
    "verify",
    "verify_sides",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
    """`engine.verify` and `engine.derive` are the API functions, as `from engine import derive`
    promises, although subpackages of the same names exist: importing a subpackage sets the
    attribute of its parent, which would otherwise replace the function by the module."""

    @property
    def verify(self) -> Any:
        return importlib.import_module("engine.api").verify

    @verify.setter
    def verify(self, value: Any) -> None:
        pass  # the import system recording the subpackage engine.verify (it is in sys.modules)

    @property
    def derive(self) -> Any:
        return importlib.import_module("engine.api").derive

    @derive.setter
    def derive(self, value: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:
    from engine.api import assert_claim, derive, verify
    from engine.backends.numpy_backend import to_numpy
    from engine.backends.sympy_backend import to_sympy
    from engine.budget import BudgetExceeded
    from engine.derive import Program
    from engine.expr import EngineError, Expr
    from engine.parser import (
        Environment,
        ParseError,
        build_environment,
        parse_claim,
        parse_equation,
        parse_formula,
    )
    from engine.verify import Counterexample, Result, verify_sides
