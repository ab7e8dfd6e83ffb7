"""SGD with momentum and weight decay, the optimizer of all five papers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import torch


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
