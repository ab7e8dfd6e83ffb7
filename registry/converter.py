"""The records of ``ctxseg convert``: a plugin's :class:`Converter`, and the :class:`Conversion` it returns.

A converter holds the key map of one layout of another library's checkpoints, kept with
the component it targets: MMSegmentation's ``PSPHead`` lives in ctxseg-pspnet beside
``pspnet.pyramid_pooling``. Like a :class:`~ctxseg.registry.Component`, it names its
function by import path, so listing converters never imports torch; ``ctxseg convert``
reads the file, asks the converters, and matches every tensor to the model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from ctxseg.errors import CtxsegError, PluginError

from .component import import_target

__all__ = ["Conversion", "Converter", "Rules"]

Rules = Sequence[tuple[str, str | Callable[[re.Match[str]], str]]]
"""``(pattern, replacement)`` pairs of :func:`re.sub`, tried in order on a tensor's name; the first match wins."""


@attrs.frozen
class Conversion:
    """What a converter recognised, ctxseg's parameters for it, and its tensors' names in ctxseg.

    :param kind: what was recognised, as its library names it (``"torchvision fcn_resnet50"``,
        ``"pspnet"`` for a head), for messages.
    :param table: the parameters: the component's table (``{"name": "pspnet.pyramid_pooling",
        ...}``) for a part of a checkpoint, the spec (``{"model": ...}``) for a whole one.
    :param rules: renaming the tensors the converter was given: onto the component's own module
        names for a part (``levels.0.reduce.0.``), onto the model's for a whole checkpoint.
    :param parts: ``(prefix, to, conversion)``: the tensors under ``prefix.`` renamed by another
        converter's ``conversion`` and placed under ``to.``, tried after ``rules``.
    :param classifier: a whole checkpoint's class-score weight; its first dimension counts the classes.
    :param classes: a whole checkpoint's class names where the file does not store them.
    """

    kind: str
    table: dict[str, Any]
    rules: Rules = ()
    parts: Sequence[tuple[str, str, Conversion]] = ()
    classifier: str = ""
    classes: Sequence[str] = ()

    def rename(self, key: str) -> str | None:
        """``key``'s name in ctxseg, or None if no rule or part takes it."""
        for pattern, replacement in self.rules:
            new, count = re.subn(pattern, replacement, key)
            if count:
                return new
        for prefix, to, part in self.parts:
            if key.startswith(f"{prefix}."):
                new = part.rename(key.removeprefix(f"{prefix}."))
                return None if new is None else f"{to}.{new}"
        return None


@attrs.frozen
class Converter:
    """One registered converter.

    :param reads: what its function is given: ``"checkpoint"``, a whole state dict, or a part
        of one library's checkpoints, its tensors named from there (``"mmsegmentation.decode_head"``:
        the tensors under ``decode_head.``, without the prefix).
    :param name: registry name, ``<plugin>.<term>`` in snake_case.
    :param target: ``"module:function"`` of ``function(state) -> Conversion | None`` (None: not its
        layout), or the function itself (in-process registration). It raises
        :class:`~ctxseg.errors.WeightsError` for tensors of its layout that it cannot convert.
    :param summary: one line: what it recognises, by which keys.
    """

    reads: str
    name: str
    target: str | Callable[[Mapping[str, Any]], Conversion | None]
    summary: str = ""
    # Filled in by the registry: who provided it.
    distribution: str = ""
    version: str = ""

    def convert(self, state: Mapping[str, Any]) -> Conversion | None:
        """Its function's conversion of ``state``; anything it raises but a
        :class:`~ctxseg.errors.CtxsegError` becomes a :class:`PluginError` naming its distribution."""
        owner = f"converter {self.name!r} of plugin distribution {self.distribution!r}"
        function = import_target(self.target, owner)
        try:
            conversion = function(state)
        except CtxsegError:
            raise
        except Exception as error:  # noqa: BLE001 - a bug in a plugin's converter is the plugin's
            raise PluginError(f"{owner} failed: {type(error).__name__}: {error}") from error
        if not (conversion is None or isinstance(conversion, Conversion)):
            raise PluginError(f"{owner} returned {conversion!r}; expected a Conversion or None")
        return conversion
