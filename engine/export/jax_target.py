"""The JAX export target: float64 jax arrays (the module enables JAX's 64-bit mode)."""

from engine.export.forms import JAX, JNP
from engine.export.target import Target

JAX_TARGET = Target(
    name="jax",
    title="JAX",
    column="jax",
    imports=(JAX, JNP),
    convert="jnp.asarray({0}, dtype=jnp.float64)",
    # Without this JAX silently computes in float32.
    prelude=('jax.config.update("jax_enable_x64", True)',),
)
