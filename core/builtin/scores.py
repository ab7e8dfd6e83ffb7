"""A 1x1 convolution to class scores, as a context head.

For models whose later components work on class scores rather than features: Yu &
Koltun's context module reads the front end's C score maps (Sec. 3), so the front
end's last layer has to be a component of its own (and can then be frozen).
"""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from ctxseg.interfaces import ContextHead


class Scores(ContextHead):
    """Dropout, then a 1x1 conv from in_channels to num_classes."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        dropout: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])

    field_of_view = 1
    emits_scores = True

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        self.out_channels = num_classes
        self.block = nn.Sequential(nn.Dropout2d(config.dropout), nn.Conv2d(in_channels, num_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)  # (B, K, h, w)
