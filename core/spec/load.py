"""Reading a spec: TOML file -> validated :class:`~ctxseg.spec.Spec`."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ctxseg.errors import SpecError
from ctxseg.spec.convert import structure
from ctxseg.spec.schema import Spec

__all__ = ["load_spec", "spec_from_dict"]


def spec_from_dict(data: dict[str, Any], source: str = "<spec>") -> Spec:
    """Structure a spec table; errors name ``source`` and the TOML path."""
    return structure(data, Spec, source=source)


def load_spec(path: str | Path) -> Spec:
    """Read and validate a TOML spec file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(f"{path}: cannot read spec: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: invalid TOML: {error}") from None
    return spec_from_dict(data, source=str(path))
