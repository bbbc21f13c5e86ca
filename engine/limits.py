"""Default limits shared by the command line and the workers, importable without SymPy."""

DEFAULT_TIMEOUT = 60.0  # seconds per claim, derive or note step (`--timeout`)
