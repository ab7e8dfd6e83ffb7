"""The default way to run a model: one forward pass per batch (the interface's defaults)."""

from __future__ import annotations

import attrs

from ctxseg.interfaces import Passes


class SinglePass(Passes):
    """``model(images)`` once: outputs at input size, scored against the masks as they are."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        pass
