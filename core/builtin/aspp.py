"""Atrous spatial pyramid pooling as DeepLabv3 has it, the head of torchvision's ``deeplabv3_*``.

Chen, Papandreou, Schroff and Adam, "Rethinking Atrous Convolution for Semantic Image
Segmentation", 2017, https://arxiv.org/abs/1706.05587, Sec. 3.3.

DeepLabv2's ASPP (the third-party example ``deeplab.aspp``) sums parallel atrous convs;
v3 adds batch norm to each branch, a 1x1 branch and an image-level branch (global
average, 1x1 conv, upsampled: the context the largest rates lose when their taps fall
outside the map), concatenates the five and projects them with a 1x1 conv. It is built
in because ``ctxseg convert`` imports torchvision's DeepLabv3 checkpoints, and a
converted file should need nothing but ctxseg; the module names are torchvision's.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctxseg.interfaces import ContextHead
from ctxseg.model.blocks import channel_count


class ASPP(ContextHead):
    """``(B, in_channels, h, w) -> (B, channels, h, w)``: 1x1, three 3x3 atrous (``rates``) and
    image-pooling branches, each conv-BN-ReLU, concatenated, 1x1 projection-BN-ReLU, dropout."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        channels: int = attrs.field(default=256, validator=channel_count())
        """Width of every branch and of the output (Sec. 3.3: 256, with batch norm)."""
        rates: tuple[int, ...] = attrs.field(
            default=(12, 24, 36), converter=tuple,
            validator=attrs.validators.deep_iterable(
                member_validator=[attrs.validators.instance_of(int), attrs.validators.gt(0),
                                  attrs.validators.le(256)],
                iterable_validator=attrs.validators.min_len(1)))
        """Atrous rates of the 3x3 branches: (6, 12, 18) at output stride 16, doubled to
        (12, 24, 36) at output stride 8 (Sec. 3.3), torchvision's setting."""
        dropout: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
        """Dropout after the projection (torchvision's)."""

    field_of_view = "global"  # the image-pooling branch sees the whole map

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        width = config.channels
        self.convs = nn.ModuleList([
            _conv_bn_relu(in_channels, width, 1),
            *(_conv_bn_relu(in_channels, width, 3, rate) for rate in config.rates),
            nn.Sequential(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(in_channels, width, 1)),
        ])
        self.project = nn.Sequential(*_conv_bn_relu(len(self.convs) * width, width, 1), nn.Dropout(config.dropout))
        self.out_channels = width

    def forward(self, x: Tensor) -> Tensor:
        *branches, pooled = (conv(x) for conv in self.convs)  # (B, channels, h, w) ..., (B, channels, 1, 1)
        pooled = F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([*branches, pooled], dim=1))  # (B, channels, h, w)


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
