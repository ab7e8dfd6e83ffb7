"""The FCN baseline head (Long et al., "Fully Convolutional Networks", as in torchvision).

It adds no context: a 3x3 conv-BN-ReLU and dropout on the backbone's last feature map.
Every context head is compared against it. ``convs`` and ``concat_input`` make it
MMSegmentation's ``FCNHead`` too (its ``fcn_r50-d8`` decode heads: two convs, then the
head's input concatenated to their output before a third), so ``ctxseg convert`` can
import those checkpoints.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn

from ctxseg.interfaces import ContextHead
from ctxseg.model.blocks import channel_count


class FCNHead(ContextHead):
    """``convs`` x (3x3 conv, BN, ReLU) from in_channels to ``channels``, then dropout; with
    ``concat_input``, the input concatenated to their output and one more 3x3 conv-BN-ReLU
    (``concat``) before the dropout."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        channels: int = attrs.field(default=0, validator=channel_count(0))
        """Output channels; 0 means in_channels // 4, torchvision's choice."""
        dropout: float = attrs.field(default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
        convs: int = attrs.field(default=1, validator=[attrs.validators.ge(1), attrs.validators.le(16)])
        """3x3 conv-BN-ReLU layers: 1 as torchvision's; MMSegmentation's decode heads have 2."""
        concat_input: bool = False
        """MMSegmentation's ``concat_input``: the head's input and the convs' output,
        concatenated, go through one more 3x3 conv-BN-ReLU."""

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        self.out_channels = config.channels or max(in_channels // 4, 1)
        layers = [_conv_bn_relu(in_channels if i == 0 else self.out_channels, self.out_channels)
                  for i in range(config.convs)]
        dropout = nn.Dropout2d(config.dropout)
        self.block = nn.Sequential(*(m for layer in layers for m in layer), *([] if config.concat_input else [dropout]))
        self.concat = (nn.Sequential(*_conv_bn_relu(in_channels + self.out_channels, self.out_channels), dropout)
                       if config.concat_input else None)
        self.field_of_view = 1 + 2 * (config.convs + config.concat_input)

    def forward(self, x: Tensor) -> Tensor:
        y = self.block(x)  # (B, out_channels, h, w)
        if self.concat is not None:
            y = self.concat(torch.cat([x, y], dim=1))  # (B, out_channels, h, w)
        return y


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]
