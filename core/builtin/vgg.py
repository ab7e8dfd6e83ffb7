"""VGG-16 backbone (Simonyan and Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", ICLR 2015, https://arxiv.org/abs/1409.1556): its 13
conv layers in torchvision's layout (``vgg16`` / ``vgg16_bn``), built with a dilated
output stride.

VGG-16 is the front end of FCN, ParseNet, DeepLab-LargeFOV and the dilated-context
network, which reach output stride 8 the DeepLab way (Chen et al.,
https://arxiv.org/abs/1412.7062, Sec. 3.1): a pool whose stride would take the
features past the output stride keeps their size instead (3x3 window, stride 1,
padding 1, as DeepLab's pool4/pool5), and the convs after it are dilated by the
stride it lost. So output stride 8 turns pool4 and pool5 into stride-1 pools and
dilates conv5_1..conv5_3 by 2; output stride 16 turns only pool5 into a stride-1 pool;
32 is the classification network. The strided pools stay the paper's 2x2 ones, and no
layer changes shape, so torchvision's ImageNet weights apply. Built here rather than by
torchvision for the reason :mod:`ctxseg.builtin.resnet` gives: commands that need no
torchvision start without importing it.
"""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from ctxseg.builtin.pretrained import load_pretrained
from ctxseg.interfaces import Backbone
from ctxseg.model.blocks import he_init
from ctxseg.spec import FilePath

__all__ = ["VGG16"]

CONFIGURATION_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
"""VGG-16, column D of Simonyan and Zisserman's Table 1: 3x3 conv widths, "M" a max pool."""

_TAPS = {7: "conv3_3", 10: "conv4_3", 13: "conv5_3"}
"""Outputs taken after the ReLU of these convs (1-based count of the 13 convs)."""


class VGG16(Backbone):
    """VGG-16's conv layers; outputs ``conv3_3``, ``conv4_3``, ``conv5_3``, ``pool5``.

    Strides 4, 8, min(16, output stride) and the output stride; channels 256, 512, 512,
    512. The layers stay in torchvision's ``features`` sequence, so its ImageNet ``.pth``
    files (keys ``features.N.weight``) load unchanged.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        output_stride: int = attrs.field(default=8, validator=attrs.validators.in_((8, 16, 32)))
        """Stride of ``pool5``; 8 is DeepLab's, ParseNet's and the dilated-context network's."""
        batch_norm: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
        """Use ``vgg16_bn`` (BatchNorm after every conv); the papers use plain VGG-16."""
        pretrained: FilePath = attrs.field(default="", validator=attrs.validators.instance_of(str))
        """Local ImageNet checkpoint (torchvision ``.pth`` or ``.safetensors``); empty = random init."""

    def __init__(self, config: Config):
        super().__init__()
        self.channels: dict[str, int] = {}
        self.strides: dict[str, int] = {}
        self._taps: dict[int, str] = {}  # index in features -> output name
        layers: list[nn.Module] = []
        stride, dilation, convs, width = 1, 1, 0, 3
        for item in CONFIGURATION_D:
            if item == "M" and 2 * stride <= config.output_stride:
                stride *= 2
                layers.append(nn.MaxPool2d(2, stride=2))
            elif item == "M":  # DeepLab's pool that keeps the size; the convs after it dilate
                dilation *= 2
                layers.append(nn.MaxPool2d(3, stride=1, padding=1))
            else:
                layers.append(nn.Conv2d(width, item, 3, padding=dilation, dilation=dilation))
                if config.batch_norm:
                    layers.append(nn.BatchNorm2d(item))
                layers.append(nn.ReLU(inplace=True))
                convs, width = convs + 1, item
                if convs in _TAPS:
                    self._add_tap(len(layers) - 1, _TAPS[convs], width, stride)
        self.features = nn.Sequential(*layers)
        for layer in self.features:  # after building, as torchvision: a seed draws the weights it drew
            if isinstance(layer, nn.Conv2d):
                he_init(layer)
        self._add_tap(len(self.features) - 1, "pool5", width, stride)
        if config.pretrained:
            load_pretrained(self, config.pretrained, ignore_prefixes=("classifier.",))

    def _add_tap(self, index: int, name: str, channels: int, stride: int) -> None:
        self._taps[index] = name
        self.channels[name] = channels
        self.strides[name] = stride

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = {}
        x = images
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._taps:
                features[self._taps[index]] = x  # (B, channels[name], H/strides[name], W/strides[name])
        return features


def fc_as_convolutions(in_channels: int, width: int, kernel: int, dilation: int, padding: int,
                       dropout: float) -> tuple[nn.Conv2d, nn.Conv2d, nn.Dropout, nn.Dropout]:
    """VGG's fc6 and fc7 made convolutional, as every VGG-based FCN does: fc6 a (dilated)
    ``kernel`` x ``kernel`` conv, fc7 a 1x1 conv, each followed by dropout in training;
    initialised like the conv layers above."""
    fc6 = nn.Conv2d(in_channels, width, kernel, padding=padding, dilation=dilation)
    fc7 = nn.Conv2d(width, width, 1)
    return he_init(fc6), he_init(fc7), nn.Dropout(dropout), nn.Dropout(dropout)
