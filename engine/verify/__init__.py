"""The verifier: decides `lhs == rhs` by an exact SymPy route and an independent NumPy route.

One module per idea: `sampling` (sizes, input scales from the claim's constants, kink coverage),
`exact` (SymPy at small sizes, rational points, 50 digits), `numeric` (float64 at larger sizes,
complex-step), `precision` (high-precision re-evaluation of a float64 difference), `core` (the
verdict), `result` (what is returned).
"""

from engine.verify.core import assert_claim, verify, verify_sides
from engine.verify.exact import EXACT_DIGITS, EXACT_POINTS, EXACT_RTOL
from engine.verify.numeric import NUMERIC_RTOL, PROBE_RTOL, SCALE_FLOOR, entry_errors
from engine.verify.result import CheckReport, Counterexample, Result, Verdict
from engine.verify.sampling import exact_size_assignments, numeric_size_assignment

__all__ = [
    "EXACT_DIGITS",
    "EXACT_POINTS",
    "EXACT_RTOL",
    "NUMERIC_RTOL",
    "PROBE_RTOL",
    "SCALE_FLOOR",
    "CheckReport",
    "Counterexample",
    "Result",
    "Verdict",
    "assert_claim",
    "entry_errors",
    "exact_size_assignments",
    "numeric_size_assignment",
    "verify",
    "verify_sides",
]
