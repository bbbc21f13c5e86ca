"""Code export: a derived gradient program as a standalone NumPy, JAX or PyTorch module."""

from __future__ import annotations

from engine.derive.program import Program
from engine.export.emitter import RESERVED, Emitter, ExportError
from engine.export.jax_target import JAX_TARGET
from engine.export.numpy_target import NUMPY
from engine.export.target import Target
from engine.export.torch_target import TORCH_TARGET

TARGETS: dict[str, Target] = {t.name: t for t in (NUMPY, JAX_TARGET, TORCH_TARGET)}


def to_module(
    program: Program,
    target: str = "numpy",
    name: str = "value_and_grad",
    verified_summary: str | None = None,
    with_value: bool = True,
) -> str:
    """Python source of a module with one function computing the value and the gradients.

    The function takes the program's variables as arguments (in declaration order), reads the
    sizes off their shapes and returns `(value, {"Q": dQ, ...})` in float64 (for a Jacobian
    program, `(value, {"z": J})` with J[i, j] = d value_i / d z_j); with
    `with_value=False` it returns the gradients alone and skips work only the value needs.
    `verified_summary` (e.g. `Result.summary()`) goes into the module docstring; without it the
    docstring says the code was not verified at export time.
    """
    if target not in TARGETS:
        raise ExportError(f"unknown export target {target!r} (known: {', '.join(TARGETS)})")
    if not name.isidentifier() or name.startswith("_") or name in RESERVED:
        raise ExportError(
            f"function name {name!r} is not a public Python identifier free for the module "
            "(keywords, builtins and the module's imports are taken)"
        )
    if program.kind not in ("grad", "jacobian", "hessian"):
        raise ExportError(f"cannot export a program of kind {program.kind!r}")
    return Emitter(program, TARGETS[target], with_value).module(name, verified_summary)


__all__ = ["TARGETS", "ExportError", "to_module"]
