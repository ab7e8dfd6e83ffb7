"""The deep-stem ResNet of PSPNet's authors: contract, declared shapes, parameters, dilation, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch

from ctxseg.errors import WeightsError
from ctxseg.nn import ResNet
from ctxseg.registry import default_registry
from ctxseg.testing import check_component
from ctxseg_pspnet.resnet import DeepStemResNet


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def on_meta(cls: type, **params) -> ResNet:
    """Built without allocating weights: shapes and counts only."""
    with torch.device("meta"):
        return cls(ResNet.Config(**params))


def test_registered_backbone_passes_the_contract() -> None:
    component = default_registry().get("backbone", "pspnet.resnet")
    assert component.distribution == "ctxseg-pspnet"
    assert component.load() is DeepStemResNet
    check_component(component)  # ResNet-18, output stride 8


def test_resnet50_declares_output_stride_8() -> None:
    backbone = on_meta(DeepStemResNet, depth=50, output_stride=8)
    assert backbone.channels == {"c2": 256, "c3": 512, "c4": 1024, "c5": 2048}
    assert backbone.strides == {"c2": 4, "c3": 8, "c4": 8, "c5": 8}
    assert backbone.deepest == "c5"
    features = DeepStemResNet(ResNet.Config(depth=50)).eval()(torch.randn(1, 3, 32, 40))
    assert {name: tuple(f.shape) for name, f in features.items()} == {
        "c2": (1, 256, 8, 10), "c3": (1, 512, 4, 5), "c4": (1, 1024, 4, 5), "c5": (1, 2048, 4, 5),
    }


def test_the_stem_is_three_3x3_convs() -> None:
    backbone = on_meta(DeepStemResNet, depth=50)
    convs = [backbone.conv1, backbone.conv2, backbone.conv3]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 64, (3, 3), (2, 2)), (64, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1)),
    ]
    assert [bn.num_features for bn in (backbone.bn1, backbone.bn2, backbone.bn3)] == [64, 64, 128]
    assert backbone.layer1[0].conv1.in_channels == backbone.layer1[0].downsample[0].in_channels == 128


def geometry(net: ResNet) -> list[tuple]:
    """Stride, dilation and padding of every conv after layer1."""
    return [(name, m.stride, m.dilation, m.padding) for name, m in net.named_modules()
            if isinstance(m, torch.nn.Conv2d) and name.startswith(("layer2", "layer3", "layer4"))]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_dilation_is_the_built_in_resnets(output_stride: int) -> None:
    deep = on_meta(DeepStemResNet, depth=50, output_stride=output_stride)
    assert geometry(deep) == geometry(on_meta(ResNet, depth=50, output_stride=output_stride))
    assert deep.strides == on_meta(ResNet, depth=50, output_stride=output_stride).strides


def test_resnet50_parameters_differ_from_the_built_in_by_the_stem() -> None:
    stem_3x3 = 3 * 64 * 9 + 64 * 64 * 9 + 64 * 128 * 9 + 2 * (64 + 64 + 128)  # three convs and BNs
    stem_7x7 = 3 * 64 * 49 + 2 * 64
    layer1_input = (128 - 64) * 64 + (128 - 64) * 256  # first block's 1x1 conv and shortcut read 128 channels
    difference = stem_3x3 - stem_7x7 + layer1_input
    assert difference == 123_776
    for depth in (50, 101):
        assert count(on_meta(DeepStemResNet, depth=depth)) - count(on_meta(ResNet, depth=depth)) == difference


def test_resnet18_gains_a_shortcut_projection() -> None:
    """BasicBlock's first block had an identity shortcut (64 -> 64); with 128 in it projects."""
    stem = 3 * 64 * 9 + 64 * 64 * 9 + 64 * 128 * 9 + 2 * (64 + 64 + 128) - (3 * 64 * 49 + 2 * 64)
    first_block = (128 - 64) * 64 * 9 + (128 * 64 + 2 * 64)  # wider 3x3 conv, new 1x1 conv + BN
    assert count(on_meta(DeepStemResNet, depth=18)) - count(on_meta(ResNet, depth=18)) == stem + first_block


@pytest.fixture(scope="module")
def trained_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    backbone = DeepStemResNet(ResNet.Config(depth=18))
    state = {name: t + torch.rand_like(t) if t.is_floating_point() else t for name, t in backbone.state_dict().items()}
    return {**state, "fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}  # a classifier's head


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_deep_stem_checkpoint_loads_through_the_built_in_loader(
    trained_state: dict[str, torch.Tensor], suffix: str, tmp_path: Path
) -> None:
    path = tmp_path / f"resnet18_deep{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(trained_state, str(path))
    else:
        torch.save(trained_state, path)
    loaded = DeepStemResNet(ResNet.Config(depth=18, pretrained=str(path))).state_dict()
    assert set(loaded) == set(trained_state) - {"fc.weight", "fc.bias"}
    for name, tensor in loaded.items():
        assert torch.equal(tensor, trained_state[name]), name


def test_a_7x7_stem_checkpoint_is_rejected_by_name(tmp_path: Path) -> None:
    path = tmp_path / "resnet18.safetensors"
    safetensors.torch.save_file(ResNet(ResNet.Config(depth=18)).state_dict(), str(path))
    with pytest.raises(WeightsError, match=r"missing tensors: .* conv2\.weight, bn2\.weight, .*; mis-shaped tensors: "
                                           r"conv1\.weight \(file \(64, 3, 7, 7\), model \(64, 3, 3, 3\)\)"):
        DeepStemResNet(ResNet.Config(depth=18, pretrained=str(path)))


def test_base_resnets_other_deep_stem_is_refused():
    with pytest.raises(ValueError, match="pspnet.resnet has PSPNet's own deep stem"):
        DeepStemResNet(ResNet.Config(depth=18, stem="deep"))
