"""Contract checks that every ctxseg component passes, whoever wrote it.

The framework composes components it has never seen: it builds a head from the
backbone's declared channels, fuses maps by their declared strides, and trusts a loss
to ignore what the dataset marks as void. These checks turn each interface of
:mod:`ctxseg.interfaces` into properties and let hypothesis try them on many small
inputs, so a plugin that passes them plugs into any model. A plugin runs them in its
own tests::

    from ctxseg.testing import check_component

    def test_my_head():
        check_component(MyHead, {"channels": 8}, kind="context_head")

or, for everything a plugin registers (``tests/test_contracts.py`` does this for
every registered component)::

    for component in registry.components():
        check_component(component)  # built with ``component.example``

A violation raises :class:`AssertionError` naming the component and the property,
for instance ``context_head 'pspnet.pyramid_pooling': output has 12 channels,
declared out_channels=16 (in_channels=8, input (2, 8, 5, 7))``; hypothesis adds the
smallest failing example it found. Runs are derandomized, so CI is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ctxseg import interfaces
from ctxseg.errors import PluginError
from ctxseg.registry import Component, Kind
from ctxseg.testing.callbacks import check_callback
from ctxseg.testing.datasets import check_dataset
from ctxseg.testing.modules import check_backbone, check_context_head, check_fusion
from ctxseg.testing.plugin import check_plugin
from ctxseg.testing.running import check_metric, check_passes
from ctxseg.testing.training import check_loss, check_optimizer, check_schedule

__all__ = [
    "check_backbone",
    "check_callback",
    "check_component",
    "check_context_head",
    "check_dataset",
    "check_fusion",
    "check_loss",
    "check_metric",
    "check_optimizer",
    "check_passes",
    "check_plugin",
    "check_schedule",
]


def check_component(
    component_or_class: Component | type,
    config: Any = None,
    *,
    kind: Kind | str | None = None,
    max_examples: int = 8,
) -> None:
    """Check any component against the contract of its kind.

    :param component_or_class: a registry :class:`~ctxseg.registry.Component` (its
        class is imported, its ``example`` table is the default ``config``), or the
        class itself.
    :param config: the component's ``Config`` instance, or a parameter table as in
        TOML; ``None`` means the component's example, else the ``Config`` defaults.
    :param kind: the interface a bare class implements; inferred from its base class
        (``ctxseg.interfaces``) when not given.
    :param max_examples: hypothesis examples per property.
    """
    if isinstance(component_or_class, Component):
        component = component_or_class
        kind, name = component.kind, component.name
        try:
            cls = component.load()
        except PluginError as error:  # already names the component, its distribution and target
            raise AssertionError(str(error)) from error
        except Exception as error:  # noqa: BLE001 - whatever the import raised is the plugin's
            raise AssertionError(
                f"{kind} {name!r}: cannot import {component.target!r}: {type(error).__name__}: {error}"
            ) from error
        if config is None:
            config = component.example
    else:
        cls, name = component_or_class, None
        kind = Kind(kind) if kind is not None else _infer_kind(cls)
    _CHECKS[Kind(kind)](cls, config, name=name, max_examples=max_examples)


def _infer_kind(cls: type) -> Kind:
    for kind, base in interfaces.INTERFACES.items():
        if isinstance(cls, type) and issubclass(cls, base):
            return Kind(kind)
    raise TypeError(f"cannot tell which interface {cls!r} implements; pass kind= (one of {', '.join(Kind)})")


_CHECKS: dict[Kind, Callable[..., None]] = {
    Kind.BACKBONE: check_backbone,
    Kind.CONTEXT_HEAD: check_context_head,
    Kind.FUSION: check_fusion,
    Kind.LOSS: check_loss,
    Kind.SCHEDULE: check_schedule,
    Kind.OPTIMIZER: check_optimizer,
    Kind.DATASET: check_dataset,
    Kind.METRIC: check_metric,
    Kind.PASSES: check_passes,
    Kind.CALLBACK: check_callback,
}
