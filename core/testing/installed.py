"""``ctxseg plugins --check``: the contract kit's verdict on each installed component."""

from __future__ import annotations

from collections.abc import Sequence

from ctxseg.errors import MissingExtraError, PluginError
from ctxseg.registry import Component
from ctxseg.testing import check_component

__all__ = ["NOT_CHECKED", "check_installed"]

NOT_CHECKED = "not checked here"
"""The verdict's start for a component whose optional package is not installed: no failure."""


def check_installed(components: Sequence[Component], names: Sequence[str] = ()) -> list[dict[str, str]]:
    """A row per component (or per one that ``names`` names, by component or plugin distribution):
    its plugin, version and ``contract``, "ok", the first line of what failed, run on its example,
    or :data:`NOT_CHECKED` and the package it needs."""
    unknown = [n for n in names if not any(n in (c.name, c.distribution) for c in components)]
    if unknown:
        raise PluginError(f"--check: no installed component or plugin distribution {', '.join(map(repr, unknown))}")
    return [{"component": c.name, "plugin": c.distribution, "version": c.version, "contract": _verdict(c)}
            for c in components if not names or c.name in names or c.distribution in names]


def _verdict(component: Component) -> str:
    try:
        check_component(component)
    except MissingExtraError as error:
        return f"{NOT_CHECKED}: {error}"
    except Exception as error:  # noqa: BLE001 - a contract failure, or whatever else the component raised
        text = str(error) if isinstance(error, AssertionError) else f"{type(error).__name__}: {error}"
        return text.splitlines()[0]
    return "ok"
