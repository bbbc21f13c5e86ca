"""Bounded reads and atomic writes of the build's own files (standard library only)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def read_regular(path: Path, limit: int) -> bytes | None:
    """The bytes of `path` if it is a regular file of at most `limit` bytes, else None.

    Never opens a FIFO, a device or a directory (reading those could block or never end).
    """
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    return data if len(data) <= limit else None


def write_atomic(path: Path, data: bytes) -> bool:
    """Write `data` to `path` via a temp file in the same directory; False if unchanged."""
    if read_regular(path, len(data)) == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
