"""DeepLabVGG16, the ParseNet Baseline (Sec. 4.1): layers, parameter counts, receptive field."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch
from torch import nn

from ctxseg.errors import SpecError
from ctxseg.model import SegmentationModel
from ctxseg.model.summary import receptive_field
from ctxseg.nn import VGG16
from ctxseg.registry import default_registry
from ctxseg.spec import spec_from_dict
from ctxseg.testing import check_component
from ctxseg_parsenet.vgg import DeepLabVGG16

VGG16_CONVS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
               (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
"""(in, out) channels of VGG-16's thirteen 3x3 convolutions."""

LARGE_FOV = {}
DEEPLAB = {"fc6_kernel": 4, "fc6_dilation": 4, "fc_channels": 4096}
FCN_32S = {"output_stride": 32, "fc6_kernel": 7, "fc6_dilation": 1, "fc_channels": 4096}


def _model(backbone: dict, num_classes: int = 21) -> SegmentationModel:
    spec = spec_from_dict({"model": {"backbone": {"name": "parsenet.deeplab_vgg16", **backbone},
                                     "classifier": {"dropout": 0.0}}})
    return SegmentationModel(spec.model, num_classes=num_classes)


def test_contract() -> None:
    check_component(default_registry().get("backbone", "parsenet.deeplab_vgg16"))  # fc_channels 8


def test_deeplab_large_fov_layers() -> None:
    """Sec. 4.1 / DeepLab-LargeFOV: pool4, pool5 3x3 stride 1 pad 1; conv5 dilation 2; fc6 3x3 dilation 12."""
    backbone = DeepLabVGG16(DeepLabVGG16.Config(fc_channels=16))
    pools = [m for m in backbone.vgg.features if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools[3:]] == [(3, 1, 1), (3, 1, 1)]
    convs = [m for m in backbone.vgg.features if isinstance(m, nn.Conv2d)]
    assert [c.dilation for c in convs[10:]] == [(2, 2)] * 3
    assert (backbone.fc6.kernel_size, backbone.fc6.dilation, backbone.fc6.padding) == ((3, 3), (12, 12), (12, 12))
    assert backbone.fc7.kernel_size == (1, 1)
    assert backbone.drop6.p == backbone.drop7.p == 0.5
    assert backbone.channels == {"conv3_3": 256, "conv4_3": 512, "conv5_3": 512, "fc7": 16}
    assert backbone.strides == {"conv3_3": 4, "conv4_3": 8, "conv5_3": 8, "fc7": 8}


def test_fcn_32s_strides() -> None:
    backbone = DeepLabVGG16(DeepLabVGG16.Config(**{**FCN_32S, "fc_channels": 16}))
    assert backbone.strides == {"conv3_3": 4, "conv4_3": 8, "conv5_3": 16, "fc7": 32}
    assert backbone.fc6.padding == (3, 3)  # FCN's 100-pixel input padding is gone (Sec. 4.1)


@pytest.mark.parametrize(("backbone", "fc6", "fc7", "total_21_classes"), [
    # DeepLab Table 2 gives 20.5M for LargeFOV, 65.1M for the 4x4 DeepLab, 134.3M for the 7x7 one.
    (LARGE_FOV, 3 * 3 * 512 * 1024 + 1024, 1024 * 1024 + 1024, 20_505_429),
    (DEEPLAB, 4 * 4 * 512 * 4096 + 4096, 4096 * 4096 + 4096, 65_140_565),
    (FCN_32S, 7 * 7 * 512 * 4096 + 4096, 4096 * 4096 + 4096, 134_346_581),
], ids=["large_fov", "deeplab", "fcn_32s"])
def test_parameter_counts(backbone: dict, fc6: int, fc7: int, total_21_classes: int) -> None:
    vgg_convs = sum(3 * 3 * c_in * c_out + c_out for c_in, c_out in VGG16_CONVS)
    assert vgg_convs == 14_714_688
    width = DeepLabVGG16.Config(**backbone).fc_channels
    fc8 = width * 21 + 21
    assert vgg_convs + fc6 + fc7 + fc8 == total_21_classes
    with torch.device("meta"):  # counts only: no memory, no init time
        model = _model(backbone)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(model.backbone.vgg) == vgg_convs
    assert count(model.backbone.fc6) == fc6 and count(model.backbone.fc7) == fc7
    assert count(model) == total_21_classes


def test_large_fov_has_far_fewer_parameters_than_deeplab() -> None:
    """Sec. 4.1: DeepLab-LargeFOV "has much less parameters and is faster"."""
    with torch.device("meta"):
        large_fov, deeplab = _model(LARGE_FOV), _model(DEEPLAB)
    assert sum(p.numel() for p in large_fov.parameters()) < 0.35 * sum(p.numel() for p in deeplab.parameters())


def test_fcn_fc7_receptive_field_is_404_pixels() -> None:
    """Sec. 3.1: "fc7 in FCN with VGG has a 404 x 404 pixels receptive field".

    Measured on the model's output, which is fc7's scores bilinearly upsampled from
    stride 32: an output pixel blends two neighbouring score pixels in each direction,
    which adds one stride. fc6's width does not change the field; 8 channels keep it fast.
    """
    model = _model({**FCN_32S, "fc_channels": 8}, num_classes=2)
    assert receptive_field(model, (448, 448)) == (404 + 32, 404 + 32)


def _textbook_field(backbone: DeepLabVGG16, pool_kernels: dict[int, int] | None = None) -> int:
    """fc7's receptive field by the recurrence r += (k_eff - 1) * j, j *= stride, over the layers.

    ``pool_kernels`` overrides the window of the n-th max-pool (0-based), to price DeepLab's 3x3 pools.
    """
    field, jump, pools = 1, 1, 0
    for layer in [*backbone.vgg.features, backbone.fc6, backbone.fc7]:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            kernel, stride, dilation = (v if isinstance(v, int) else v[0]
                                        for v in (layer.kernel_size, layer.stride, layer.dilation))
            if isinstance(layer, nn.MaxPool2d):
                kernel = (pool_kernels or {}).get(pools, kernel)
                pools += 1
            field += dilation * (kernel - 1) * jump
            jump *= stride
    return field


def test_textbook_receptive_fields_of_fc7() -> None:
    """FCN-32s: 404 (Sec. 3.1, measured above); LargeFOV: 412, 419 with DeepLab's 3x3 pool1-pool3."""
    with torch.device("meta"):
        fcn, large_fov = DeepLabVGG16(DeepLabVGG16.Config(**FCN_32S)), DeepLabVGG16(DeepLabVGG16.Config())
    assert _textbook_field(fcn) == 404
    assert _textbook_field(large_fov) == 412
    assert _textbook_field(large_fov, pool_kernels={0: 3, 1: 3, 2: 3}) == 419


def test_pretrained_conv_layers_load_through_base_vgg16(tmp_path) -> None:
    """A torchvision ``vgg16`` checkpoint (features.* and an ignored classifier.*) fills the conv layers."""
    torch.manual_seed(0)
    imagenet = VGG16(VGG16.Config()).state_dict()
    imagenet["classifier.0.weight"] = torch.zeros(4, 4)
    path = tmp_path / "vgg16.safetensors"
    safetensors.torch.save_file(imagenet, path)
    backbone = DeepLabVGG16(DeepLabVGG16.Config(fc_channels=8, pretrained=str(path)))
    for name, tensor in backbone.vgg.state_dict().items():
        assert torch.equal(tensor, imagenet[name]), name


def test_fc6_that_cannot_keep_the_size_is_a_spec_error() -> None:
    spec = {"model": {"backbone": {"name": "parsenet.deeplab_vgg16", "fc6_kernel": 4, "fc6_dilation": 1}}}
    message = (r"spec.toml: model.backbone: fc6 keeps the map's size only when fc6_dilation \* \(fc6_kernel - 1\) "
               r"is even; got fc6_kernel=4, fc6_dilation=1")
    with pytest.raises(SpecError, match=message):
        spec_from_dict(spec, source="spec.toml")
