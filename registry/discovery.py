"""Building the registry of components and converters from built-ins, entry points and in-process plugins."""

from __future__ import annotations

import difflib
import importlib.metadata
import os
import warnings
from collections.abc import Mapping
from typing import Any

import attrs
import pluggy

from ctxseg.errors import PluginError, WeightsError

from . import hookspec
from .component import Component, Kind
from .converter import Conversion, Converter

__all__ = ["AUTOLOAD_ENV", "STRICT_ENV", "PluginFailure", "PluginWarning", "Registry"]

AUTOLOAD_ENV = "CTXSEG_DISABLE_PLUGIN_AUTOLOAD"
"""Set to a non-empty value to skip entry-point plugins (built-ins still load)."""
STRICT_ENV = "CTXSEG_STRICT_PLUGINS"
"""Set to a non-empty value to make a plugin that fails to load a fatal error."""

_BUILTIN = "ctxseg.builtin.plugin"
_HOOKS = {"ctxseg_components": (Component, "components"), "ctxseg_converters": (Converter, "converters")}
"""Each hook, the record it returns and what those are called."""


class PluginFailure(Warning):
    """A plugin, or one name of it, that could not be loaded; everything else keeps working."""

    def __init__(self, distribution: str, error: BaseException):
        message = str(error) if isinstance(error, PluginError) else (
            f"plugin distribution {distribution!r} failed to load: {type(error).__name__}: {error}")
        super().__init__(message)
        self.distribution = distribution
        self.error = error


class PluginWarning(UserWarning):
    """A plugin that loads but is probably not what its author meant (no components, a name
    outside its prefix)."""


class Registry:
    """Every component known to this process, keyed by kind and name, and every converter.

    :param autoload: load plugins from the ``ctxseg`` entry-point group (default: unless
        ``CTXSEG_DISABLE_PLUGIN_AUTOLOAD`` is set).
    :param strict: a plugin that fails to load, or a name two distributions register,
        raises :class:`PluginError` instead of a :class:`PluginFailure` warning (default:
        ``CTXSEG_STRICT_PLUGINS``).

    A name (of a kind, or of a converter) registered twice keeps its first registration and
    the later one is disabled (reported once, in :attr:`failures`): built-ins load first, then
    entry points sorted by distribution, so installing a plugin never changes or breaks what
    a name already meant.
    """

    def __init__(self, *, autoload: bool | None = None, strict: bool | None = None):
        self.strict = bool(os.environ.get(STRICT_ENV)) if strict is None else strict
        self.failures: list[PluginFailure] = []
        self._pm = pluggy.PluginManager(hookspec.PROJECT)
        self._pm.add_hookspecs(hookspec)
        self._components: dict[tuple[Kind, str], Component] = {}
        self._converters: dict[str, Converter] = {}

        self._add(importlib.import_module(_BUILTIN), "ctxseg", _own_version())
        if autoload if autoload is not None else not os.environ.get(AUTOLOAD_ENV):
            # Sorted, so that which of two clashing registrations is "the later" never
            # depends on the order the environment happens to list distributions in.
            entry_points = sorted(importlib.metadata.entry_points(group=hookspec.PROJECT),
                                  key=lambda ep: (ep.dist.name if ep.dist else "", ep.name))
            for ep in entry_points:
                dist = ep.dist.name if ep.dist else ep.value
                version = ep.dist.version if ep.dist else ""
                try:
                    plugin = ep.load()
                except (PluginError, KeyboardInterrupt):
                    raise
                except BaseException as error:  # noqa: BLE001 - any import error is the plugin's, SystemExit too
                    self._fail(dist, error)
                    continue
                self._add(plugin, dist, version, entry_point=ep.name)

    def register(self, plugin: Any, distribution: str = "<in-process>", version: str = "", *,
                 entry_point: str = "") -> None:
        """Register a plugin object in-process (notebooks, tests); same rules as entry points.

        :param entry_point: the name it would have in the ``ctxseg`` entry-point group, which
            its component names should start with (``<entry_point>.``).
        """
        self._add(plugin, distribution, version, entry_point=entry_point)

    def _add(self, plugin: Any, distribution: str, version: str, *, entry_point: str = "") -> None:
        name = f"{distribution}:{id(plugin)}"
        where = f"plugin distribution {distribution!r}" + (f", entry point {entry_point!r}" if entry_point else "")
        self._pm.register(plugin, name=name)
        try:
            self._pm.check_pending()  # a misspelt hook name is the plugin's bug, caught early
            declared: dict[str, list[Any]] = {}
            for hook, (record, _) in _HOOKS.items():
                impls = [impl for impl in getattr(self._pm.hook, hook).get_hookimpls() if impl.plugin_name == name]
                if impls:
                    declared[hook] = [r for impl in impls for r in impl.function()]
                for r in declared.get(hook, ()):
                    if not isinstance(r, record):
                        raise TypeError(f"{hook}() must return {record.__name__} records, got {r!r}")
        except (PluginError, KeyboardInterrupt):
            self._pm.unregister(name=name)
            raise
        except BaseException as error:  # noqa: BLE001 - a plugin's sys.exit() must not end every command
            self._pm.unregister(name=name)
            self._fail(distribution, error)
            return
        if not declared:
            warnings.warn(PluginWarning(f"{where}: {_describe(plugin)} implements no ctxseg hook "
                                        f"(expected a @hookimpl function {' or '.join(_HOOKS)})"), stacklevel=3)
        for hook, records in declared.items():
            if not records:
                warnings.warn(PluginWarning(f"{where}: {hook}() registers no {_HOOKS[hook][1]}"), stacklevel=3)
        prefixes = _prefixes(distribution, entry_point)
        for c in declared.get("ctxseg_components", ()):
            c = attrs.evolve(c, distribution=distribution, version=version)
            self._admit(self._components, (c.kind, c.name), str(c.kind), c, where, prefixes)
        for c in declared.get("ctxseg_converters", ()):
            c = attrs.evolve(c, distribution=distribution, version=version)
            self._admit(self._converters, c.name, "converter", c, where, prefixes)

    def _admit(self, records: dict[Any, Any], key: Any, label: str, record: Component | Converter, where: str,
               prefixes: set[str]) -> None:
        """Keep ``record`` under ``key`` unless another distribution registered it first."""
        other, distribution = records.get(key), record.distribution
        if other is not None:
            clash = (f"{label} {record.name!r} is registered by two plugin distributions: {other.distribution!r} "
                     f"and {distribution!r}; uninstall one of them, or rename it in {distribution!r}")
            if self.strict:
                raise PluginError(clash)
            self._fail(distribution, PluginError(f"{clash}; until then the later registration "
                                                 f"(from {distribution!r}) is disabled"))
            return
        if prefixes and record.name.partition(".")[0] not in prefixes:
            warnings.warn(PluginWarning(
                f"{where}: {label} {record.name!r} lacks the plugin's prefix "
                f"({' or '.join(f'{p}.' for p in sorted(prefixes))}); names are <plugin>.<term>"), stacklevel=4)
        records[key] = record

    def _fail(self, distribution: str, error: BaseException) -> None:
        failure = PluginFailure(distribution, error)
        if self.strict:
            raise PluginError(str(failure)) from error
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

    def converters(self, reads: str | None = None) -> list[Converter]:
        """All converters (of what they read), in the order :meth:`recognise` tries them:
        ctxseg's own, then the plugins' sorted by distribution."""
        return [c for c in self._converters.values() if reads is None or c.reads == reads]

    def recognise(self, reads: str, state: Mapping[str, Any]) -> Conversion:
        """The conversion of the first converter of ``reads`` that recognises the tensors ``state``.

        :raise WeightsError: none does (the message says what each expects), or the one that
            does cannot convert them.
        :raise PluginError: a converter failed; the message names its plugin distribution.
        """
        converters = self.converters(reads)
        for converter in converters:
            if (conversion := converter.convert(state)) is not None:
                return conversion
        expected = f"expected {' or '.join(c.summary or c.name for c in converters)}" if converters else \
            f"no converter reads {reads!r}"
        raise WeightsError(f"not a {reads} ctxseg can convert: {expected}; its first keys are "
                           f"{', '.join(list(state)[:5])}")


def _prefixes(distribution: str, entry_point: str) -> set[str]:
    """The name prefixes a plugin's components may use: its entry point's name, and its
    distribution's without ``ctxseg-`` (``base`` for ctxseg's own); none for an in-process
    registration without a name."""
    if distribution == "ctxseg":
        return {"base"}
    if distribution == "<in-process>" and not entry_point:
        return set()
    dist = distribution.lower().replace("-", "_").removeprefix("ctxseg_")
    return {p for p in (entry_point, dist) if p}


def _describe(plugin: Any) -> str:
    return f"module {plugin.__name__!r}" if hasattr(plugin, "__name__") else repr(plugin)


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
