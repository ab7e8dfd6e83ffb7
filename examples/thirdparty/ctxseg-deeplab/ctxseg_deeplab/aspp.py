"""Atrous spatial pyramid pooling (ASPP), the context head of DeepLab-v2.

Chen, Papandreou, Kokkinos, Murphy and Yuille, "DeepLab: Semantic Image Segmentation
with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs", TPAMI 2017,
https://arxiv.org/abs/1606.00915, Sec. 3.3.

Several 3x3 convolutions look at the same feature map in parallel, each with its own
atrous (dilation) rate, so one layer sees context at several scales: with rates
6/12/18/24 on a stride-8 map a branch's 3x3 taps are 48 to 192 input pixels apart.
The branches are fused by summation.

One deliberate difference from the paper: there, each branch is a small classifier
(fc6 atrous 3x3, fc7 1x1, fc8 1x1 to class scores) and the branches' *scores* are
summed. In ctxseg a context head outputs features and the framework adds the
classifier, so here each branch is only its atrous 3x3 conv producing ``channels``
features; they are summed and then passed through one ReLU. Without the ReLU,
sum-then-classify would equal the paper's classify-then-sum exactly; with it, the
output is a non-negative feature map like every other head's.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn

from ctxseg.interfaces import ContextHead

__all__ = ["ASPP"]


class ASPP(ContextHead):
    """Parallel 3x3 atrous convolutions at ``rates``, summed, then ReLU.

    ``(B, in_channels, h, w) -> (B, channels, h, w)`` for any h, w: each branch pads by
    its rate, so the size is kept (a rate larger than the map only sees zeros beyond it).
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        channels: int = attrs.field(default=256, validator=attrs.validators.gt(0))
        """Features per branch and of the output. 256 as torchvision's ASPP; the
        paper's branches are 1024 wide (fc6), which ctxseg's classifier does not need."""
        rates: tuple[int, ...] = attrs.field(
            default=(6, 12, 18, 24),
            converter=tuple,
            validator=attrs.validators.deep_iterable(
                member_validator=[attrs.validators.instance_of(int), attrs.validators.gt(0)],
                iterable_validator=attrs.validators.min_len(1),
            ),
        )
        """Atrous rate of each branch: ASPP-L's {6, 12, 18, 24} (Sec. 3.3), the paper's
        best; ASPP-S is {2, 4, 8, 12}."""

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        self.out_channels = config.channels
        self.branches = nn.ModuleList(
            nn.Conv2d(in_channels, config.channels, 3, padding=rate, dilation=rate) for rate in config.rates
        )

    def forward(self, x: Tensor) -> Tensor:
        summed = sum(branch(x) for branch in self.branches)  # (B, channels, h, w)
        return torch.relu(summed)
