"""The record a plugin returns for each component it provides.

A :class:`Component` names its implementation by import path ("module:attr"), so
listing components (``ctxseg plugins``, ``ctxseg --help``) never imports torch or a
plugin's model code; the target is imported on first use.
"""

from __future__ import annotations

import enum
import importlib
from typing import Any

import attrs

from ctxseg.errors import PluginError

__all__ = ["Component", "Kind"]


class Kind(str, enum.Enum):
    """The typed interfaces of :mod:`ctxseg.interfaces`; a component implements one."""

    BACKBONE = "backbone"
    CONTEXT_HEAD = "context_head"
    FUSION = "fusion"
    LOSS = "loss"
    SCHEDULE = "schedule"
    OPTIMIZER = "optimizer"
    DATASET = "dataset"
    METRIC = "metric"
    PASSES = "passes"
    CALLBACK = "callback"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class Component:
    """One registered component.

    :param kind: which interface it implements.
    :param name: registry name, ``<plugin>.<term>`` in snake_case (``pspnet.pyramid_pooling``).
    :param target: ``"module:attr"`` of the class, or the class itself (in-process
        registration). The class has a ``Config`` attribute: the attrs class of its
        TOML parameters.
    :param summary: one line for ``ctxseg plugins``.
    :param example: a small valid parameter table (as in TOML) that ``ctxseg.testing``
        and the registry-wide contract test build the component with; ``None`` means
        the defaults, or for a dataset what its class's ``write_example`` writes.
    """

    kind: Kind = attrs.field(converter=Kind)
    name: str
    target: str | type
    summary: str = ""
    example: dict[str, Any] | None = None
    # Filled in by the registry: who provided it.
    distribution: str = ""
    version: str = ""

    def load(self) -> type:
        """Import and return the implementing class."""
        return import_target(self.target, f"{self.kind} {self.name!r} of plugin distribution {self.distribution!r}")


def import_target(target: str | Any, owner: str) -> Any:
    """What ``target`` names as ``"module:attr"``, imported (a non-string is returned as is); a
    :class:`PluginError` naming ``owner`` if the import fails."""
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # whatever its import raises (SystemExit too) is the plugin's
        raise PluginError(f"{owner} cannot be imported from {target!r}: {type(error).__name__}: {error}") from error
