"""Learning-rate schedules, each after an optional linear warm-up: the "poly" policy used by
ParseNet, PSPNet and DeepLab; cosine annealing; steps down by a factor."""

from __future__ import annotations

import bisect
import itertools
import math

import attrs

from ctxseg.interfaces import Schedule

__all__ = ["Cosine", "MultiStep", "Poly", "Step"]


def _warmed_up(factor: float, step: int, warmup_steps: int) -> float:
    """``factor`` times the linear warm-up's ``(step + 1) / warmup_steps`` during it."""
    return factor * (step + 1) / warmup_steps if step < warmup_steps else factor


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
        return _warmed_up(decay, step, self.config.warmup_steps)


class Cosine(Schedule):
    """``min_factor + (1 - min_factor) (1 + cos(pi step / total_steps)) / 2``, after an optional
    linear warm-up (Loshchilov and Hutter, "SGDR", 2017, Eq. 5, without restarts)."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        min_factor: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)])
        """The factor it anneals to, at total_steps."""
        warmup_steps: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    def __init__(self, config: Config, total_steps: int):
        self.config = config
        self.total_steps = max(total_steps, 1)

    def __call__(self, step: int) -> float:
        cosine = (1 + math.cos(math.pi * min(step / self.total_steps, 1.0))) / 2
        low = self.config.min_factor
        return _warmed_up(low + (1 - low) * cosine, step, self.config.warmup_steps)


def _increasing(instance: object, attribute: attrs.Attribute, value: tuple[int, ...]) -> None:
    if not value or value[0] < 1 or any(b <= a for a, b in itertools.pairwise(value)):
        raise ValueError(f"'{attribute.name}' must be increasing steps >= 1, got {list(value)}")


class MultiStep(Schedule):
    """``gamma ** (milestones passed)``: the rate drops by ``gamma`` at each milestone step, after an
    optional linear warm-up (Yu and Koltun Sec. 5: 1e-3 for 100K iterations, then 1e-4)."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        milestones: tuple[int, ...] = attrs.field(validator=_increasing)
        gamma: float = attrs.field(default=0.1, validator=attrs.validators.ge(0.0))
        warmup_steps: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    def __init__(self, config: Config, total_steps: int):
        self.config = config

    def __call__(self, step: int) -> float:
        passed = bisect.bisect_right(self.config.milestones, step)
        return _warmed_up(self.config.gamma ** passed, step, self.config.warmup_steps)


class Step(Schedule):
    """``gamma ** (step // step_size)``: the rate drops by ``gamma`` every ``step_size`` steps, after an
    optional linear warm-up."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        step_size: int = attrs.field(validator=attrs.validators.ge(1))
        gamma: float = attrs.field(default=0.1, validator=attrs.validators.ge(0.0))
        warmup_steps: int = attrs.field(default=0, validator=attrs.validators.ge(0))

    def __init__(self, config: Config, total_steps: int):
        self.config = config

    def __call__(self, step: int) -> float:
        return _warmed_up(self.config.gamma ** (step // self.config.step_size), step, self.config.warmup_steps)
