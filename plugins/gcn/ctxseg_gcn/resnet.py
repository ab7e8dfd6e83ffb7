"""ResNet-GCN: a ResNet whose bottlenecks in the later stages start with a GCN module.

Peng, Zhang, Yu, Luo and Sun, "Large Kernel Matters — Improve Semantic Segmentation by
Global Convolutional Network", CVPR 2017, https://arxiv.org/abs/1703.02719, Sec. 4.1.2,
Fig. 5, Table 6.

"We remove the first two layers in the original bottleneck structure used by ResNet,
and replace them with a GCN module. In order to keep consistent with the original,
we also apply Batch Normalization and ReLU after each of the convolution layers"
(Fig. 5 B): a k x 1 and a 1 x k conv, and a 1 x k and a k x 1 conv, each followed by
BN and ReLU, the two branches summed; then the bottleneck's own 1x1 conv and BN, the
shortcut and the final ReLU. ResNet50-GCN classifies ImageNet slightly worse than
ResNet-50 (7.9 vs 7.7 % top-5 error) but segments better (71.2 vs 65.7 % with the 1x1
baseline pipeline, 72.5 vs 72.3 % with GCN + BR, Table 6).

Which blocks, and their sizes, are in the paper's appendix, which is not in ctxseg's
copy; the text says only that they "are carefully selected so that both network have
similar computation cost and number of parameters". The defaults here are those of
a widely used re-implementation (github.com/yassouali/pytorch-segmentation,
``models/gcn.py``): res-4 (``c4``) with k = 5 and 85 channels per branch, res-5 (``c5``)
with k = 7 and 128, res-2 and res-3 unchanged. ResNet50-GCN then has 20,496,780
parameters to ResNet-50's 23,508,032 (both without the classifier): 87 %.

Also not in the text: the first block of a stage strides its *second* conv of each
branch, so both directions are filtered at full resolution before subsampling (as
torchvision's ResNet strides its 3x3, the second layer, not the first 1x1); dilation
(output stride 8 or 16) follows the built-in ResNet's rule, the dilation of the 3x3
conv each GCN module replaces. New convs get torchvision's He initialization.
"""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from ctxseg.nn import Bottleneck, ResNet, channel_count, he_init, load_pretrained, odd_kernel
from ctxseg_gcn.global_convolution import horizontal, vertical

__all__ = ["GCNBottleneck", "ResNetGCN"]

STAGES = ("c2", "c3", "c4", "c5")


class GCNBottleneck(nn.Module):
    """Fig. 5 B: ``ReLU(x' + BN(conv1x1(GCN-BN-ReLU(x))))``, ``x'`` the (projected) shortcut.

    Built from the ResNet ``Bottleneck`` it replaces: its stride, dilation, output
    width and shortcut are kept, its first two layers become the GCN module (``left``:
    k x 1 then 1 x k; ``right``: 1 x k then k x 1; ``width`` channels each).
    """

    def __init__(self, block: Bottleneck, kernel: int, width: int):
        super().__init__()
        in_channels, out_channels = block.conv1.in_channels, block.conv3.out_channels
        stride, dilation = block.conv2.stride[0], block.conv2.dilation[0]
        self.left = nn.Sequential(
            *_conv_bn_relu(vertical(in_channels, width, kernel, dilation=dilation, bias=False)),
            *_conv_bn_relu(horizontal(width, width, kernel, stride=stride, dilation=dilation, bias=False)),
        )
        self.right = nn.Sequential(
            *_conv_bn_relu(horizontal(in_channels, width, kernel, dilation=dilation, bias=False)),
            *_conv_bn_relu(vertical(width, width, kernel, stride=stride, dilation=dilation, bias=False)),
        )
        self.conv3 = he_init(nn.Conv2d(width, out_channels, 1, bias=False))
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = block.downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)  # (B, C_out, h/stride, w/stride)
        gcn = self.left(x) + self.right(x)  # (B, width, h/stride, w/stride)
        return self.relu(self.bn3(self.conv3(gcn)) + shortcut)


class ResNetGCN(ResNet):
    """ResNet-50/101/152 with :class:`GCNBottleneck` blocks in the chosen stages.

    Same outputs ``c2``..``c5`` (channels 256..2048), strides and dilation as
    :class:`~ctxseg.builtin.resnet.ResNet`, but undilated (output stride 32) by default,
    the GCN pipeline's feature network. ``pretrained`` is a ResNet-GCN checkpoint (the
    paper pretrains its own on ImageNet); torchvision's ResNet weights do not fit it.
    """

    receptive_fields = None  # a GCN bottleneck is not the main path ResNet's declaration walks

    @attrs.define(frozen=True, kw_only=True)
    class Config(ResNet.Config):
        depth: int = attrs.field(default=50, validator=attrs.validators.in_((50, 101, 152)))
        """50, 101 or 152: Fig. 5 replaces the first two layers of a bottleneck, which
        ResNet-18 and -34 do not have. Table 6 compares ResNet50 and ResNet50-GCN."""
        output_stride: int = attrs.field(default=32, validator=attrs.validators.in_((8, 16, 32)))
        """Stride of ``c5``; 32, undilated, as GCN's FCN-4 pipeline uses it (Sec. 3.2)."""
        stages: tuple[str, ...] = attrs.field(default=("c4", "c5"), converter=tuple, validator=attrs.validators.and_(
            attrs.validators.deep_iterable(attrs.validators.in_(STAGES)), attrs.validators.min_len(1)))
        """Stages whose every bottleneck gets a GCN module (res-4 and res-5)."""
        kernels: tuple[int, ...] = attrs.field(default=(5, 7), converter=tuple,
                                               validator=attrs.validators.deep_iterable(odd_kernel))
        """k of each stage's GCN modules, in the order of ``stages``."""
        widths: tuple[int, ...] = attrs.field(default=(85, 128), converter=tuple,
                                              validator=attrs.validators.deep_iterable(channel_count()))
        """Channels of each GCN branch, per stage in the order of ``stages``."""

        def __attrs_post_init__(self) -> None:
            if not len(self.stages) == len(self.kernels) == len(self.widths):
                raise ValueError(f"'stages', 'kernels' and 'widths' need one entry per stage, got "
                                 f"{len(self.stages)}, {len(self.kernels)} and {len(self.widths)}")
            if len(set(self.stages)) != len(self.stages):
                raise ValueError(f"'stages' lists a stage twice: {list(self.stages)}")

    def __init__(self, config: Config):
        super().__init__(attrs.evolve(config, pretrained=""))
        layers = dict(zip(STAGES, (self.layer1, self.layer2, self.layer3, self.layer4)))
        for stage, kernel, width in zip(config.stages, config.kernels, config.widths):
            layer = layers[stage]
            for index, block in enumerate(layer):
                layer[index] = GCNBottleneck(block, kernel, width)
        if config.pretrained:
            load_pretrained(self, config.pretrained, ignore_prefixes=("fc.",))


def _conv_bn_relu(conv: nn.Conv2d) -> tuple[nn.Module, ...]:
    return he_init(conv), nn.BatchNorm2d(conv.out_channels), nn.ReLU(inplace=True)
