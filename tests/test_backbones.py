"""The built-in torchvision backbones: declared shapes, parameter counts, dilation and
ImageNet checkpoint loading (checkpoints are written by the tests from torchvision
models, since none can be downloaded here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch
import torchvision
from torch import Tensor, nn

from ctxseg.builtin.resnet import ResNet
from ctxseg.builtin.vgg import VGG16
from ctxseg.errors import WeightsError
from ctxseg.interfaces import Backbone

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability

# torchvision's published ``num_params`` of the ImageNet classifiers (head included).
RESNET_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}
VGG16_PARAMS, VGG16_FEATURE_PARAMS = 138_357_544, 14_714_688

STRIDES = {8: [4, 8, 8, 8], 16: [4, 8, 16, 16], 32: [4, 8, 16, 32]}
"""Strides of the four outputs per output stride; ResNet's c2..c5 and VGG's conv3_3..pool5 agree."""


def forward(backbone: nn.Module, height: int, width: int) -> dict[str, Tensor]:
    torch.manual_seed(0)
    with torch.no_grad():
        return backbone.eval()(torch.randn(1, 3, height, width))


def assert_declared_shapes(backbone: Backbone, height: int, width: int) -> None:
    outputs = forward(backbone, height, width)
    assert list(outputs) == list(backbone.channels) == list(backbone.strides)
    for name, features in outputs.items():
        stride = backbone.strides[name]
        assert features.shape == (1, backbone.channels[name], height // stride, width // stride), name


def count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def randomize_batch_norm(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-default statistics, so that loading them is actually tested."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.normal_(1.0, 0.1)
            module.bias.data.normal_()
    return model.eval()


def save(state: dict[str, Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(state, path)
    else:
        torch.save(state, path)
    return path


# --- ResNet ---------------------------------------------------------------------------


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_resnet_declares_its_output_shapes(depth: int, output_stride: int) -> None:
    backbone = ResNet(ResNet.Config(depth=depth, output_stride=output_stride))
    width = 512 if depth < 50 else 2048
    assert isinstance(backbone, Backbone) and backbone.deepest == "c5"
    assert backbone.channels == {"c2": width // 8, "c3": width // 4, "c4": width // 2, "c5": width}
    assert list(backbone.strides.values()) == STRIDES[output_stride]
    # The deepest nets only on the smallest input a stride of 32 allows, to keep the file fast.
    assert_declared_shapes(backbone, *((64, 96) if depth <= 50 else (32, 64)))


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_resnet_parameters_are_torchvision_minus_the_classifier(depth: int) -> None:
    with torch.device("meta"):  # counting needs no values: building on meta is instant
        reference = getattr(torchvision.models, f"resnet{depth}")()
        counts = {os: count(ResNet(ResNet.Config(depth=depth, output_stride=os))) for os in (8, 16, 32)}
    assert count(reference) == RESNET_PARAMS[depth]
    head = reference.fc.in_features * 1000 + 1000
    assert count(reference.fc) == head
    assert set(counts.values()) == {RESNET_PARAMS[depth] - head}  # dilation adds no parameter


@pytest.mark.parametrize("output_stride", [8, 32])
@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_initialises_as_torchvision_draw_for_draw(depth: int, output_stride: int) -> None:
    """A seed gives the weights torchvision's builder gives (dilation draws nothing), so runs
    keep reproducing across the move from torchvision's ResNet to ctxseg's own."""
    torch.manual_seed(7)
    ours = ResNet(ResNet.Config(depth=depth, output_stride=output_stride)).state_dict()
    torch.manual_seed(7)
    reference = getattr(torchvision.models, f"resnet{depth}")().state_dict()
    assert list(ours) == [k for k in reference if not k.startswith("fc.")]
    assert all(torch.equal(tensor, reference[k]) for k, tensor in ours.items())


@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_deep_stem_is_resnet_c(depth: int) -> None:
    """``stem = "deep"``: three 3x3 conv-BN-ReLU (32, 32, 64; the first at stride 2) replace
    the 7x7 conv, and nothing after them changes (MMSegmentation's ResNetV1c)."""
    standard = ResNet(ResNet.Config(depth=depth))
    deep = ResNet(ResNet.Config(depth=depth, stem="deep"))
    convs = [m for m in deep.stem if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 32, (3, 3), (2, 2)), (32, 32, (3, 3), (1, 1)), (32, 64, (3, 3), (1, 1))]
    assert not hasattr(deep, "conv1") and not hasattr(deep, "bn1")
    stem_params = 9 * (3 * 32 + 32 * 32 + 32 * 64) + 2 * (32 + 32 + 64)
    assert count(deep) - count(standard) == stem_params - (7 * 7 * 3 * 64 + 2 * 64)
    assert deep.channels == standard.channels and deep.strides == standard.strides
    assert_declared_shapes(deep, 64, 96)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_resnet50_dilation_is_torchvisions(output_stride: int) -> None:
    dilate = [False, output_stride == 8, True]
    reference = randomize_batch_norm(torchvision.models.resnet50(replace_stride_with_dilation=dilate))
    backbone = ResNet(ResNet.Config(depth=50, output_stride=output_stride))
    backbone.load_state_dict({k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")})
    trunk = nn.Sequential(*list(reference.children())[:-2])  # up to layer4
    assert torch.equal(forward(backbone, 64, 64)["c5"], forward(trunk, 64, 64))


def test_resnet18_dilation_convention() -> None:
    """A 3x3 conv is dilated as the grid it ran on: the strided conv keeps the previous dilation."""
    backbone = ResNet(ResNet.Config(depth=18, output_stride=8))
    dilations = {
        name: conv.dilation[0]
        for name, conv in backbone.named_modules()
        if name.startswith(("layer3", "layer4")) and isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)
    }
    assert dilations == {
        "layer3.0.conv1": 1, "layer3.0.conv2": 2, "layer3.1.conv1": 2, "layer3.1.conv2": 2,
        "layer4.0.conv1": 2, "layer4.0.conv2": 4, "layer4.1.conv1": 4, "layer4.1.conv2": 4,
    }  # fmt: skip
    assert all(conv.stride == (1, 1) for conv in backbone.layer4.modules() if isinstance(conv, nn.Conv2d))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize("depth", [18, 50])
def test_resnet_loads_a_torchvision_checkpoint(depth: int, suffix: str, tmp_path: Path) -> None:
    reference = randomize_batch_norm(getattr(torchvision.models, f"resnet{depth}")())
    path = save(reference.state_dict(), tmp_path / f"resnet{depth}{suffix}")
    backbone = ResNet(ResNet.Config(depth=depth, output_stride=32, pretrained=str(path)))
    trunk = nn.Sequential(*list(reference.children())[:-2])
    assert torch.equal(forward(backbone, 64, 64)["c5"], forward(trunk, 64, 64))


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, Tensor]:
    return randomize_batch_norm(torchvision.models.resnet18()).state_dict()


def test_a_checkpoint_without_batch_norm_counters_loads(
    resnet18_state: dict[str, Tensor], tmp_path: Path
) -> None:
    """torchvision's original ImageNet files predate ``num_batches_tracked``."""
    state = {k: v for k, v in resnet18_state.items() if not k.endswith("num_batches_tracked")}
    backbone = ResNet(ResNet.Config(depth=18, pretrained=str(save(state, tmp_path / "old.pth"))))
    assert torch.equal(backbone.layer4[1].bn2.running_var, resnet18_state["layer4.1.bn2.running_var"])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("layer1.0.conv1.weight"), "missing tensors: layer1.0.conv1.weight"),
        (
            lambda s: s.update({"layer5.0.conv1.weight": torch.zeros(1)}),
            "unexpected tensors: layer5.0.conv1.weight",
        ),
        (
            lambda s: s.update({"conv1.weight": torch.zeros(64, 3, 3, 3)}),
            "mis-shaped tensors: conv1.weight (file (64, 3, 3, 3), model (64, 3, 7, 7))",
        ),
    ],
    ids=["missing", "unexpected", "mis-shaped"],
)
def test_a_mismatched_checkpoint_names_the_tensors(
    resnet18_state: dict[str, Tensor], edit, message: str, suffix: str, tmp_path: Path
) -> None:
    state = dict(resnet18_state)
    edit(state)
    path = save(state, tmp_path / f"bad{suffix}")
    with pytest.raises(WeightsError) as error:
        ResNet(ResNet.Config(depth=18, pretrained=str(path)))
    assert str(error.value) == f"{path} does not match ResNet: {message}"


def test_a_wrong_depth_checkpoint_lists_ten_names_and_counts_the_rest(tmp_path: Path) -> None:
    path = save(torchvision.models.resnet34().state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(WeightsError, match=r"unexpected tensors: layer1\.2\.conv1\.weight, .* and \d+ more$"):
        ResNet(ResNet.Config(depth=18, pretrained=str(path)))


class _Pickled:
    """Not a tensor: ``weights_only`` loading refuses to run its unpickling."""


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("garbage.pth", b"not a checkpoint", "cannot read weights file"),
        ("garbage.safetensors", b"not a checkpoint", "cannot read weights file"),
        ("absent.pth", None, "cannot read weights file"),
        ("code.pth", _Pickled(), "cannot read weights file"),
        ("list.pth", [torch.zeros(1)], "is not a state dict"),
    ],
)
def test_an_unreadable_checkpoint_is_named(name: str, content: object, message: str, tmp_path: Path) -> None:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(WeightsError, match=message) as error:
        ResNet(ResNet.Config(depth=18, pretrained=str(path)))
    assert str(path) in str(error.value)


def test_configs_reject_unsupported_values() -> None:
    with pytest.raises(ValueError, match="depth"):
        ResNet.Config(depth=20)
    with pytest.raises(ValueError, match="output_stride"):
        ResNet.Config(output_stride=4)
    with pytest.raises(ValueError, match="output_stride"):
        VGG16.Config(output_stride=64)


# --- VGG-16 ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_vgg16_declares_its_output_shapes(output_stride: int, batch_norm: bool) -> None:
    backbone = VGG16(VGG16.Config(output_stride=output_stride, batch_norm=batch_norm))
    assert isinstance(backbone, Backbone) and backbone.deepest == "pool5"
    assert backbone.channels == {"conv3_3": 256, "conv4_3": 512, "conv5_3": 512, "pool5": 512}
    assert list(backbone.strides.values()) == STRIDES[output_stride]
    assert_declared_shapes(backbone, 64, 96)


def test_vgg16_output_stride_8_is_deeplabs() -> None:
    """pool4 and pool5 keep the size (3x3, stride 1, padding 1); conv5_x are dilated by 2."""
    features = VGG16(VGG16.Config(output_stride=8)).features
    pools = [layer for layer in features if isinstance(layer, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(2, 2, 0)] * 3 + [(3, 1, 1)] * 2
    convs = [layer for layer in features if isinstance(layer, nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3
    assert all(c.padding == c.dilation for c in convs)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg16_parameters_are_torchvisions_features(batch_norm: bool) -> None:
    with torch.device("meta"):
        reference = (torchvision.models.vgg16_bn if batch_norm else torchvision.models.vgg16)()
        counts = {
            os: count(VGG16(VGG16.Config(output_stride=os, batch_norm=batch_norm))) for os in (8, 16, 32)
        }
    if not batch_norm:
        assert (count(reference), count(reference.features)) == (VGG16_PARAMS, VGG16_FEATURE_PARAMS)
    assert count(reference) == count(reference.features) + count(reference.classifier)
    assert set(counts.values()) == {count(reference.features)}


@pytest.fixture(scope="module")
def vgg16() -> nn.Module:
    return torchvision.models.vgg16().eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_vgg16_loads_a_torchvision_checkpoint(vgg16: nn.Module, suffix: str, tmp_path: Path) -> None:
    path = str(save(vgg16.state_dict(), tmp_path / f"vgg16{suffix}"))
    backbone = VGG16(VGG16.Config(output_stride=32, pretrained=path))
    outputs = forward(backbone, 64, 64)
    assert torch.equal(outputs["pool5"], forward(vgg16.features, 64, 64))
    assert torch.equal(outputs["conv4_3"], forward(vgg16.features[:23], 64, 64))
    # Output stride 16 only turns pool5 into a stride-1 pool: conv5_3 is unchanged.
    os16 = VGG16(VGG16.Config(output_stride=16))
    os16.load_state_dict(backbone.state_dict())
    assert torch.equal(forward(os16, 64, 64)["conv5_3"], forward(vgg16.features[:30], 64, 64))

