"""The FCN baseline head (Long et al., "Fully Convolutional Networks", as in torchvision).

It adds no context: a 3x3 conv-BN-ReLU and dropout on the backbone's last feature map.
Every context head is compared against it.
"""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from ctxseg.interfaces import ContextHead
from ctxseg.model.blocks import channel_count


class FCNHead(ContextHead):
    """3x3 conv (in_channels -> channels), BN, ReLU, dropout."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        channels: int = attrs.field(default=0, validator=channel_count(0))
        """Output channels; 0 means in_channels // 4, torchvision's choice."""
        dropout: float = attrs.field(default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])

    field_of_view = 3

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        self.out_channels = config.channels or max(in_channels // 4, 1)
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, self.out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(self.out_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(config.dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)  # (B, out_channels, h, w)
