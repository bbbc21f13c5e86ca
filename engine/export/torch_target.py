"""The PyTorch export target: float64 CPU or GPU tensors (the device of the inputs)."""

from engine.export.forms import TORCH
from engine.export.target import Target

TORCH_TARGET = Target(
    name="torch",
    title="PyTorch",
    column="torch",
    imports=(TORCH,),
    convert="torch.as_tensor({0}, dtype=torch.float64)",
)
