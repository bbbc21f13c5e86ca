"""The NumPy export target: float64 ndarrays in, float64 ndarrays out."""

from engine.export.forms import NP
from engine.export.target import Target

NUMPY = Target(
    name="numpy",
    title="NumPy",
    column="numpy",
    imports=(NP,),
    convert="np.asarray({0}, dtype=np.float64)",
)
