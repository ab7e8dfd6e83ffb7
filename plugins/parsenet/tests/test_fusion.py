"""ParseNetFusion (Sec. 3.2-3.3, Tables 4-7): early and late fusion of layers and pool6."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from ctxseg.errors import SpecError
from ctxseg.registry import default_registry
from ctxseg.spec import spec_from_dict
from ctxseg.testing import check_component, check_fusion
from ctxseg_parsenet.fusion import ParseNetFusion

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability

VARIANTS = [
    {"mode": mode, "normalize": normalize, "global_context": context}
    for mode, normalize, context in itertools.product(("early", "late"), (True, False), (True, False))
]


def test_registered_contract() -> None:
    check_component(default_registry().get("fusion", "parsenet.fusion"))


@pytest.mark.parametrize("config", [*VARIANTS, {"projection": 5}, {"projection": 5, "normalize": False}],
                         ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_contract(config: dict) -> None:
    check_fusion(ParseNetFusion, config)


def _upsample(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _l2(x: torch.Tensor, scale: float = 10.0) -> torch.Tensor:
    return scale * x / x.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("normalize", [True, False])
def test_late_fusion_is_the_sum_of_per_input_classifier_scores(normalize: bool) -> None:
    """Sec. 3.2: each feature learns its own classifier; the scores are merged by summing."""
    config = ParseNetFusion.Config(mode="late", normalize=normalize, global_context=True)
    fusion = ParseNetFusion(config, in_channels=[3, 5], strides=[4, 8], num_classes=4).eval()
    assert fusion.emits_scores and fusion.out_channels == 4
    conv4, fc7 = torch.randn(2, 3, 8, 6), torch.randn(2, 5, 4, 3)
    prepare = _l2 if normalize else (lambda x: x)
    pool6 = fc7.mean((2, 3), keepdim=True)
    expected = (fusion.classifiers[0](prepare(conv4))
                + _upsample(fusion.classifiers[1](prepare(fc7)), (8, 6))
                + fusion.global_classifier(prepare(pool6)).expand(-1, -1, 8, 6))  # (2, 4, 8, 6)
    torch.testing.assert_close(fusion([conv4, fc7]), expected)


def test_classifying_then_upsampling_equals_upsampling_then_classifying() -> None:
    """Why late fusion may classify at each input's own resolution (see the module docstring)."""
    classify = torch.nn.Conv2d(5, 4, 1)
    x = torch.randn(2, 5, 4, 3)
    torch.testing.assert_close(_upsample(classify(x), (8, 6)), classify(_upsample(x, (8, 6))))


def test_early_fusion_concatenates_normalized_inputs_and_pool6_at_the_finest_resolution() -> None:
    fusion = ParseNetFusion(ParseNetFusion.Config(scale=20.0), in_channels=[3, 5], strides=[4, 8], num_classes=4)
    assert not fusion.emits_scores
    conv4, fc7 = torch.randn(2, 3, 8, 6), torch.randn(2, 5, 4, 3)
    out = fusion([conv4, fc7])
    assert out.shape == (2, 3 + 5 + 5, 8, 6)
    torch.testing.assert_close(out[:, :3], _l2(conv4, 20.0))
    torch.testing.assert_close(out[:, 3:8], _upsample(_l2(fc7, 20.0), (8, 6)))
    torch.testing.assert_close(out[:, 8:], _l2(fc7.mean((2, 3), keepdim=True), 20.0).expand(-1, -1, 8, 6))


@pytest.mark.parametrize(("inputs", "global_context", "channels"), [
    (["fc7"], False, 1024),  # Table 6, "fc7 Y": fc7 normalized alone
    (["fc7"], True, 2 * 1024),  # Table 6, "pool6 + fc7"
    (["conv5_3", "fc7"], True, 512 + 2 * 1024),  # Table 4, "+ conv5"
    (["conv4_3", "conv5_3", "fc7"], True, 512 + 512 + 2 * 1024),  # Table 4, "+ conv4"
    (["conv3_3", "conv4_3", "conv5_3", "fc7"], True, 256 + 512 + 512 + 2 * 1024),  # Table 4, "+ conv3"
])
def test_early_fusion_channels_of_the_table_4_and_6_combinations(inputs, global_context, channels) -> None:
    widths = {"conv3_3": 256, "conv4_3": 512, "conv5_3": 512, "fc7": 1024}
    strides = {"conv3_3": 4, "conv4_3": 8, "conv5_3": 8, "fc7": 8}
    config = ParseNetFusion.Config(global_context=global_context)
    fusion = ParseNetFusion(config, [widths[n] for n in inputs], [strides[n] for n in inputs], num_classes=21)
    assert fusion.out_channels == channels
    # One gamma per channel of every normalized feature, pool6 included (Sec. 3.3).
    assert sum(p.numel() for p in fusion.parameters()) == channels


def test_projection_is_a_1x1_conv_and_relu_after_concatenating() -> None:
    """Table 7's "1x1 conv" column."""
    fusion = ParseNetFusion(ParseNetFusion.Config(projection=7), in_channels=[5], strides=[8], num_classes=3)
    assert fusion.out_channels == 7
    fc7 = torch.randn(2, 5, 4, 4)
    conv = fusion.project[0]
    assert conv.kernel_size == (1, 1) and conv.in_channels == 10
    combined = torch.cat([_l2(fc7), _l2(fc7.mean((2, 3), keepdim=True)).expand(-1, -1, 4, 4)], 1)
    torch.testing.assert_close(fusion([fc7]), torch.relu(conv(combined)))


def test_pool6_is_taken_from_the_last_input() -> None:
    fusion = ParseNetFusion(ParseNetFusion.Config(normalize=False), in_channels=[2, 3], strides=[8, 8], num_classes=2)
    first, last = torch.randn(1, 2, 4, 4), torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(fusion([first, last])[:, 5:, 0, 0], last.mean((2, 3)))


@pytest.mark.parametrize(("table", "message"), [
    ({"mode": "late", "projection": 8}, "spec.toml: model.fusion: 'projection' (a 1x1 conv on the concatenated "
                                        "features) needs mode = 'early'"),
    ({"mode": "middle"}, "spec.toml: model.fusion.mode: expected one of 'early', 'late'"),
    ({"scale": 0.0}, "spec.toml: model.fusion: 'scale' must be > 0.0: 0.0"),
])
def test_spec_errors_name_the_key(table: dict, message: str) -> None:
    spec = {"model": {"backbone": {"name": "base.vgg16"},
                      "fusion": {"name": "parsenet.fusion", "inputs": ["pool5"], **table}}}
    with pytest.raises(SpecError) as error:
        spec_from_dict(spec, source="spec.toml")
    assert message in str(error.value)
