"""ResNet backbone (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
https://arxiv.org/abs/1512.03385), torchvision's implementation with a dilated output stride.

Segmentation needs dense features, so the strides of the last stages are replaced by
dilation (Chen et al., DeepLab, https://arxiv.org/abs/1606.00915; Zhao et al., PSPNet;
Wu et al., FCRN): output stride 16 dilates stage 4 by 2, output stride 8 dilates
stage 3 by 2 and stage 4 by 4. The ImageNet weights still apply because no layer
changes shape.

torchvision's ``replace_stride_with_dilation`` rejects BasicBlock (ResNet-18/34), so
the dilation is applied here, one way for every depth: a 3x3 conv gets the dilation
of the grid it ran on in the undilated network. The strided conv of a stage's first
block therefore keeps the previous stage's dilation and every 3x3 conv after it gets
the stage's new one. For bottlenecks (ResNet-50/101/152) this is exactly torchvision's
``replace_stride_with_dilation``; for BasicBlock it dilates the first block's second conv too.
"""

from __future__ import annotations

from typing import Literal

import attrs
import torchvision
from torch import Tensor, nn

from ctxseg.builtin.pretrained import load_pretrained
from ctxseg.interfaces import Backbone

__all__ = ["ResNet"]


class ResNet(Backbone):
    """torchvision ResNet-18/34/50/101/152 without pooling and classifier; outputs ``c2``..``c5``.

    ``c2``..``c5`` are stages ``layer1``..``layer4``: strides 4, 8, 16, 32 capped at the
    output stride; channels 64..512 (BasicBlock) or 256..2048 (bottleneck). The module
    names are torchvision's, so its ImageNet ``.pth`` files load unchanged.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        depth: int = attrs.field(default=50, validator=attrs.validators.in_((18, 34, 50, 101, 152)))
        """Number of layers: 18 and 34 use BasicBlock, 50, 101 and 152 bottlenecks."""
        output_stride: int = attrs.field(default=8, validator=attrs.validators.in_((8, 16, 32)))
        """Stride of ``c5``; 8 is DeepLab's and PSPNet's setting, 32 the classification network."""
        pretrained: str = attrs.field(default="", validator=attrs.validators.instance_of(str))
        """Local ImageNet checkpoint (torchvision ``.pth`` or ``.safetensors``); empty = random init."""
        stem: Literal["standard", "deep"] = attrs.field(default="standard",
                                                         validator=attrs.validators.in_(("standard", "deep")))
        """"standard": He et al.'s 7x7 conv (torchvision's ``conv1``, ``bn1``). "deep": three 3x3
        conv-BN-ReLU of 32, 32 and 64 channels, the first at stride 2 (``stem.0`` to ``stem.8``):
        the "ResNet-C" tweak of He et al., "Bag of Tricks for Image Classification", CVPR 2019,
        Sec. 4.1, MMSegmentation's ``ResNetV1c``, whose checkpoints ``ctxseg convert`` reads."""

    def __init__(self, config: Config):
        super().__init__()
        net = getattr(torchvision.models, f"resnet{config.depth}")(weights=None)
        self.relu, self.maxpool = net.relu, net.maxpool
        if config.stem == "deep":
            self.stem = nn.Sequential(*_conv_bn_relu(3, 32, stride=2), *_conv_bn_relu(32, 32), *_conv_bn_relu(32, 64))
        else:
            self.conv1, self.bn1 = net.conv1, net.bn1
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        dilation = 1
        for stride, stage in ((16, self.layer3), (32, self.layer4)):
            if stride > config.output_stride:
                _dilate(stage, dilation, 2 * dilation)
                dilation *= 2
        width = net.fc.in_features  # 512 or 2048: channels of layer4
        self.channels = {"c2": width // 8, "c3": width // 4, "c4": width // 2, "c5": width}
        natural = {"c2": 4, "c3": 8, "c4": 16, "c5": 32}
        self.strides = {name: min(stride, config.output_stride) for name, stride in natural.items()}
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


def _dilate(stage: nn.Sequential, previous: int, dilation: int) -> None:
    """Turn a stride-2 stage into a stride-1 stage with the given dilation, in place.

    Weights are untouched: only stride, dilation and padding (= dilation, keeping the
    size) of the 3x3 convs change, and the shortcut's 1x1 conv loses its stride.
    """
    for index, block in enumerate(stage):
        grid = previous if index == 0 else dilation
        for conv in block.children():
            if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
                strided = conv.stride != (1, 1)
                conv.stride, conv.dilation, conv.padding = (1, 1), (grid, grid), (grid, grid)
                if strided:
                    grid = dilation
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
        block.stride = 1


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as torchvision's conv1
    return [conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def _pair(value: int | tuple[int, ...]) -> tuple[int, ...]:
    return value if isinstance(value, tuple) else (value, value)
