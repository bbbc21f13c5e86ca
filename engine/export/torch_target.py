"""The PyTorch export target: tensors of the inputs' floating dtype, on the inputs' device."""

from engine.export.forms import TORCH
from engine.export.target import Target

FLOAT_TYPE = '''def _float_type(dtype, *arrays):
    """(dtype, device) the computation runs in: `dtype` when given, else the floating dtype the
    array arguments promote to (float64 when none is a floating array: lists, Python numbers,
    ints); the device of the first tensor argument (the default device when there is none)."""
    typed = [a for a in arrays if hasattr(a, "dtype")]
    tensors = [a if isinstance(a, torch.Tensor) else torch.as_tensor(a) for a in typed]
    if dtype is None:
        kinds = [t.dtype for t in tensors if t.is_floating_point()]
        dtype = kinds[0] if kinds else torch.float64
        for kind in kinds[1:]:
            dtype = torch.promote_types(dtype, kind)
    device = next((a.device for a in arrays if isinstance(a, torch.Tensor)), None)
    return dtype, device'''

TORCH_TARGET = Target(
    name="torch",
    title="PyTorch",
    column="torch",
    imports=(TORCH,),
    convert="torch.as_tensor({0}, dtype=dtype, device=device)",
    convert_index="torch.as_tensor({0}, device=device).long()",
    setup="dtype, device = _float_type({dtype}, {args})",
    helpers=(FLOAT_TYPE,),
)
