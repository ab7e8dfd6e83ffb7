"""The front end: VGG-16 adapted to dense prediction by removing what does not belong.

Yu and Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016,
https://arxiv.org/abs/1511.07122, Sec. 4.

The network is VGG-16 (Simonyan and Zisserman, ICLR 2015) with

* the last two pooling and striding layers removed entirely (pool4 and pool5; DeepLab
  keeps them as stride-1 pools), and the convolutions after each removed one dilated
  by 2: conv5_1..conv5_3 by 2, fc6 by 4. So the output stride is 8 and every layer
  keeps its shape, "which enables initialization with the parameters of the original
  classification network";
* fc6 as a 7x7 convolution (4096 channels, dilation 4) and fc7 as a 1x1 convolution
  (4096), each followed by ReLU and dropout 0.5 (the authors' released network);
* no padding of intermediate feature maps ("neither necessary nor justified in dense
  prediction"); the image is padded instead, by reflection.

Without padding every layer trims its reach off the map: fc7's receptive field is 380
pixels at stride 8, so an output cell is centred on its 8 x 8 block of the image when
the image is padded by (380 - 8) / 2 = 186 pixels on every side (the authors' ``margin``),
and ``8 n + 372`` pixels give exactly ``n`` cells. To meet ctxseg's backbone contract
(``ceil(H / 8)`` cells) the image is also extended at the bottom and right to a
multiple of 8. The buffer costs compute: a 64-pixel image becomes 436 pixels wide.

The paper's last layer, the 1x1 convolution to the C class scores that the context
module reads, is the core's ``base.scores`` head, so that it can be frozen with the
rest of the front end while the context module trains (Sec. 5).

The conv layers are ctxseg's ``base.vgg16`` (torchvision's layers, conv5 dilated by 2
at output stride 8), with pool4 and pool5 removed and the padding set to zero; a
torchvision ImageNet checkpoint (``pretrained``) loads into them, and its fully
connected fc6 and fc7 load into the convolutional ones.
"""

from __future__ import annotations

import attrs
import torch.nn.functional as F
from torch import Tensor, nn

from ctxseg.interfaces import Backbone
from ctxseg.nn import VGG16, channel_count, fc_as_convolutions, load_pretrained
from ctxseg.spec import FilePath
from ctxseg_dilation.padding import field_of_view, margin, pad

__all__ = ["FrontEnd"]

FC6_KERNEL, FC6_DILATION = 7, 4
"""VGG-16's fc6 as a 7x7 convolution, dilated by 4 after the two removed pools (Sec. 4)."""


class _Linear(nn.Module):
    """A convolution's weight seen as the fully connected layer it came from: ImageNet
    VGG-16's fc6 ``(4096, 512 * 7 * 7)`` is the 7x7 conv ``(4096, 512, 7, 7)``, flattened.
    Shares the conv's tensors, so loading into it loads into the conv."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().flatten(1))  # (out, in * k * k), a view
        self.bias = conv.bias


class FrontEnd(Backbone):
    """VGG-16 front end of Sec. 4; outputs ``conv4_3``, ``conv5_3``, ``fc7``, all at stride 8.

    Channels 512, 512 and ``fc_channels``. Without intermediate padding, conv4_3 and
    conv5_3 come out wider than fc7 by the reach of the layers after them (36 and 24
    cells); their centres, aligned with fc7, are returned.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        fc_channels: int = attrs.field(default=4096, validator=channel_count())
        """Width of fc6 and fc7: 4096, VGG-16's (Sec. 4). fc6 alone then has 103M weights;
        a smaller width is for tests and quick runs (and takes no ImageNet fc6/fc7)."""
        dropout: float = attrs.field(default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
        """Dropout after fc6 and after fc7, as in VGG-16 and the authors' network."""
        intermediate_padding: bool = False
        """Pad every convolution's input as VGG-16 does (and FCN, DeepLab), instead of the
        paper's 186-pixel reflection buffer around the image. The paper removes this
        padding (Sec. 4); keeping it is the ablation, and much cheaper on small images."""
        pretrained: FilePath = attrs.field(default="", validator=attrs.validators.instance_of(str))
        """Local ImageNet checkpoint of torchvision's ``vgg16`` (``.pth`` or ``.safetensors``):
        conv layers from ``features.*``, fc6 and fc7 from ``classifier.0`` and ``classifier.3``
        (which needs ``fc_channels = 4096``). Empty = random init."""

    def __init__(self, config: Config):
        super().__init__()
        self.vgg = VGG16(VGG16.Config(output_stride=8, pretrained=config.pretrained))
        for index, layer in enumerate(self.vgg.features):
            if isinstance(layer, nn.MaxPool2d) and layer.stride == 1:
                self.vgg.features[index] = nn.Identity()  # pool4, pool5: removed (Sec. 4)
            elif isinstance(layer, nn.Conv2d) and not config.intermediate_padding:
                layer.padding = (0, 0)
        width = config.fc_channels
        reach = FC6_DILATION * (FC6_KERNEL - 1) // 2 if config.intermediate_padding else 0
        self.fc6, self.fc7, self.drop6, self.drop7 = fc_as_convolutions(
            self.vgg.channels["conv5_3"], width, FC6_KERNEL, FC6_DILATION, reach, config.dropout)
        if config.pretrained:
            classifier = nn.Module()
            classifier.classifier = nn.ModuleDict({"0": _Linear(self.fc6), "3": _Linear(self.fc7)})
            load_pretrained(classifier, config.pretrained, ignore_prefixes=("features.", "classifier.6."))

        layers = [*self.vgg.features, self.fc6, self.fc7]
        self.stride = field_of_view(layers)[1]  # 8
        self.margin = 0 if config.intermediate_padding else margin(layers)  # 186
        self.channels = {"conv4_3": self.vgg.channels["conv4_3"], "conv5_3": self.vgg.channels["conv5_3"],
                         "fc7": width}
        self.strides = dict.fromkeys(self.channels, self.stride)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        height, width = images.shape[-2:]
        m, s = self.margin, self.stride
        x = pad(images, m, m + -height % s, m, m + -width % s, "reflect")  # (B, 3, 8h + 2m, 8w + 2m), h = ceil(H/8)
        features = self.vgg(x)  # conv3_3, conv4_3, conv5_3, pool5 (= conv5_3, the pool removed)
        fc6 = self.drop6(F.relu(self.fc6(features["conv5_3"])))  # (B, fc_channels, h, w)
        fc7 = self.drop7(F.relu(self.fc7(fc6)))  # (B, fc_channels, h, w)
        size = fc7.shape[-2:]
        return {"conv4_3": _centre(features["conv4_3"], size), "conv5_3": _centre(features["conv5_3"], size),
                "fc7": fc7}


def _centre(x: Tensor, size: tuple[int, int]) -> Tensor:
    """The centre ``size`` of ``x``: unpadded layers trim equally on both sides, so the
    centre of a wider map is aligned with the narrower map computed from it."""
    top, left = (x.shape[-2] - size[0]) // 2, (x.shape[-1] - size[1]) // 2
    return x[..., top : top + size[0], left : left + size[1]]  # (B, C, *size)
