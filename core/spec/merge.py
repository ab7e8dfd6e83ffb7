"""How one spec table is laid over another: by ``extends`` (a file over its base) and by ``--set``.

Tables merge key by key, the upper one winning; anything else (arrays, arrays of tables
too) is replaced whole. A table that names a component (``name = ...``) other than the one
below it names is a different component: it replaces that table whole, so the old
component's keys are not carried over.
"""

from __future__ import annotations

from typing import Any

__all__ = ["merge"]


def merge(base: dict[str, Any], upper: dict[str, Any]) -> dict[str, Any]:
    """``upper`` laid over ``base`` (neither is changed)."""
    if _renames(base, upper):
        return dict(upper)
    merged = dict(base)
    for key, value in upper.items():
        below = merged.get(key)
        merged[key] = merge(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
    return merged


def _renames(base: dict[str, Any], upper: dict[str, Any]) -> bool:
    """Whether both tables name a component, and not the same one."""
    return "name" in base and "name" in upper and base["name"] != upper["name"]
