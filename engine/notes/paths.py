"""Where the notes come from and go: derivations/, output/ and the build cache."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
DERIVATIONS = ROOT / "derivations"
OUTPUT = ROOT / "output"
# steps/ (passing results) and figures/ (SVG and PDF); LLM_MATH_CACHE moves it (benchmarks).
CACHE = Path(os.environ.get("LLM_MATH_CACHE") or ROOT / ".cache" / "llm-math")
