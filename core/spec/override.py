"""``--set KEY=VALUE``: one value of a spec changed for one run, from the command line.

KEY is a dotted path into the spec's tables with indices into its arrays (``run.steps``,
``model.context[0].bins``); VALUE is TOML (``[1, 2, 3, 6]``, ``true``, ``0.01``,
``"base.sgd"``), or else taken as a string (``base.sgd``). An override is laid over the
spec's table after ``extends`` and before validation, as :mod:`.merge` lays a file over its
base: a table value merges into the table there, and a new component ``name`` replaces its
table. A key inside a table the spec leaves out goes into that table's defaults (the default
dataset's ``data.dataset.image_size``). A key the spec does not know is then reported by
validation, with its path.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from typing import Any

import attrs

from ctxseg.errors import SpecError
from ctxseg.spec.merge import merge

__all__ = ["Override", "apply_overrides", "toml_value"]

_KEY = re.compile(r"[A-Za-z0-9_-]+(\[\d+\])*(\.[A-Za-z0-9_-]+(\[\d+\])*)*")
_STEP = re.compile(r"([A-Za-z0-9_-]+)|\[(\d+)\]")


def toml_value(text: str) -> Any:
    """``text`` read as a TOML value (``7``, ``true``, ``[1, 2]``, ``"a b"``), or ``text`` itself where it is none."""
    try:
        table = tomllib.loads(f"value = {text}")
    except tomllib.TOMLDecodeError:
        return text
    return table["value"] if len(table) == 1 else text


def _dotted(instance: Override, attribute: attrs.Attribute, key: str) -> None:
    if not _KEY.fullmatch(key):
        raise SpecError(f"--set {key}: expected a dotted spec key with [index] into arrays, such as run.steps or "
                        "model.context[0].bins")


@attrs.frozen
class Override:
    """``value`` for the spec's ``key`` (``model.context[0].bins``)."""

    key: str = attrs.field(validator=_dotted)
    value: Any

    @classmethod
    def parse(cls, text: str) -> Override:
        """``KEY=VALUE`` as ``--set`` takes it."""
        key, eq, value = text.partition("=")
        if not eq:
            raise SpecError(f"--set {text}: expected KEY=VALUE, such as run.steps=100")
        return cls(key.strip(), toml_value(value.strip()))

    @property
    def path(self) -> tuple[str | int, ...]:
        """The key's steps: table keys and array indices."""
        return tuple(name or int(index) for name, index in _STEP.findall(self.key))


def apply_overrides(table: dict[str, Any], overrides: Iterable[Override],
                    defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """``table`` (a spec's, ``extends`` resolved) with ``overrides`` laid over it (``table`` is not changed).

    ``defaults`` is what the tables and arrays that ``table`` leaves out hold (a component's
    default ``name``). Overrides apply in order, but that a key's ``name`` comes before the
    other keys: ``--set loss.gamma=2 --set loss.name=x`` keeps ``gamma`` for the new ``x``.
    """
    for override in sorted(overrides, key=lambda o: o.path[-1] != "name"):
        table = _set(table, defaults, override.path, override, "")
    return table


def _set(node: Any, default: Any, path: tuple[str | int, ...], override: Override, where: str) -> Any:
    """``node`` (at ``where``, or ``default`` where it is left out) with ``override.value`` at ``path`` below it."""
    if node is None:
        node = default
    if not path:
        value = override.value
        return merge(node, value) if isinstance(node, dict) and isinstance(value, dict) else value
    step, rest = path[0], path[1:]
    if isinstance(step, int):
        items = _array(node, step, override, where)
        items[step] = _set(items[step], None, rest, override, f"{where}[{step}]")
        return items
    if node is None:
        node = {}
    if not isinstance(node, dict):
        raise SpecError(f"--set {override.key}: {where} is {node!r}, not a table")
    if not rest:
        return merge(node, {step: override.value})
    below = default.get(step) if isinstance(default, dict) and node.get("name") == default.get("name") else None
    return {**node, step: _set(node.get(step), below, rest, override, f"{where}.{step}".lstrip("."))}


def _array(node: Any, index: int, override: Override, where: str) -> list[Any]:
    """A copy of the array ``node``, which must have an entry ``index``."""
    if node is None:
        raise SpecError(f"--set {override.key}: the spec leaves {where} out; set it whole, as --set {where}=[...]")
    if not isinstance(node, (list, tuple)):
        raise SpecError(f"--set {override.key}: {where} is {'a table' if isinstance(node, dict) else repr(node)}, "
                        "not an array")
    if index >= len(node):
        entries = {0: "no entries", 1: "1 entry ([0])"}.get(len(node), f"{len(node)} entries ([0] to [{len(node) - 1}])")
        raise SpecError(f"--set {override.key}: the spec's {where} has {entries}")
    return list(node)
