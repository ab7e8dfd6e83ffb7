"""The score heads GCN is compared with in the ablations, and the choice among them.

Peng, Zhang, Yu, Luo and Sun, "Large Kernel Matters — Improve Semantic Segmentation by
Global Convolutional Network", CVPR 2017, https://arxiv.org/abs/1703.02719, Sec. 4.1.1,
Fig. 4, Tables 1-4.

Each head turns one stage's features into class score maps in the pipeline of Fig. 2 A:

* ``gcn`` (Fig. 4 A): :class:`~ctxseg_gcn.global_convolution.GlobalConvolution`.
* ``conv1x1`` (Fig. 4 B): Table 1's "naive baseline", a 1x1 conv (the kernel size is
  ignored).
* ``conv_kxk`` (Fig. 4 C): "the trivial large kernel design", one k x k conv (Table 2).
* ``stack3x3`` (Fig. 4 D): a stack of 3x3 convs with the same equivalent kernel, so
  (k - 1) / 2 of them ("two 3x3 convolutions to approximate a 5x5 kernel", Table 3),
  without nonlinearity "to keep consistent with GCN". The inner convs have ``m``
  channels; Table 4 varies ``m`` for k = 7 (2048, 1024, 210), and its m = 2048 row is
  Table 3's k = 7 stack (71.3), so Table 3 uses m = 2048, the width of res-5. Table 4's
  parameter counts (75885K, 28505K, 4307K) are exactly three 3x3 convs 2048 -> m ->
  m -> 21. The paper gives no m for the other stages; ``m = 0`` gives each stage's
  stack its own input width, a given ``m`` is used in every stage.

For k = 3 the stack is a single 3x3 conv, the same head as ``conv_kxk`` with k = 3;
Tables 2 and 3 indeed report the same 69.8 for both.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from ctxseg_gcn.global_convolution import GlobalConvolution

__all__ = ["ConvStack", "Head", "score_head"]

Head = Literal["gcn", "conv1x1", "conv_kxk", "stack3x3"]


class ConvStack(nn.Sequential):
    """Fig. 4 D: (k - 1) / 2 linear 3x3 convs, ``in_channels -> m -> ... -> m -> out_channels``.

    ``(B, in_channels, h, w) -> (B, out_channels, h, w)``, receptive field k x k.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, channels: int):
        if kernel < 3 or kernel % 2 == 0:
            raise ValueError(f"a stack of 3x3 convs has an odd equivalent kernel >= 3, got {kernel}")
        depth = (kernel - 1) // 2
        widths = [in_channels, *[channels] * (depth - 1), out_channels]
        super().__init__(*(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths, widths[1:])))


def score_head(head: Head, in_channels: int, num_classes: int, kernel: int, stack_channels: int = 0) -> nn.Module:
    """The score head ``head`` of Fig. 4: ``(B, in_channels, h, w) -> (B, num_classes, h, w)``.

    ``stack_channels`` is ``m`` of ``stack3x3`` (0: ``in_channels``).
    """
    if head == "gcn":
        return GlobalConvolution(GlobalConvolution.Config(kernel=kernel), in_channels, num_classes)
    if head == "conv1x1":
        return nn.Conv2d(in_channels, num_classes, 1)
    if head == "conv_kxk":
        return nn.Conv2d(in_channels, num_classes, kernel, padding=kernel // 2)
    if head == "stack3x3":
        return ConvStack(in_channels, num_classes, kernel, stack_channels or in_channels)
    raise ValueError(f"unknown score head {head!r}; expected gcn, conv1x1, conv_kxk or stack3x3")
