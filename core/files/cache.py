"""The user's cache folder: what ctxseg works out once per machine and makes again if it
is deleted (the timings behind precision "auto", the ONNX exports the onnxruntime backend runs)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_folder"]


def cache_folder() -> Path:
    """``$XDG_CACHE_HOME/ctxseg``, by default ``~/.cache/ctxseg``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ctxseg"
