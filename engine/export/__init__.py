"""Code export: a derived gradient program as a standalone NumPy, JAX or PyTorch module."""

from __future__ import annotations

import hashlib
import linecache
import sys
import types
from collections.abc import Callable

from engine.derive.program import Program
from engine.export.emitter import RESERVED, Emitter, ExportError
from engine.export.jax_target import JAX_TARGET
from engine.export.numpy_target import NUMPY
from engine.export.target import Target
from engine.export.torch_target import TORCH_TARGET
from engine.export.wrappers import WRAPPERS, wrapper_module

TARGETS: dict[str, Target] = {t.name: t for t in (NUMPY, JAX_TARGET, TORCH_TARGET)}


def to_module(
    program: Program,
    target: str = "numpy",
    name: str | None = None,
    verified_summary: str | None = None,
    with_value: bool = True,
    as_: str = "function",
) -> str:
    """Python source of a module with one function computing the value and the gradients.

    The function takes the program's variables as arguments (in declaration order), reads the
    sizes off their shapes (checked against the declaration: ValueError otherwise) and returns
    `(value, {"Q": dQ, ...})` in the arguments' floating dtype, or in the one passed as `dtype=`
    (for a Jacobian program, `(value, {"z": J})` with J[i, j] = d value_i / d z_j); with
    `with_value=False` it returns the gradients alone and skips work only the value needs.
    Its name is `name` (default `value_and_grad`).

    `as_="autograd-function"` (torch) or `"custom-vjp"` (jax) writes instead a differentiable
    function `name` (default `fused`) of the inputs, whose backward is the derived program (see
    `engine.export.wrappers`).
    `verified_summary` (e.g. `Result.summary()`) goes into the module docstring; without it the
    docstring says the code was not verified at export time.
    """
    if target not in TARGETS:
        raise ExportError(f"unknown export target {target!r} (known: {', '.join(TARGETS)})")
    if as_ != "function" and as_ not in WRAPPERS:
        known = ", ".join(["function", *WRAPPERS])
        raise ExportError(f"unknown export form {as_!r} (known: {known})")
    if name is None:
        name = "value_and_grad" if as_ == "function" else "fused"
    if not name.isidentifier() or name.startswith("_") or name in RESERVED:
        raise ExportError(
            f"function name {name!r} is not a public Python identifier free for the module "
            "(keywords, builtins and the module's imports are taken)"
        )
    if program.kind not in ("grad", "jacobian", "hessian"):
        raise ExportError(f"cannot export a program of kind {program.kind!r}")
    if as_ != "function":
        return wrapper_module(program, TARGETS[target], as_, name, verified_summary)
    return Emitter(program, TARGETS[target], with_value).module(name, verified_summary)


def load(
    program: Program,
    target: str = "numpy",
    name: str | None = None,
    verified_summary: str | None = None,
    with_value: bool = True,
    as_: str = "function",
) -> Callable:
    """The exported function itself, without writing a file (arguments as for `to_module`).

    The generated source is compiled under a module name of its own (`llm_math_export_<hash>`,
    registered in sys.modules, its text in linecache), so `inspect.getsource` shows the code and
    tracebacks show its lines.
    """
    source = to_module(program, target, name, verified_summary, with_value, as_)
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    module_name = f"llm_math_export_{digest}"
    filename = f"<{module_name}>"
    module = types.ModuleType(module_name)
    module.__file__ = filename
    module.__source__ = source  # type: ignore[attr-defined]
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    sys.modules[module_name] = module
    # Our own emitter's output: every name in it is a checked identifier, no user text is run.
    exec(compile(source, filename, "exec"), module.__dict__)
    fn = name if name is not None else ("value_and_grad" if as_ == "function" else "fused")
    return getattr(module, fn)


__all__ = ["TARGETS", "WRAPPERS", "ExportError", "load", "to_module"]
