"""The dilated ResNet with the "deep stem" that PSPNet's authors trained on ImageNet.

Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network", CVPR 2017,
https://arxiv.org/abs/1612.01105, Sec. 3.3 ("a pretrained ResNet with the dilated
network strategy") and Sec. 5.1.

The paper's ResNets are not He et al.'s exactly: in the authors' released models
(github.com/hszhao/PSPNet, conv1_1 to conv1_3; hszhao/semseg, ``deep_base``) the
7x7 stem conv is replaced by three 3x3 convs of 64, 64 and 128 channels, each with
BN and ReLU, the first at stride 2, so ``layer1`` reads 128 channels. Everything
else, dilation included, is ctxseg's built-in :class:`~ctxseg.builtin.resnet.ResNet`.

The module names are the authors' (``conv1``/``bn1`` to ``conv3``/``bn3``, then
torchvision's ``layer1`` to ``layer4``), so their ImageNet checkpoints
(``resnet50_v2.pth``, ``resnet101_v2.pth``) and any state dict of this class load
through the built-in loader.
"""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from ctxseg.nn import ResNet, he_init, load_pretrained

__all__ = ["DeepStemResNet"]

STEM_CHANNELS = 128
"""Output of the deep stem, the input of ``layer1`` (64 in the 7x7 stem)."""


class DeepStemResNet(ResNet):
    """:class:`~ctxseg.builtin.resnet.ResNet` (same ``Config``, outputs ``c2``..``c5``,
    channels, strides and dilation) with PSPNet's three-conv stem.

    Constructed from the base network without its checkpoint: the stem and the first
    block of ``layer1`` change shape, then ``pretrained`` is loaded into the result.
    """

    def __init__(self, config: ResNet.Config):
        if config.stem != "standard":
            raise ValueError(f"'stem' must be left 'standard' (got {config.stem!r}): pspnet.resnet has PSPNet's own "
                             "deep stem; base.resnet's stem = \"deep\" is another (MMSegmentation's ResNetV1c)")
        super().__init__(attrs.evolve(config, pretrained=""))
        self.conv1 = _conv3x3(3, 64, stride=2)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = _conv3x3(64, 64)
        self.bn2 = nn.BatchNorm2d(64)
        self.conv3 = _conv3x3(64, STEM_CHANNELS)
        self.bn3 = nn.BatchNorm2d(STEM_CHANNELS)

        # layer1's first block now reads 128 channels: its first conv widens, and its
        # shortcut becomes a projection (BasicBlock had none: 64 in, 64 out).
        first = self.layer1[0]
        old = first.conv1
        first.conv1 = he_init(nn.Conv2d(STEM_CHANNELS, old.out_channels, old.kernel_size,
                                      stride=old.stride, padding=old.padding, bias=False))
        width = self.channels["c2"]
        first.downsample = nn.Sequential(he_init(nn.Conv2d(STEM_CHANNELS, width, 1, bias=False)), nn.BatchNorm2d(width))
        if config.pretrained:
            load_pretrained(self, config.pretrained, ignore_prefixes=("fc.",))

    def _stem(self) -> list[nn.Module]:
        return [self.conv1, self.conv2, self.conv3, self.maxpool]

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        x = self.relu(self.bn1(self.conv1(images)))  # (B, 64, H/2, W/2)
        x = self.relu(self.bn2(self.conv2(x)))  # (B, 64, H/2, W/2)
        x = self.maxpool(self.relu(self.bn3(self.conv3(x))))  # (B, 128, H/4, W/4)
        features = {}
        for name, stage in zip(self.channels, (self.layer1, self.layer2, self.layer3, self.layer4)):
            x = features[name] = stage(x)  # (B, channels[name], H/strides[name], W/strides[name])
        return features


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return he_init(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False))
