"""The NumPy export target: ndarrays in, ndarrays of the inputs' floating dtype out."""

from engine.export.forms import NP
from engine.export.target import Target

FLOAT_DTYPE = '''def _float_dtype(dtype, *arrays):
    """The dtype the computation runs in: `dtype` when given, else the floating dtype the array
    arguments promote to (float64 when none is a floating array: lists, Python numbers, ints)."""
    if dtype is not None:
        return np.dtype(dtype)
    kinds = {a.dtype for a in arrays if hasattr(a, "dtype") and a.dtype.kind == "f"}
    if len(kinds) == 1:
        return kinds.pop()
    return np.result_type(*kinds) if kinds else np.dtype(np.float64)'''

NUMPY = Target(
    name="numpy",
    title="NumPy",
    column="numpy",
    imports=(NP,),
    convert="np.asarray({0}, dtype=dtype)",
    convert_index="np.asarray({0}).astype(np.intp)",
    setup="dtype = _float_dtype({dtype}, {args})",
    helpers=(FLOAT_DTYPE,),
)
