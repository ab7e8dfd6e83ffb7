"""The one strict cattrs converter that turns TOML tables into attrs configs.

Strict means: no unknown keys, and no lax coercions (cattrs alone turns ``None`` into
``"None"`` and ``1.5`` into ``1``). Errors become one :class:`~ctxseg.errors.SpecError`
whose lines read ``<file>: <toml.path>: <what was expected>``.
"""

from __future__ import annotations

import difflib
import math
import typing
from typing import Any

import attrs
import cattrs
from cattrs.errors import ForbiddenExtraKeysError

from ctxseg.errors import PluginError, SpecError

__all__ = ["converter", "structure", "unstructure"]


class InvalidValue(ValueError):
    """A value of the wrong type or out of range; its message is shown as is."""


def _strict_int(value: Any, _: type) -> int:
    if type(value) is not int:
        raise InvalidValue(f"expected an integer, got {value!r}")
    return value


def _strict_float(value: Any, _: type) -> float:
    if type(value) not in (int, float):
        raise InvalidValue(f"expected a number, got {value!r}")
    if not math.isfinite(value):  # TOML allows nan and inf; no parameter means them
        raise InvalidValue(f"expected a finite number, got {value!r}")
    return float(value)


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"expected a string, got {value!r}")
    return value


def _strict_bool(value: Any, _: type) -> bool:
    if type(value) is not bool:
        raise InvalidValue(f"expected true or false, got {value!r}")
    return value


converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(float, _strict_float)
converter.register_structure_hook(str, _strict_str)
converter.register_structure_hook(bool, _strict_bool)


def _describe(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [f.name for f in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        parts = []
        for key in sorted(exc.extra_fields):
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            parts.append(f"{key!r}" + (f" (did you mean {near[0]!r}?)" if near else ""))
        return f"unknown key {', '.join(parts)}; expected one of: {', '.join(known) or 'no keys'}"
    if isinstance(exc, KeyError):
        return "required key missing"
    if typing.get_origin(type_) is typing.Literal:
        return f"expected one of {', '.join(map(repr, typing.get_args(type_)))}"
    if isinstance(exc, (InvalidValue, LookupError, PluginError)):
        return str(exc)
    if isinstance(exc, ValueError) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]  # attrs validators say what they expected
    if isinstance(exc, TypeError) and type_ is not None:
        return f"expected {getattr(type_, '__name__', type_)!s}: {exc}"
    if isinstance(exc, AttributeError):
        return "expected a table"
    return f"{type(exc).__name__}: {exc}"


def structure(data: Any, cls: type, *, source: str, path: str = "") -> Any:
    """Structure ``data`` into ``cls``; any problem raises one SpecError naming ``source``."""
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # noqa: BLE001 - every failure is the user's spec
        lines = cattrs.transform_error(exc, path="$", format_exception=_describe)
        raise SpecError("\n".join(f"{source}: {_toml_path(line, path)}" for line in lines)) from None


def _toml_path(line: str, prefix: str) -> str:
    message, _, where = line.rpartition(" @ ")
    where = where.removeprefix("$").lstrip(".")
    full = ".".join(p for p in (prefix, where) if p).replace(".[", "[")
    return f"{full or '(top level)'}: {message}"


def unstructure(value: Any) -> Any:
    """The TOML-compatible table of an attrs config."""
    return converter.unstructure(value)
