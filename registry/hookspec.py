"""The ctxseg plugin API: every hook a plugin may implement.

This module is the reference documentation for plugin authors. A plugin is a module
(or object) with functions decorated by :data:`hookimpl`, published in the entry-point
group ``ctxseg`` of its distribution::

    # pyproject.toml of the plugin
    [project.entry-points.ctxseg]
    myplugin = "ctxseg_myplugin.plugin"

    # ctxseg_myplugin/plugin.py -- only hook implementations, no torch import
    from ctxseg.registry import Component, hookimpl

    @hookimpl
    def ctxseg_components():
        return [Component("context_head", "myplugin.my_head", "ctxseg_myplugin.head:MyHead")]

ctxseg's own built-in components are registered through these same hooks.
"""

from __future__ import annotations

import pluggy

from .component import Component
from .converter import Converter

PROJECT = "ctxseg"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def ctxseg_components() -> list[Component]:
    """Declare the components this plugin provides.

    Called once per plugin when the registry is built. Keep it cheap: return
    :class:`~ctxseg.registry.Component` records whose ``target`` is an import path,
    so that torch and the model code are imported only when a component is used.

    :return: the plugin's components, named ``<plugin>.<term>`` (``<plugin>`` the entry
        point's name). A name (of a kind) another distribution registered first is
        disabled and reported, the first registration kept. All results are collected
        (not first-result).
    """


@hookspec
def ctxseg_converters() -> list[Converter]:
    """Declare the checkpoint layouts of other libraries this plugin teaches ``ctxseg convert``.

    Called once per plugin when the registry is built. Keep it cheap, as
    :func:`ctxseg_components`: :class:`~ctxseg.registry.Converter` records whose ``target``
    is an import path, imported when a checkpoint is converted.

    :return: the plugin's converters, named ``<plugin>.<term>`` like components (a name
        another distribution registered first is disabled and reported). ``ctxseg convert``
        tries the converters of each ``reads`` in registration order, ctxseg's own first, and
        takes the first that recognises the tensors, so a plugin adds layouts but never
        changes how a checkpoint that converted before converts.
    """
