"""The pyramid pooling head (PSPNet Sec. 3.2, Fig. 3, Table 1): contract, paper sizes, pooling semantics."""

from __future__ import annotations

import pytest
import torch

from ctxseg.errors import SpecError
from ctxseg.registry import default_registry
from ctxseg.spec.convert import structure
from ctxseg.testing import check_component, check_context_head
from ctxseg_pspnet.pyramid_pooling import PyramidPooling

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def head(in_channels: int = 4, **params) -> PyramidPooling:
    return PyramidPooling(PyramidPooling.Config(**{"channels": 6, **params}), in_channels, num_classes=3)


def test_registered_head_passes_the_contract() -> None:
    component = default_registry().get("context_head", "pspnet.pyramid_pooling")
    assert component.distribution == "ctxseg-pspnet"
    assert component.load() is PyramidPooling
    check_component(component)


@pytest.mark.parametrize(
    "params",
    [{"pooling": "max"}, {"reduction": False}, {"align_corners": False}, {"bins": [1]}, {"bins": [6, 3]}],
    ids=["max", "no_reduction", "align_corners_false", "b1", "b63"],
)
def test_variants_pass_the_contract(params: dict) -> None:
    check_context_head(PyramidPooling, {"channels": 5, **params}, max_examples=4)


def test_paper_defaults() -> None:
    config = PyramidPooling.Config()
    assert config.bins == (1, 2, 3, 6)  # Sec. 3.2
    assert config.pooling == "avg" and config.reduction  # Table 1's best: B1236+AVE+DR
    assert (config.channels, config.dropout, config.align_corners) == (512, 0.1, True)  # the authors' models


def test_parameter_count_of_the_paper_setting() -> None:
    """ResNet's 2048-channel c5, four levels reduced to 2048 / 4 = 512 each, 3x3 conv to 512."""
    with torch.device("meta"):
        psp = PyramidPooling(PyramidPooling.Config(), in_channels=2048, num_classes=150)
    level = 2048 * 512 + 2 * 512  # 1x1 conv without bias, BN weight and bias
    conv = (2048 + 4 * 512) * 512 * 3 * 3 + 2 * 512  # 3x3 conv on the 4096-channel concat, BN
    assert psp.pyramid_channels == 4096
    assert count(psp) == 4 * level + conv == 23_073_792


def test_without_reduction_the_levels_keep_full_width() -> None:
    with torch.device("meta"):
        psp = PyramidPooling(PyramidPooling.Config(reduction=False), in_channels=2048, num_classes=150)
    assert psp.pyramid_channels == psp.conv[0].in_channels == 2048 * 5
    assert count(psp) == 2048 * 5 * 512 * 3 * 3 + 2 * 512  # the levels have no parameters
    x = torch.randn(2, 4, 5, 7)
    assert head(reduction=False).pyramid(x).shape == (2, 4 * 5, 5, 7)


def test_reduction_is_clamped_to_one_channel() -> None:
    psp = head(in_channels=2)  # 2 // 4 levels = 0 -> 1
    assert [level.out_channels for level in psp.levels] == [1, 1, 1, 1]
    assert psp.pyramid(torch.randn(2, 2, 3, 3)).shape == (2, 2 + 4, 3, 3)


def test_max_and_average_pooling_differ() -> None:
    torch.manual_seed(0)
    avg = head(pooling="avg").eval()
    mx = head(pooling="max").eval()
    mx.load_state_dict(avg.state_dict())  # pooling has no parameters: only the operation differs
    x = torch.randn(2, 4, 6, 6)
    assert not torch.allclose(avg.pyramid(x), mx.pyramid(x))
    assert not torch.allclose(avg(x), mx(x))
    no_dr = head(pooling="max", reduction=False, bins=[1]).pyramid(x)[:, 4:, 0, 0]
    torch.testing.assert_close(no_dr, x.amax(dim=(2, 3)))


@pytest.mark.parametrize("align_corners", [True, False])
def test_the_global_level_is_constant_over_space(align_corners: bool) -> None:
    x = torch.randn(2, 4, 5, 7)
    reduced = head(bins=[1], align_corners=align_corners).eval().pyramid(x)[:, 4:]  # (2, 4, 5, 7)
    torch.testing.assert_close(reduced, reduced[:, :, :1, :1].expand_as(reduced))  # up to rounding
    full = head(bins=[1], reduction=False, align_corners=align_corners).pyramid(x)[:, 4:]
    torch.testing.assert_close(full, x.mean(dim=(2, 3), keepdim=True).expand_as(full))


def test_the_global_level_sees_every_input_pixel() -> None:
    """One output pixel of a B1 head depends on the whole map of its sample, not only on
    the 3x3 conv's neighbourhood; the other sample of the batch is untouched."""
    torch.manual_seed(0)
    psp = head(bins=[1]).eval()
    x = torch.randn(2, 4, 9, 9, requires_grad=True)
    psp(x)[0, :, 0, 0].sum().backward()
    assert (x.grad[0].abs() > 0).all()
    assert (x.grad[1] == 0).all()


def test_any_size_down_to_one_pixel() -> None:
    psp = head()
    assert psp.train()(torch.randn(2, 4, 1, 1)).shape == (2, 6, 1, 1)
    assert psp.eval()(torch.randn(1, 4, 1, 1)).shape == (1, 6, 1, 1)
    assert psp.eval()(torch.randn(1, 4, 2, 13)).shape == (1, 6, 2, 13)


def test_training_needs_two_samples_for_the_global_levels_batch_norm() -> None:
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        head().train()(torch.randn(1, 4, 8, 8))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bins": []}, r"model\.context: Length of 'bins' must be >= 1"),
        ({"bins": [1, 0]}, r"model\.context: 'bins' must be > 0"),
        ({"bins": [1, 2.5]}, r"model\.context\.bins\[1\]: expected an integer"),
        ({"pooling": "mean"}, r"model\.context\.pooling: expected one of 'avg', 'max'"),
        ({"channels": 0}, r"model\.context: 'channels' must be a channel count in \[1, 65536\], got 0"),
    ],
)
def test_bad_parameters_name_the_toml_path(params: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        structure(params, PyramidPooling.Config, source="spec.toml", path="model.context")
