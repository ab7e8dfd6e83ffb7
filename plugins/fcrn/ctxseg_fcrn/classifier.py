"""FCRN's classifier: one k x k convolution of dilation d from the features to class scores.

Wu, Shen and van den Hengel, "High-performance Semantic Segmentation Using Very Deep
Fully Convolutional Networks", 2016, https://arxiv.org/abs/1604.04339, Sec. 3.1.

The ResNet's pooling and linear classifier are removed and "the linear convolution
layer on top deal[s] with the FoV": its field of view is the side of the input region
its kernel spans, ``((k - 1) d + 1)`` feature pixels times the output stride; 392 px
(k = 5, d = 12 at 1/8) was best on PASCAL VOC (Table 1). Large kernels would blow up
the parameters, so the kernel is dilated instead ("hole algorithm").
"""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from ctxseg.interfaces import ContextHead
from ctxseg.nn import odd_kernel

__all__ = ["DilatedClassifier"]


class DilatedClassifier(ContextHead):
    """A k x k convolution of dilation d (zero-padded to keep the size) to ``num_classes`` scores.

    Emits the class scores (``emits_scores``), so no classifier follows it.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        kernel: int = attrs.field(default=5, validator=odd_kernel)
        """k: 3, 5 or 7 in Tables 1 and 2; 5 in the final models (Table 4)."""
        dilation: int = attrs.field(default=12, validator=[attrs.validators.ge(1), attrs.validators.le(256)])
        """d: 6, 12 or 18 in Tables 1 and 2; 12 in the final models (Table 4)."""

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        self.out_channels = num_classes
        self.emits_scores = True
        self.field_of_view = (config.kernel - 1) * config.dilation + 1
        self.conv = nn.Conv2d(in_channels, num_classes, config.kernel, dilation=config.dilation,
                              padding=config.dilation * (config.kernel - 1) // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)  # (B, K, h, w)
