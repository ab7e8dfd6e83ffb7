"""Building the component registry from built-ins, entry points and in-process plugins."""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import warnings
from typing import Any

import attrs
import pluggy

from ctxseg.errors import PluginError

from . import hookspec
from .component import Component, Kind

__all__ = ["AUTOLOAD_ENV", "STRICT_ENV", "PluginFailure", "Registry"]

AUTOLOAD_ENV = "CTXSEG_DISABLE_PLUGIN_AUTOLOAD"
"""Set to a non-empty value to skip entry-point plugins (built-ins still load)."""
STRICT_ENV = "CTXSEG_STRICT_PLUGINS"
"""Set to a non-empty value to make a plugin that fails to load a fatal error."""

_BUILTIN = "ctxseg.builtin.plugin"


class PluginFailure(Warning):
    """A plugin that could not be loaded; the others keep working."""

    def __init__(self, distribution: str, error: BaseException):
        super().__init__(f"plugin distribution {distribution!r} failed to load: {type(error).__name__}: {error}")
        self.distribution = distribution
        self.error = error


class Registry:
    """Every component known to this process, keyed by kind and name.

    :param autoload: load plugins from the ``ctxseg`` entry-point group (default: unless
        ``CTXSEG_DISABLE_PLUGIN_AUTOLOAD`` is set).
    :param strict: a plugin that fails to load raises :class:`PluginError` instead of
        a :class:`PluginFailure` warning (default: ``CTXSEG_STRICT_PLUGINS``).
    """

    def __init__(self, *, autoload: bool | None = None, strict: bool | None = None):
        self.strict = bool(os.environ.get(STRICT_ENV)) if strict is None else strict
        self.failures: list[PluginFailure] = []
        self._pm = pluggy.PluginManager(hookspec.PROJECT)
        self._pm.add_hookspecs(hookspec)
        self._components: dict[tuple[Kind, str], Component] = {}

        self._add(importlib.import_module(_BUILTIN), "ctxseg", _own_version())
        if autoload if autoload is not None else not os.environ.get(AUTOLOAD_ENV):
            for ep in importlib.metadata.entry_points(group=hookspec.PROJECT):
                dist = ep.dist.name if ep.dist else ep.value
                version = ep.dist.version if ep.dist else ""
                try:
                    self._add(ep.load(), dist, version)
                except (PluginError, KeyboardInterrupt):
                    raise
                except BaseException as error:  # noqa: BLE001 - any import error is the plugin's, SystemExit too
                    self._fail(dist, error)

    def register(self, plugin: Any, distribution: str = "<in-process>", version: str = "") -> None:
        """Register a plugin object in-process (notebooks, tests); same rules as entry points."""
        self._add(plugin, distribution, version)

    def _add(self, plugin: Any, distribution: str, version: str) -> None:
        name = f"{distribution}:{id(plugin)}"
        self._pm.register(plugin, name=name)
        try:
            self._pm.check_pending()  # a misspelt hook name is the plugin's bug, caught early
            declared = [c for impl in self._pm.hook.ctxseg_components.get_hookimpls()
                        if impl.plugin_name == name for c in impl.function()]
            new = [attrs.evolve(c, distribution=distribution, version=version) for c in declared]
            self._check_unique(new, distribution)
        except (PluginError, KeyboardInterrupt):
            self._pm.unregister(name=name)
            raise
        except BaseException as error:  # noqa: BLE001 - a plugin's sys.exit() must not end every command
            self._pm.unregister(name=name)
            self._fail(distribution, error)
            return
        for c in new:
            self._components[c.kind, c.name] = c

    def _check_unique(self, new: list[Component], distribution: str) -> None:
        seen: set[tuple[Kind, str]] = set()
        for c in new:
            if not isinstance(c, Component):
                raise TypeError(f"ctxseg_components() must return Component records, got {c!r}")
            key = (c.kind, c.name)
            other = self._components.get(key)
            if other is not None or key in seen:
                first = other.distribution if other else distribution
                raise PluginError(
                    f"{c.kind} {c.name!r} is registered by two plugin distributions: "
                    f"{first!r} and {distribution!r}; uninstall one of them"
                )
            seen.add(key)

    def _fail(self, distribution: str, error: BaseException) -> None:
        if self.strict:
            raise PluginError(
                f"plugin distribution {distribution!r} failed to load: {type(error).__name__}: {error}"
            ) from error
        failure = PluginFailure(distribution, error)
        self.failures.append(failure)
        warnings.warn(failure, stacklevel=3)

    def components(self, kind: Kind | str | None = None) -> list[Component]:
        """All components (of one kind), sorted by kind and name."""
        found = (c for c in self._components.values() if kind is None or c.kind == Kind(kind))
        return sorted(found, key=lambda c: (c.kind.value, c.name))

    def get(self, kind: Kind | str, name: str) -> Component:
        """The component ``name`` of ``kind``; a ``LookupError`` suggests the nearest names."""
        kind = Kind(kind)
        try:
            return self._components[kind, name]
        except KeyError:
            known = [c.name for c in self.components(kind)]
            near = difflib.get_close_matches(name, known, n=2, cutoff=0.75)
            hint = f"; did you mean {' or '.join(map(repr, near))}?" if near else ""
            raise LookupError(
                f"unknown {kind} {name!r}{hint} (registered: {', '.join(known) or 'none'})"
            ) from None


def _own_version() -> str:
    try:
        return importlib.metadata.version("ctxseg")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _default
    if _default is None:
        _default = Registry()
    return _default


def reset_default_registry(registry: Registry | None = None) -> None:
    """Replace (or drop, to rebuild lazily) the process-wide registry; for tests."""
    global _default
    _default = registry
