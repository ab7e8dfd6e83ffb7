"""ResNet-GCN (Sec. 4.1.2, Fig. 5): contract, which blocks change, the GCN module, dilation, parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from ctxseg.errors import SpecError
from ctxseg.nn import Bottleneck, ResNet
from ctxseg.registry import default_registry
from ctxseg.spec.convert import structure
from ctxseg.testing import check_component
from ctxseg_gcn.resnet import GCNBottleneck, ResNetGCN

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def on_meta(cls: type, **params) -> ResNet:
    """Built without allocating weights: shapes and counts only."""
    with torch.device("meta"):
        return cls(cls.Config(**params))


def test_registered_backbone_passes_the_contract() -> None:
    component = default_registry().get("backbone", "gcn.resnet")
    assert component.distribution == "ctxseg-gcn"
    assert component.load() is ResNetGCN
    check_component(component)  # ResNet-50, output stride 8, 8-channel GCN modules


def test_res4_and_res5_blocks_become_gcn_modules() -> None:
    net = on_meta(ResNetGCN)
    assert (net.channels, net.strides) == ({"c2": 256, "c3": 512, "c4": 1024, "c5": 2048},
                                           {"c2": 4, "c3": 8, "c4": 16, "c5": 32})  # undilated by default
    assert all(isinstance(b, Bottleneck) for b in [*net.layer1, *net.layer2])
    assert all(isinstance(b, GCNBottleneck) for b in [*net.layer3, *net.layer4])
    assert [len(stage) for stage in (net.layer3, net.layer4)] == [6, 3]
    assert {(b.left[0].kernel_size, b.left[0].out_channels) for b in net.layer3} == {((5, 1), 85)}
    assert {(b.left[0].kernel_size, b.left[0].out_channels) for b in net.layer4} == {((7, 1), 128)}


def test_the_gcn_module_has_bn_and_relu_after_each_conv() -> None:
    """Fig. 5 B: k x 1 / 1 x k and 1 x k / k x 1, each conv followed by BN and ReLU."""
    block = on_meta(ResNetGCN).layer4[1]
    for branch, shapes in ((block.left, [(7, 1), (1, 7)]), (block.right, [(1, 7), (7, 1)])):
        assert [type(m) for m in branch] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU] * 2
        assert [branch[0].kernel_size, branch[3].kernel_size] == shapes
        assert [(branch[i].in_channels, branch[i].out_channels) for i in (0, 3)] == [(2048, 128), (128, 128)]
    assert (block.conv3.in_channels, block.conv3.out_channels, block.conv3.kernel_size) == (128, 2048, (1, 1))
    assert block.downsample is None


def test_block_forward_is_gcn_then_1x1_plus_shortcut() -> None:
    torch.manual_seed(0)
    block = ResNetGCN(ResNetGCN.Config(widths=(8, 8))).layer3[0].eval()  # strided, projected shortcut
    x = torch.randn(2, 512, 9, 8)
    gcn = block.left(x) + block.right(x)
    expected = torch.relu(block.bn3(block.conv3(gcn)) + block.downsample(x))
    torch.testing.assert_close(block(x), expected)
    assert block(x).shape == (2, 1024, 5, 4)  # ceil(9 / 2), ceil(8 / 2), as the 3x3 it replaces


def bn(channels: int) -> int:
    return 2 * channels  # scale and shift


def bottleneck(in_channels: int, width: int, projected: bool) -> int:
    """1x1 in -> width, 3x3 width -> width, 1x1 width -> 4 width (no biases), a BN after
    each, and a 1x1 + BN projection on the shortcut of a stage's first block."""
    out = 4 * width
    shortcut = in_channels * out + bn(out) if projected else 0
    return in_channels * width + bn(width) + 9 * width * width + bn(width) + width * out + bn(out) + shortcut


def gcn_bottleneck(in_channels: int, width: int, k: int, out: int, projected: bool) -> int:
    """Fig. 5 B: two branches of (k x 1 or 1 x k, BN, 1 x k or k x 1, BN), then 1x1 width -> out and BN."""
    branch = in_channels * width * k + bn(width) + width * width * k + bn(width)
    shortcut = in_channels * out + bn(out) if projected else 0
    return 2 * branch + width * out + bn(out) + shortcut


# ResNet-50 (He et al., Table 1): stem, then (input channels, bottleneck width, blocks) per stage.
STEM = 7 * 7 * 3 * 64 + bn(64)
STAGES_50 = {"c2": (64, 64, 3), "c3": (256, 128, 4), "c4": (512, 256, 6), "c5": (1024, 512, 3)}


def stage(in_channels: int, width: int, blocks: int) -> int:
    return bottleneck(in_channels, width, True) + (blocks - 1) * bottleneck(4 * width, width, False)


def gcn_stage(in_channels: int, width: int, blocks: int, k: int, gcn_width: int) -> int:
    out = 4 * width
    return (gcn_bottleneck(in_channels, gcn_width, k, out, True)
            + (blocks - 1) * gcn_bottleneck(out, gcn_width, k, out, False))


def test_parameters_compared_with_resnet50() -> None:
    """"Similar [...] number of parameters" (Sec. 4.1.2); the paper gives no figure. Counted
    by hand from the blocks: ResNet-50 without its classifier, and ResNet50-GCN with
    res-4 (k = 5, 85 channels) and res-5 (k = 7, 128 channels) blocks: 87 % of it."""
    resnet50 = STEM + sum(stage(*s) for s in STAGES_50.values())
    assert resnet50 + 2048 * 1000 + 1000 == 25_557_032  # with the fc layer: torchvision's published count
    assert count(on_meta(ResNet, depth=50)) == resnet50
    assert count(on_meta(ResNet, depth=50).layer3[1]) == bottleneck(1024, 256, False)
    assert count(on_meta(ResNetGCN).layer3[1]) == gcn_bottleneck(1024, 85, 5, 1024, False)
    gcn50 = (STEM + stage(*STAGES_50["c2"]) + stage(*STAGES_50["c3"])
             + gcn_stage(*STAGES_50["c4"], k=5, gcn_width=85) + gcn_stage(*STAGES_50["c5"], k=7, gcn_width=128))
    assert count(on_meta(ResNetGCN)) == gcn50
    assert round(gcn50 / resnet50, 2) == 0.87


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_dilation_follows_the_built_in_resnet(output_stride: int) -> None:
    """Each GCN module strides and dilates as the 3x3 conv it replaces."""
    gcn, base = on_meta(ResNetGCN, output_stride=output_stride), on_meta(ResNet, depth=50, output_stride=output_stride)
    assert gcn.strides == base.strides
    for stage, reference in ((gcn.layer3, base.layer3), (gcn.layer4, base.layer4)):
        for block, original in zip(stage, reference):
            convs = [m for m in [*block.left, *block.right] if isinstance(m, nn.Conv2d)]
            assert {c.dilation for c in convs} == {original.conv2.dilation}
            assert [c.stride for c in convs] == [(1, 1), original.conv2.stride] * 2


def test_output_stride_8_shapes() -> None:
    torch.manual_seed(0)
    net = ResNetGCN(ResNetGCN.Config(output_stride=8, widths=(4, 4))).eval()
    with torch.no_grad():
        features = net(torch.randn(1, 3, 48, 40))
    assert {n: tuple(f.shape) for n, f in features.items()} == {
        "c2": (1, 256, 12, 10), "c3": (1, 512, 6, 5), "c4": (1, 1024, 6, 5), "c5": (1, 2048, 6, 5)}


def test_other_stages_and_sizes() -> None:
    net = on_meta(ResNetGCN, depth=101, stages=("c3", "c4", "c5"), kernels=(3, 5, 9), widths=(32, 64, 96))
    assert all(isinstance(b, Bottleneck) for b in net.layer1)
    assert [len(s) for s in (net.layer2, net.layer3, net.layer4)] == [4, 23, 3]
    assert {b.right[0].kernel_size for b in net.layer4} == {(1, 9)}
    assert {b.right[0].out_channels for b in net.layer2} == {32}


@pytest.mark.parametrize(("params", "message"), [
    ({"depth": 18}, r"'depth' must be in \(50, 101, 152\) \(got 18\)"),
    ({"stages": ["c4"]}, r"'stages', 'kernels' and 'widths' need one entry per stage, got 1, 2 and 2"),
    ({"kernels": [4, 7]}, r"'kernels' must be an odd kernel size in \[1, 255\], got 4"),
    ({"stages": ["c5", "c5"]}, r"'stages' lists a stage twice: \['c5', 'c5'\]"),
    ({"stages": ["c1", "c5"]}, r"'stages' must be in \('c2', 'c3', 'c4', 'c5'\) \(got 'c1'\)"),
])
def test_bad_settings_name_the_key(params: dict, message: str) -> None:
    with pytest.raises(SpecError, match=rf"spec.toml: model.backbone: {message}"):
        structure(params, ResNetGCN.Config, source="spec.toml", path="model.backbone")


def test_a_resnet_gcn_checkpoint_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = ResNetGCN.Config(widths=(4, 4))
    state = {name: t + torch.rand_like(t) if t.is_floating_point() else t
             for name, t in ResNetGCN(config).state_dict().items()}
    path = tmp_path / "resnet50_gcn.safetensors"
    safetensors.torch.save_file({**state, "fc.weight": torch.randn(1000, 2048)}, str(path))
    loaded = ResNetGCN(ResNetGCN.Config(widths=(4, 4), pretrained=str(path))).state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[name], state[name]) for name in state)
