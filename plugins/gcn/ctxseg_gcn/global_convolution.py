"""The Global Convolutional Network block (GCN): a large k x k kernel built from separable ones.

Peng, Zhang, Yu, Luo and Sun, "Large Kernel Matters — Improve Semantic Segmentation by
Global Convolutional Network", CVPR 2017, https://arxiv.org/abs/1703.02719, Sec. 3.1, Fig. 2 B.

Classification wants every classifier densely connected to a large part of the
feature map; localization forbids fully-connected and global pooling layers. GCN
keeps the network fully convolutional and makes the kernel large instead: "a
combination of 1 x k + k x 1 and k x 1 + 1 x k convolutions, which enables densely
connections within a large k x k region in the feature map". Unlike Inception's
separable kernels there is no nonlinearity, so the block is a linear map whose
kernel is a sum of two rank-limited k x k kernels, at O(2/k) of a k x k conv's
parameters and cost (Table 2).

Choices the paper leaves open:

* The middle width of each branch is the output width (the class count): it is the
  only reading that reproduces Table 2's parameter counts (2k(2048 * 21 + 21 * 21) for
  res-5 and 21 classes: 260K, 434K, 608K, 782K for k = 3, 5, 7, 9).
* Every conv has a bias (Caffe's default); the two output biases add up, and the
  middle biases act only through the zero padding at the borders. Biases are not in
  the paper's parameter counts.
* Zero padding of (k - 1) / 2 keeps the map's size; only odd k, "to avoid alignment
  error" (Sec. 4.1.1).
"""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from ctxseg.interfaces import ContextHead
from ctxseg.nn import channel_count, odd_kernel

__all__ = ["GlobalConvolution", "horizontal", "vertical"]


def vertical(in_channels: int, out_channels: int, kernel: int, *, stride: int = 1, dilation: int = 1,
             bias: bool = True) -> nn.Conv2d:
    """A k x 1 conv (k rows, one column) that keeps the size at stride 1."""
    return nn.Conv2d(in_channels, out_channels, (kernel, 1), stride=stride, padding=(dilation * (kernel // 2), 0),
                     dilation=dilation, bias=bias)


def horizontal(in_channels: int, out_channels: int, kernel: int, *, stride: int = 1, dilation: int = 1,
               bias: bool = True) -> nn.Conv2d:
    """A 1 x k conv (one row, k columns) that keeps the size at stride 1."""
    return nn.Conv2d(in_channels, out_channels, (1, kernel), stride=stride, padding=(0, dilation * (kernel // 2)),
                     dilation=dilation, bias=bias)


class GlobalConvolution(ContextHead):
    """GCN (Fig. 2 B): ``(k x 1 then 1 x k) + (1 x k then k x 1)``, no nonlinearity.

    ``(B, in_channels, h, w) -> (B, channels or num_classes, h, w)``: by default the
    block produces the class score maps, as in the paper's pipeline (``emits_scores``:
    no classifier follows it).
    Every output depends on exactly the k x k window around it.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        kernel: int = attrs.field(default=15, validator=odd_kernel)
        """k: 15 is Table 1's best, "roughly" the 16 x 16 top-most map of a 512 x 512 input
        ("really global convolutional"); Cityscapes' 25 x 25 map takes 25 (Sec. 4.3)."""
        channels: int = attrs.field(default=0, validator=channel_count(0))
        """Output channels; 0 means the number of classes (score maps)."""

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        k, out = config.kernel, config.channels or num_classes
        self.left = nn.Sequential(vertical(in_channels, out, k), horizontal(out, out, k))
        self.right = nn.Sequential(horizontal(in_channels, out, k), vertical(out, out, k))
        self.out_channels = out
        self.emits_scores = not config.channels

    def forward(self, x: Tensor) -> Tensor:
        return self.left(x) + self.right(x)  # (B, out_channels, h, w)
