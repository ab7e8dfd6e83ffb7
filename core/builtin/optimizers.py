"""SGD with momentum and weight decay, the optimizer of all five papers; Adam and AdamW, which
modern backbones (ConvNeXt, Swin) train with."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import torch

__all__ = ["SGD", "Adam", "AdamW"]


def _betas(instance: object, attribute: attrs.Attribute, value: tuple[float, float]) -> None:
    if not all(0.0 <= beta < 1.0 for beta in value):
        raise ValueError(f"'{attribute.name}' must be two numbers in [0, 1), got {list(value)}")


class SGD(torch.optim.SGD):
    """torch's SGD, configured from TOML (PSPNet Sec. 5.1 defaults)."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        lr: float = attrs.field(default=0.01, validator=attrs.validators.gt(0.0))
        momentum: float = attrs.field(default=0.9, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
        weight_decay: float = attrs.field(default=1e-4, validator=attrs.validators.ge(0.0))
        nesterov: bool = False

    def __init__(self, config: Config, params: Iterable[Any]):
        super().__init__(
            params, lr=config.lr, momentum=config.momentum,
            weight_decay=config.weight_decay, nesterov=config.nesterov,
        )


class Adam(torch.optim.Adam):
    """torch's Adam (Kingma and Ba, 2015), its weight decay an L2 term added to the gradient."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        lr: float = attrs.field(default=1e-3, validator=attrs.validators.gt(0.0))
        betas: tuple[float, float] = attrs.field(default=(0.9, 0.999), validator=_betas)
        eps: float = attrs.field(default=1e-8, validator=attrs.validators.gt(0.0))
        weight_decay: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))

    def __init__(self, config: Config, params: Iterable[Any]):
        super().__init__(params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)


class AdamW(torch.optim.AdamW):
    """torch's AdamW: Adam with decoupled weight decay (Loshchilov and Hutter, 2019)."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        lr: float = attrs.field(default=1e-3, validator=attrs.validators.gt(0.0))
        betas: tuple[float, float] = attrs.field(default=(0.9, 0.999), validator=_betas)
        eps: float = attrs.field(default=1e-8, validator=attrs.validators.gt(0.0))
        weight_decay: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))

    def __init__(self, config: Config, params: Iterable[Any]):
        super().__init__(params, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay)
