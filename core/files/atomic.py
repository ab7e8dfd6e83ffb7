"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "file_in_the_way"]


def file_in_the_way(folder: Path) -> Path | None:
    """``folder`` itself or the first of its parents that exists as a file (so no folder can be made there)."""
    return next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    If the body raises (or the process dies), ``path`` is untouched and the temporary
    file is removed (or left as a ``.tmp`` file that the next write cleans nothing of).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
