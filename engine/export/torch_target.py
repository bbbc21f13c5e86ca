"""The PyTorch export target: float64 tensors (eye and ones are made on the default device)."""

from engine.export.forms import TORCH
from engine.export.target import Target

TORCH_TARGET = Target(
    name="torch",
    title="PyTorch",
    column="torch",
    imports=(TORCH,),
    convert="torch.as_tensor({0}, dtype=torch.float64)",
)
