"""The ParseNet Baseline: DeepLab-LargeFOV's VGG-16 (ParseNet Sec. 4.1, Table 2).

Liu, Rabinovich and Berg, "ParseNet: Looking Wider to See Better", 2015,
https://arxiv.org/abs/1506.04579, Sec. 4.1; the network is DeepLab-LargeFOV of Chen
et al., "Semantic Image Segmentation with Deep Convolutional Nets and Fully Connected
CRFs", ICLR 2015, https://arxiv.org/abs/1412.7062, Sec. 3.1 and 4.1.

ParseNet re-trained DeepLab-LargeFOV with its own fine-tuning recipe (65.82 mean IoU on
VOC2012 val, Table 2), "renamed DeepLab-LargeFOV Baseline as ParseNet Baseline, and
ParseNet is ParseNet Baseline plus global context". The network is VGG-16 with

* pool4 and pool5 as 3x3 max-pools of stride 1 and padding 1, and conv5_1..conv5_3
  dilated by 2, so the output stride is 8;
* fc6 as a 3x3 convolution of dilation 12 with 1024 channels (the "large field of
  view" at a fraction of the 4096 x 7 x 7 parameters), ReLU, dropout 0.5;
* fc7 as a 1x1 convolution with 1024 channels, ReLU, dropout 0.5.

The conv layers are ctxseg's built-in ``base.vgg16`` (torchvision's layers) at output
stride 8, whose pool4/pool5/conv5 are exactly DeepLab's. One difference: DeepLab's
pool1-pool3 are 3x3 windows of stride 2 and padding 1, torchvision's are 2x2 of stride
2. Both halve the map and have no weights, so ImageNet weights apply either way; the
3x3 windows widen the receptive field of fc7 from 412 to 419 pixels. An ImageNet
checkpoint (``pretrained``) loads into the conv layers through ``base.vgg16``; fc6 and
fc7 start from random weights (DeepLab initializes them by subsampling VGG-16's fully
connected layers, 4096 -> 1024 channels and 7x7 -> 3x3).

The fc6 parameters also give the two other baselines the paper reports on:
"DeepLab Baseline" (DeepLab: fc6 4x4, dilation 4, 4096 channels; Tables 2 and 5) and
FCN-32s (output stride 32, fc6 7x7, 4096 channels; "Baseline D" of Table 1, the
network of Tables 3 and 4, whose fc7 has the 404 x 404 pixel receptive field of
Sec. 3.1). ParseNet removed FCN's 100 pixels of input padding (Sec. 4.1); here fc6 is
padded instead so every output keeps the backbone's declared size.
"""

from __future__ import annotations

import attrs
import torch.nn.functional as F
from torch import Tensor

from ctxseg.interfaces import Backbone
from ctxseg.nn import VGG16, channel_count, fc_as_convolutions
from ctxseg.spec import FilePath

__all__ = ["DeepLabVGG16"]


def _check_fc6(config: DeepLabVGG16.Config, attribute: attrs.Attribute, value: int) -> None:
    if not 1 <= value <= 256:
        raise ValueError(f"'{attribute.name}' must be in [1, 256], got {value}")
    if config.fc6_dilation * (config.fc6_kernel - 1) % 2:
        raise ValueError(f"fc6 keeps the map's size only when fc6_dilation * (fc6_kernel - 1) is even; "
                         f"got fc6_kernel={config.fc6_kernel}, fc6_dilation={config.fc6_dilation}")


class DeepLabVGG16(Backbone):
    """VGG-16 conv layers, then fc6 and fc7 as convolutions; outputs conv3_3, conv4_3, conv5_3, fc7.

    Channels 256, 512, 512, ``fc_channels``; strides 4, 8, min(16, output stride) and the
    output stride (4, 8, 8, 8 for the ParseNet Baseline).
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        output_stride: int = attrs.field(default=8, validator=attrs.validators.in_((8, 16, 32)))
        """Stride of conv5_3 and fc7: 8 for DeepLab(-LargeFOV), 32 for FCN-32s."""
        fc6_kernel: int = attrs.field(default=3, validator=_check_fc6)
        """fc6's kernel: 3 (LargeFOV), 4 (DeepLab), 7 (FCN-32s, VGG-16's own fc6)."""
        fc6_dilation: int = attrs.field(default=12, validator=_check_fc6)
        """fc6's dilation: 12 (LargeFOV), 4 (DeepLab), 1 (FCN-32s)."""
        fc_channels: int = attrs.field(default=1024, validator=channel_count())
        """Width of fc6 and fc7: 1024 (LargeFOV), 4096 (DeepLab, FCN-32s)."""
        dropout: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
        """Dropout after fc6 and after fc7, as in VGG-16 and DeepLab."""
        pretrained: FilePath = attrs.field(default="", validator=attrs.validators.instance_of(str))
        """Local ImageNet checkpoint of torchvision's ``vgg16`` (``.pth`` or ``.safetensors``) for
        the conv layers; its classifier is ignored. Empty = random init."""

    def __init__(self, config: Config):
        super().__init__()
        self.vgg = VGG16(VGG16.Config(output_stride=config.output_stride, pretrained=config.pretrained))
        width = config.fc_channels
        reach = config.fc6_dilation * (config.fc6_kernel - 1)
        self.fc6, self.fc7, self.drop6, self.drop7 = fc_as_convolutions(
            self.vgg.channels["pool5"], width, config.fc6_kernel, config.fc6_dilation, reach // 2, config.dropout)
        taps = [name for name in self.vgg.channels if name != "pool5"]
        self.channels = {**{name: self.vgg.channels[name] for name in taps}, "fc7": width}
        self.strides = {**{name: self.vgg.strides[name] for name in taps}, "fc7": self.vgg.strides["pool5"]}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.vgg(images)  # conv3_3, conv4_3, conv5_3, pool5: (B, C, H/s, W/s)
        pool5 = features.pop("pool5")  # (B, 512, H/os, W/os)
        fc6 = self.drop6(F.relu(self.fc6(pool5)))  # (B, fc_channels, H/os, W/os)
        fc7 = self.drop7(F.relu(self.fc7(fc6)))  # (B, fc_channels, H/os, W/os)
        return {**features, "fc7": fc7}
