"""Writing files so that nobody sees half of one, or one they should not read."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync and rename.

    A reader sees the old file or the new one, never a torn write; ``mode``
    applies from the first byte (0o600 for files holding credentials).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # unique, 0o600
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_private(path: Path, text: str) -> None:
    """Write a text file only its owner can read (it holds credentials)."""
    write_atomic(path, text.encode(), mode=0o600)
