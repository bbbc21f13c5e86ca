"""The JAX export target: jax arrays of the inputs' floating dtype, under x32 or x64 alike.

The module never enables 64-bit mode: float64 inputs stay float64 when the user's process has
`jax_enable_x64` on, and become JAX's default float32 otherwise (as `jnp.asarray` would).
"""

from engine.export.forms import JAX, JNP
from engine.export.target import Target

FLOAT_DTYPE = '''def _float_dtype(dtype, *arrays):
    """The dtype the computation runs in: `dtype` when given, else the floating dtype the array
    arguments promote to (JAX's default float when none is a floating array), as JAX's current
    precision mode allows (float64 becomes float32 unless jax_enable_x64 is on)."""
    if dtype is None:
        kinds = [a.dtype for a in arrays if hasattr(a, "dtype")]
        kinds = [jax.dtypes.canonicalize_dtype(k) for k in kinds if jnp.issubdtype(k, jnp.floating)]
        dtype = jnp.result_type(*kinds) if kinds else jnp.result_type(float)
    return jax.dtypes.canonicalize_dtype(dtype)'''

JAX_TARGET = Target(
    name="jax",
    title="JAX",
    column="jax",
    imports=(JAX, JNP),
    convert="jnp.asarray({0}, dtype=dtype)",
    convert_index="jnp.asarray({0}).astype(jnp.int32)",
    setup="dtype = _float_dtype({dtype}, {args})",
    helpers=(FLOAT_DTYPE,),
)
