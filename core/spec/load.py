"""Reading a spec: TOML file (and the bases it ``extends``) -> validated :class:`~ctxseg.spec.Spec`.

A spec file may start with ``extends = "base.toml"``, a path relative to that file: the
file's tables are merged into its base's as :mod:`.merge` says (key by key, the file
winning; arrays, and a table naming another component, replaced whole). A base may extend
another. ``--set`` overrides (:mod:`.override`) are laid over the result before it is validated.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ctxseg.errors import SpecError
from ctxseg.spec.convert import structure, unstructure
from ctxseg.spec.merge import merge
from ctxseg.spec.override import Override, apply_overrides
from ctxseg.spec.schema import Spec

__all__ = ["load_spec", "spec_from_dict"]


def spec_from_dict(data: dict[str, Any], source: str = "<spec>") -> Spec:
    """Structure an already merged spec table (no ``extends``); errors name ``source`` and the TOML path."""
    return structure(data, Spec, source=source)


def load_spec(path: str | Path, overrides: Sequence[Override] = ()) -> Spec:
    """Read a TOML spec file, merge it into the bases it extends, lay ``overrides`` over it, and validate the result.

    Validation errors name ``path``, the file the user passed, whichever file set the key
    (``path (with --set)`` where there are overrides: one of them may have).
    """
    path = Path(path)
    table = _resolve(path, ())
    if not overrides:
        return spec_from_dict(table, source=str(path))
    return spec_from_dict(apply_overrides(table, overrides, _defaults()), source=f"{path} (with --set)")


def _resolve(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """The table of ``path`` merged into its bases; ``chain`` is the files that led to it."""
    data = _read(path, chain)
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise SpecError(f"{path}: extends: expected a path string (relative to this file), got {base!r}")
    if "\0" in base:
        raise SpecError(f"{path}: extends: expected a path, got {base!r}, which holds a NUL byte (no file system "
                        "takes one)")
    chain = (*chain, path)
    base_path = Path(os.path.normpath(path.parent / base))
    if base_path.resolve() in {p.resolve() for p in chain}:
        raise SpecError(f"{path}: extends {base!r}: a cycle ({_arrows((*chain, base_path))})")
    if base_path.is_dir():
        raise SpecError(f"{path}: extends {base!r}: a folder, expected a spec file ({_arrows((*chain, base_path))})")
    if not base_path.is_file():
        raise SpecError(f"{path}: extends {base!r}: no such file ({_arrows((*chain, base_path))})")
    return merge(_resolve(base_path, chain), data)


def _defaults() -> dict[str, Any]:
    """The tables a spec may leave out, with their defaults: where an override's key goes into one."""
    return {field.name: unstructure(field.default.factory()) for field in attrs.fields(Spec)
            if isinstance(field.default, attrs.Factory)}


def _read(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    via = f" ({_arrows((*chain, path))})" if chain else ""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except IsADirectoryError:
        raise SpecError(f"{path}: a folder, expected a spec file{via}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: cannot read spec: {error}{via}") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: invalid TOML: {error}{via}") from None


def _arrows(chain: tuple[Path, ...]) -> str:
    return " -> ".join(map(str, chain))
