"""The "poly" learning-rate policy used by ParseNet, PSPNet and DeepLab."""

from __future__ import annotations

import attrs

from ctxseg.interfaces import Schedule


class Poly(Schedule):
    """``(1 - step / total_steps) ** power``, after an optional linear warm-up.

    PSPNet Sec. 5.1: "the current learning rate equals to the base one multiplying
    (1 - iter/maxiter)^power", power 0.9.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        power: float = attrs.field(default=0.9, validator=attrs.validators.ge(0.0))
        warmup_steps: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    def __init__(self, config: Config, total_steps: int):
        self.config = config
        self.total_steps = max(total_steps, 1)

    def __call__(self, step: int) -> float:
        decay = max(1.0 - step / self.total_steps, 0.0) ** self.config.power
        if step < self.config.warmup_steps:
            return decay * (step + 1) / self.config.warmup_steps
        return decay
