"""ResNet backbone (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
https://arxiv.org/abs/1512.03385), built with a dilated output stride, in torchvision's layout.

Segmentation needs dense features, so the strides of the last stages are replaced by
dilation (Chen et al., DeepLab, https://arxiv.org/abs/1606.00915; Zhao et al., PSPNet;
Wu et al., FCRN): output stride 16 dilates stage 4 by 2, output stride 8 dilates
stage 3 by 2 and stage 4 by 4. The ImageNet weights still apply because no layer
changes shape.

One rule for every depth: a 3x3 conv gets the dilation of the grid it ran on in the
undilated network. The strided conv of a stage's first block therefore keeps the
previous stage's dilation and every 3x3 conv after it gets the stage's new one. For
bottlenecks (ResNet-50/101/152) this is torchvision's ``replace_stride_with_dilation``;
for BasicBlock (ResNet-18/34), which torchvision refuses to dilate, it dilates the
first block's second conv too.

The network is ctxseg's own rather than torchvision's ``resnet*`` builders: it is built
dilated instead of patched after the fact, and importing torchvision (which imports
``torch._dynamo``, about 1 s) is left to the commands that need it, so ``ctxseg
inspect`` and ``predict`` start fast. Module names and shapes are torchvision's, so its
ImageNet ``.pth`` files load unchanged, and so is the initialisation, draw for draw: a
seed gives the network torchvision's builder gives (both tested).
"""

from __future__ import annotations

from typing import Literal

import attrs
from torch import Tensor, nn

from ctxseg.builtin.pretrained import load_pretrained
from ctxseg.interfaces import Backbone
from ctxseg.model.blocks import he_init
from ctxseg.spec import FilePath

__all__ = ["BasicBlock", "Bottleneck", "ResNet"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN with a shortcut (He et al. Fig. 5 left), ResNet-18/34's block.

    ``dilation`` is the grid's before and after the block's stride: the first conv, which
    strides, runs on the first, the second conv on the second. The shortcut projects
    (1x1 conv-BN, strided) when the stride or the width changes. Convs keep PyTorch's
    default initialisation; :class:`ResNet` He-initialises them all.
    """

    expansion = 1
    """Output channels per ``width``."""

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: tuple[int, int] = (1, 1)):
        super().__init__()
        shortcut = _projection(in_channels, width * self.expansion, stride)  # drawn first, as torchvision does
        self.conv1 = _conv3x3(in_channels, width, stride, dilation[0])
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width, 1, dilation[1])
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = shortcut

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand, each with BN, and a shortcut (He et al. Fig. 5 right),
    ResNet-50/101/152's block; the 3x3 conv strides (torchvision's "ResNet v1.5").

    ``dilation`` and initialisation as in :class:`BasicBlock`; the 3x3 conv, the only
    one dilation applies to, strides, so it runs on ``dilation[0]``.
    """

    expansion = 4
    """Output channels per ``width``."""

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: tuple[int, int] = (1, 1)):
        super().__init__()
        shortcut = _projection(in_channels, width * self.expansion, stride)  # drawn first, as torchvision does
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride, dilation[0])
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + shortcut)


ARCHITECTURES: dict[int, tuple[type[BasicBlock | Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}
"""He et al. Table 1: each depth's block and its number of blocks in conv2_x to conv5_x."""


class ResNet(Backbone):
    """ResNet-18/34/50/101/152 without pooling and classifier; outputs ``c2``..``c5``.

    ``c2``..``c5`` are stages ``layer1``..``layer4``: strides 4, 8, 16, 32 capped at the
    output stride; channels 64..512 (BasicBlock) or 256..2048 (bottleneck). The module
    names are torchvision's, so its ImageNet ``.pth`` files load unchanged.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        depth: int = attrs.field(default=50, validator=attrs.validators.in_(tuple(ARCHITECTURES)))
        """Number of layers: 18 and 34 use BasicBlock, 50, 101 and 152 bottlenecks."""
        output_stride: int = attrs.field(default=8, validator=attrs.validators.in_((8, 16, 32)))
        """Stride of ``c5``; 8 is DeepLab's and PSPNet's setting, 32 the classification network."""
        pretrained: FilePath = attrs.field(default="", validator=attrs.validators.instance_of(str))
        """Local ImageNet checkpoint (torchvision ``.pth`` or ``.safetensors``); empty = random init."""
        stem: Literal["standard", "deep"] = attrs.field(default="standard",
                                                         validator=attrs.validators.in_(("standard", "deep")))
        """"standard": He et al.'s 7x7 conv (torchvision's ``conv1``, ``bn1``). "deep": three 3x3
        conv-BN-ReLU of 32, 32 and 64 channels, the first at stride 2 (``stem.0`` to ``stem.8``):
        the "ResNet-C" tweak of He et al., "Bag of Tricks for Image Classification", CVPR 2019,
        Sec. 4.1, MMSegmentation's ``ResNetV1c``, whose checkpoints ``ctxseg convert`` reads."""

    def __init__(self, config: Config):
        super().__init__()
        if config.stem == "deep":
            self.stem = nn.Sequential(*_conv_bn_relu(3, 32, stride=2), *_conv_bn_relu(32, 32), *_conv_bn_relu(32, 64))
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        block, blocks = ARCHITECTURES[config.depth]
        self.channels: dict[str, int] = {}
        self.strides: dict[str, int] = {}
        in_channels, stride, dilation = 64, 4, 1
        for index, name in enumerate(("c2", "c3", "c4", "c5")):
            step = 1 if index == 0 else 2  # layer1 runs at the max pool's stride
            previous = dilation
            if stride * step > config.output_stride:
                step, dilation = 1, dilation * step
            stride *= step
            width = 64 * 2**index
            stage = [block(in_channels, width, step, (previous, dilation))]
            stage += [block(width * block.expansion, width, 1, (dilation, dilation)) for _ in range(blocks[index] - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
            in_channels = self.channels[name] = width * block.expansion
            self.strides[name] = stride
        nn.Linear(in_channels, 1000)  # torchvision's builder draws its classifier next: drawn and dropped
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                he_init(module)
        if config.pretrained:
            load_pretrained(self, config.pretrained, ignore_prefixes=("fc.",))

    def _stem(self) -> list[nn.Module]:
        """The layers before ``layer1``, in order: what a subclass with another stem overrides."""
        if hasattr(self, "stem"):
            return [*(m for m in self.stem if isinstance(m, nn.Conv2d)), self.maxpool]
        return [self.conv1, self.maxpool]

    @property
    def receptive_fields(self) -> dict[str, int]:
        """Side of the input window a pixel of each output sees: each layer of the main path
        widens it by ``(kernel - 1) * dilation`` times the stride so far (the shortcut's 1x1
        widens nothing)."""
        field, jump = 1, 1
        fields = {}
        for name, stage in zip(self.channels, (self.layer1, self.layer2, self.layer3, self.layer4)):
            layers = self._stem() if name == "c2" else []
            layers += [conv for block in stage for conv in block.children() if isinstance(conv, nn.Conv2d)]
            for layer in layers:
                kernel, stride, dilation = (_pair(getattr(layer, attr, 1))[0]
                                            for attr in ("kernel_size", "stride", "dilation"))
                field += (kernel - 1) * dilation * jump
                jump *= stride
            fields[name] = field
        return fields

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if hasattr(self, "stem"):
            x = self.stem(images)  # (B, 64, H/2, W/2)
        else:
            x = self.relu(self.bn1(self.conv1(images)))  # (B, 64, H/2, W/2)
        x = self.maxpool(x)  # (B, 64, H/4, W/4)
        features = {}
        for name, stage in zip(self.channels, (self.layer1, self.layer2, self.layer3, self.layer4)):
            x = features[name] = stage(x)  # (B, channels[name], H/strides[name], W/strides[name])
        return features


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """A 3x3 conv that keeps the size (padding = dilation) up to its stride."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    """The shortcut of a block that changes stride or width: a strided 1x1 conv and BN
    (He et al.'s option B); None, the identity, otherwise."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                         nn.BatchNorm2d(out_channels))


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [_conv3x3(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def _pair(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value, value)
