"""Paths in a spec, checked as paths: ``FilePath`` and ``FolderPath``.

To everything else they are ``str`` (a config field is annotated with one); structuring a
spec refuses, as a SpecError naming the key, a path with a NUL byte (no file system takes
one; ``os`` would raise ``ValueError: embedded null byte``) and a path that exists as the
other kind: a folder where a file is expected, a file where a folder is. An empty string
means "none", and a path that does not exist is left to its reader: a dataset's root may be
generated there, and a weights file's spec may name the folders of another machine.
"""

from __future__ import annotations

import os
from typing import NewType

from ctxseg.spec.convert import InvalidValue, converter

__all__ = ["FilePath", "FolderPath"]

FilePath = NewType("FilePath", str)
"""A file's path (``~`` is the home folder), or empty."""
FolderPath = NewType("FolderPath", str)
"""A folder's path (``~`` is the home folder), or empty."""


def _path(value: object, kind: type) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"expected a path string, got {value!r}")
    if "\0" in value:
        raise InvalidValue(f"expected a path, got {value!r}, which holds a NUL byte (no file system takes one)")
    path = os.path.expanduser(value)
    if kind is FilePath and os.path.isdir(path):
        raise InvalidValue(f"expected a file, got {value!r}, which is a folder")
    if kind is FolderPath and os.path.exists(path) and not os.path.isdir(path):
        raise InvalidValue(f"expected a folder, got {value!r}, which is a file")
    return value


converter.register_structure_hook(FilePath, _path)
converter.register_structure_hook(FolderPath, _path)
