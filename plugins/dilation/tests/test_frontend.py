"""The front end (Sec. 4): layers, input buffer, output stride and sizes, parameters, ImageNet weights."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch
from torch import nn

from ctxseg.errors import SpecError, WeightsError
from ctxseg.nn import VGG16
from ctxseg.registry import default_registry
from ctxseg.spec.convert import structure
from ctxseg.testing import check_backbone, check_component
from ctxseg_dilation.frontend import FrontEnd
from ctxseg_dilation.padding import field_of_view, pad

VGG16_CONVS = 14_714_688
"""Parameters of VGG-16's thirteen 3x3 convolutions."""


def front_end(**params) -> FrontEnd:
    return FrontEnd(FrontEnd.Config(**{"fc_channels": 8, **params}))


def test_registered_front_end_passes_the_contract() -> None:
    component = default_registry().get("backbone", "dilation.frontend")
    assert component.distribution == "ctxseg-dilation"
    assert component.load() is FrontEnd
    check_component(component)  # fc_channels 64 with VGG's intermediate padding: fast


def test_paper_front_end_passes_the_contract() -> None:
    """No intermediate padding, the 186-pixel reflection buffer: one example, VGG-16 on 380+ pixels."""
    check_backbone(FrontEnd, {"fc_channels": 8}, max_examples=1)


def test_layers_of_sec_4() -> None:
    backbone = front_end()
    features = backbone.vgg.features
    assert sum(isinstance(m, nn.MaxPool2d) for m in features) == 3  # pool4 and pool5 removed
    assert [(p.kernel_size, p.stride) for p in features if isinstance(p, nn.MaxPool2d)] == [(2, 2)] * 3
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3  # conv5 after one removed pool
    assert {c.padding for c in convs} == {(0, 0)}  # no intermediate padding
    assert (backbone.fc6.kernel_size, backbone.fc6.dilation, backbone.fc6.padding) == ((7, 7), (4, 4), (0, 0))
    assert backbone.fc7.kernel_size == (1, 1)
    assert backbone.drop6.p == backbone.drop7.p == 0.5
    assert backbone.channels == {"conv4_3": 512, "conv5_3": 512, "fc7": 8}
    assert backbone.strides == {"conv4_3": 8, "conv5_3": 8, "fc7": 8}


def test_input_buffer_is_186_pixels() -> None:
    """fc7's receptive field is 380 pixels at stride 8; (380 - 8) / 2 = 186 centres each output
    cell on its 8 x 8 block, the authors' margin."""
    backbone = front_end()
    assert field_of_view([*backbone.vgg.features, backbone.fc6, backbone.fc7]) == (380, 8)
    assert backbone.margin == 186
    assert front_end(intermediate_padding=True).margin == 0


@pytest.mark.parametrize("intermediate_padding", [False, True])
def test_output_stride_8_for_any_image_size(intermediate_padding: bool) -> None:
    """ceil(H / 8) x ceil(W / 8) cells; the taps are cut to fc7's cells."""
    torch.manual_seed(0)
    backbone = front_end(intermediate_padding=intermediate_padding).eval()
    with torch.no_grad():
        for size, cells in [((16, 24), (2, 3)), ((13, 5), (2, 1))]:
            out = backbone(torch.randn(1, 3, *size))
            assert {name: tuple(t.shape) for name, t in out.items()} == {
                "conv4_3": (1, 512, *cells), "conv5_3": (1, 512, *cells), "fc7": (1, 8, *cells)}


def test_without_padding_the_vgg_maps_are_wider_than_fc7_by_the_layers_reach() -> None:
    """conv5_3 is wider by fc6's reach (24 cells), conv4_3 by that and conv5's three 3x3 convs
    dilated by 2 (12): the returned taps are their centres."""
    backbone = front_end().eval()
    images = torch.randn(1, 3, 8, 16)
    with torch.no_grad():
        inner = backbone.vgg(pad(images, 186, 186, 186, 186, "reflect"))
        out = backbone(images)
    assert inner["conv5_3"].shape[-2:] == (1 + 24, 2 + 24)
    assert inner["conv4_3"].shape[-2:] == (1 + 36, 2 + 36)
    assert torch.equal(out["conv5_3"], inner["conv5_3"][..., 12:13, 12:14])
    assert torch.equal(out["conv4_3"], inner["conv4_3"][..., 18:19, 18:20])


def test_parameter_count() -> None:
    """VGG-16's convs, fc6 as 7x7x512 -> 4096 and fc7 4096 -> 4096: VGG-16 without fc8."""
    fc6 = 7 * 7 * 512 * 4096 + 4096
    fc7 = 4096 * 4096 + 4096
    with torch.device("meta"):  # counts only: no memory, no init time
        backbone = FrontEnd(FrontEnd.Config())
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(backbone.vgg) == VGG16_CONVS
    assert (count(backbone.fc6), count(backbone.fc7)) == (fc6, fc7)
    assert count(backbone) == VGG16_CONVS + fc6 + fc7 == 134_260_544 == 138_357_544 - (4096 * 1000 + 1000)


def _imagenet_checkpoint(fc_channels: int) -> dict[str, torch.Tensor]:
    """A torchvision ``vgg16`` state dict (features.*, classifier.0/3/6) with a narrow fc6/fc7."""
    torch.manual_seed(1)
    state = VGG16(VGG16.Config()).state_dict()
    state["classifier.0.weight"] = torch.randn(fc_channels, 512 * 7 * 7)
    state["classifier.0.bias"] = torch.randn(fc_channels)
    state["classifier.3.weight"] = torch.randn(fc_channels, fc_channels)
    state["classifier.3.bias"] = torch.randn(fc_channels)
    state["classifier.6.weight"] = torch.randn(1000, fc_channels)
    state["classifier.6.bias"] = torch.randn(1000)
    return state


def test_imagenet_vgg16_loads_into_convs_and_fc6_fc7(tmp_path) -> None:
    """Sec. 4: fc6 keeps its 7x7 shape so the classification network's weights apply."""
    imagenet = _imagenet_checkpoint(8)
    path = tmp_path / "vgg16.safetensors"
    safetensors.torch.save_file(imagenet, path)
    backbone = front_end(pretrained=str(path))
    for name, tensor in backbone.vgg.state_dict().items():
        assert torch.equal(tensor, imagenet[name]), name
    assert torch.equal(backbone.fc6.weight, imagenet["classifier.0.weight"].view(8, 512, 7, 7))
    assert torch.equal(backbone.fc6.bias, imagenet["classifier.0.bias"])
    assert torch.equal(backbone.fc7.weight, imagenet["classifier.3.weight"].view(8, 8, 1, 1))
    assert torch.equal(backbone.fc7.bias, imagenet["classifier.3.bias"])
    assert [name for name, _ in backbone.named_parameters() if "classifier" in name] == []


def test_imagenet_fc6_needs_its_width(tmp_path) -> None:
    path = tmp_path / "vgg16.safetensors"
    safetensors.torch.save_file(_imagenet_checkpoint(8), path)
    with pytest.raises(WeightsError, match=r"mis-shaped tensors: classifier\.0\.weight \(file \(8, 25088\), "
                                           r"model \(16, 25088\)\)"):
        front_end(fc_channels=16, pretrained=str(path))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fc_channels": 0}, r"model\.backbone: 'fc_channels' must be a channel count in \[1, 65536\], got 0"),
        ({"dropout": 1.0}, r"model\.backbone: 'dropout' must be < 1"),
        ({"intermediate_padding": "yes"}, r"model\.backbone\.intermediate_padding: expected true or false"),
    ],
)
def test_bad_parameters_name_the_toml_path(params: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        structure(params, FrontEnd.Config, source="spec.toml", path="model.backbone")
