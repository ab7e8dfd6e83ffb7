"""The GCN pipeline (Sec. 3.2, Fig. 2 A): contract, wiring, resolution, deconvolution init, stride errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ctxseg.errors import SpecError
from ctxseg.model import SegmentationModel
from ctxseg.registry import default_registry
from ctxseg.spec import spec_from_dict
from ctxseg.testing import check_component, check_fusion
from ctxseg_gcn.boundary_refinement import BoundaryRefinement
from ctxseg_gcn.fusion import GCNFusion
from ctxseg_gcn.global_convolution import GlobalConvolution

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability

RESNET18 = [64, 128, 256, 512]  # c2..c5
STRIDES = [4, 8, 16, 32]


def fusion(in_channels: list[int] = RESNET18, strides: list[int] = STRIDES, num_classes: int = 3,
           **params) -> GCNFusion:
    return GCNFusion(GCNFusion.Config(**params), in_channels, strides, num_classes)


def features(size: tuple[int, int], in_channels: list[int] = RESNET18, strides: list[int] = STRIDES) -> list:
    """Maps as a ResNet gives them for an image of ``size`` (ceil division, as its strided convs)."""
    return [torch.randn(2, c, -(-size[0] // s), -(-size[1] // s)) for c, s in zip(in_channels, strides)]


def test_registered_fusion_passes_the_contract() -> None:
    component = default_registry().get("fusion", "gcn.fusion")
    assert component.distribution == "ctxseg-gcn"
    assert component.load() is GCNFusion
    check_component(component)


@pytest.mark.parametrize("params", [
    {"head": "conv1x1", "refine": False},
    {"head": "conv_kxk", "kernel": 3},
    {"head": "stack3x3", "kernel": 5, "stack_channels": 3},
    {"head": "gcn", "kernel": 3, "refine": False, "deconv_init": "random"},
], ids=["conv1x1", "conv_kxk", "stack3x3", "gcn_no_br_random"])
def test_variants_pass_the_contract(params: dict) -> None:
    check_fusion(GCNFusion, params, max_examples=4)


def test_defaults_are_the_papers_final_model() -> None:
    config = GCNFusion.Config()
    assert (config.head, config.kernel, config.refine) == ("gcn", 15, True)  # Table 1's best k, Table 5's GCN + BR
    assert config.deconv_init == "bilinear"


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (65, 70)])
def test_output_has_the_input_resolution(size: tuple[int, int]) -> None:
    """Scores at stride 1: the image's size when it is a multiple of the coarsest stride,
    else the finest input's size times its stride (the model resizes that to the image)."""
    torch.manual_seed(0)
    gcn = fusion(kernel=7)
    assert gcn.emits_scores and gcn.out_channels == 3 and gcn.out_stride == 1
    maps = features(size)
    out = gcn(maps)
    assert out.shape == (2, 3, maps[0].shape[-2] * 4, maps[0].shape[-1] * 4)
    if size[0] % 32 == 0 and size[1] % 32 == 0:
        assert out.shape[-2:] == size


def test_nine_boundary_refinements_and_five_deconvolutions_for_c2_to_c5() -> None:
    """Fig. 2 A: a BR per stage, after each of the three sums and after the two last deconvolutions."""
    gcn = fusion()
    assert gcn.levels == [32, 16, 8, 4, 2, 1]
    assert sum(isinstance(m, BoundaryRefinement) for m in gcn.modules()) == 9
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in gcn.modules()) == 5
    assert all(isinstance(h, GlobalConvolution) for h in gcn.heads)
    assert not any(isinstance(m, BoundaryRefinement) for m in fusion(refine=False).modules())  # Tables 1-4


def test_coarse_to_fine_wiring() -> None:
    """Without BR: ``up(up(up(up(up(S5) + S4) + S3) + S2))`` with S_i the score head of c_i,
    whatever order the spec lists the inputs in."""
    torch.manual_seed(0)
    config = GCNFusion.Config(head="conv1x1", refine=False, deconv_init="random")
    gcn = GCNFusion(config, RESNET18, STRIDES, 3)
    maps = features((64, 64))
    up = list(gcn.upsample)
    scores = [head(x) for head, x in zip(gcn.heads, maps)]  # c2..c5
    x = up[2](up[1](up[0](scores[3]) + scores[2]) + scores[1]) + scores[0]
    expected = up[4](up[3](x))
    torch.testing.assert_close(gcn(maps), expected)

    shuffled = GCNFusion(config, RESNET18[::-1], STRIDES[::-1], 3)  # c5..c2
    state = {name: tensor for name, tensor in gcn.state_dict().items() if not name.startswith("heads.")}
    for i, head in enumerate(gcn.heads):
        state.update({f"heads.{3 - i}.{name}": tensor for name, tensor in head.state_dict().items()})
    shuffled.load_state_dict(state)
    torch.testing.assert_close(shuffled(maps[::-1]), expected)


def test_bilinear_init_is_bilinear_upsampling_inside() -> None:
    gcn = fusion(num_classes=4)
    deconv = gcn.upsample[0]
    x = torch.randn(2, 4, 6, 5)
    out = deconv(x)  # (2, 4, 12, 10)
    bilinear = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[..., 1:-1, 1:-1], bilinear[..., 1:-1, 1:-1])
    assert deconv.weight[0, 1].abs().sum() == 0  # each class map on its own at the start
    assert deconv.bias is None


def test_inputs_at_one_stride_are_summed_then_refined() -> None:
    """A dilated backbone's c4 and c5 share stride 8: no deconvolution between them."""
    gcn = fusion(in_channels=[4, 6, 8], strides=[4, 8, 8], kernel=3)
    assert gcn.levels == [8, 4, 2, 1] and len(gcn.upsample) == 3
    assert isinstance(gcn.refine[0], BoundaryRefinement)  # after the sum at stride 8
    assert gcn(features((32, 32), [4, 6, 8], [4, 8, 8])).shape == (2, 3, 32, 32)
    assert isinstance(fusion(in_channels=[4], strides=[4]).refine[0], nn.Identity)  # nothing summed


def test_a_skipped_stride_gets_two_deconvolutions() -> None:
    gcn = fusion(in_channels=[4, 6], strides=[2, 8], kernel=3)
    assert gcn.levels == [8, 4, 2, 1] and gcn.inputs_at == {8: [1], 4: [], 2: [0], 1: []}
    assert gcn(features((16, 24), [4, 6], [2, 8])).shape == (2, 3, 16, 24)


@pytest.mark.parametrize(("strides", "message"), [
    ([4, 12], r"input strides \[4, 12\] are not powers of two apart \(12 / 4 = 3\)"),
    ([8, 4, 6], r"input strides \[8, 4, 6\] are not powers of two apart \(6 / 4 = 1.5\)"),
    ([3, 6], r"the finest input stride 3 \(strides \[3, 6\]\) is not a power of two"),
])
def test_strides_not_powers_of_two_apart_are_a_clear_error(strides: list[int], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        fusion(in_channels=[4] * len(strides), strides=strides)


def test_a_resnet18_model_scores_at_full_resolution() -> None:
    """The whole model: undilated ResNet-18, c2..c5 fused, no classifier; 64 x 64 in and out."""
    spec = spec_from_dict({"model": {
        "backbone": {"name": "base.resnet", "depth": 18, "output_stride": 32},
        "fusion": {"name": "gcn.fusion", "inputs": ["c2", "c3", "c4", "c5"], "kernel": 15},
    }}).model
    torch.manual_seed(0)
    model = SegmentationModel(spec, num_classes=5, pretrained=False)
    assert model.output_stride == 1 and isinstance(model.classifier, nn.Identity)
    images = torch.randn(2, 3, 64, 64)
    features_ = model.backbone(images)
    assert model.fusion([features_[n] for n in model.fusion_inputs]).shape == (2, 5, 64, 64)  # no resize needed
    assert model(images)["out"].shape == (2, 5, 64, 64)
