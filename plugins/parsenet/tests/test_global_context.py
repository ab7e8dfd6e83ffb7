"""GlobalContext (ParseNet Sec. 3.1-3.3, Fig. 1): pool6 unpooled beside the local features."""

from __future__ import annotations

import pytest
import torch

from ctxseg.registry import default_registry
from ctxseg.testing import check_component, check_context_head
from ctxseg_parsenet.global_context import GlobalContext

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


def test_contract() -> None:
    check_component(default_registry().get("context_head", "parsenet.global_context"))
    check_context_head(GlobalContext, {"normalize": False})
    check_context_head(GlobalContext, {"scale": 1.0})


def test_pooled_half_is_the_normalized_image_average_at_every_position() -> None:
    x = torch.randn(2, 6, 5, 7)
    out = GlobalContext(GlobalContext.Config(scale=10.0), in_channels=6, num_classes=3)(x)
    assert out.shape == (2, 12, 5, 7)
    local, context = out[:, :6], out[:, 6:]
    torch.testing.assert_close(local, 10.0 * x / x.norm(dim=1, keepdim=True))
    assert (context == context[:, :, :1, :1]).all()  # replicated: spatially constant, exactly
    mean = x.mean((2, 3))  # (B, C), pool6
    torch.testing.assert_close(context[:, :, 0, 0], 10.0 * mean / mean.norm(dim=1, keepdim=True))


def test_without_normalization_it_concatenates_the_raw_features() -> None:
    x = torch.randn(1, 3, 4, 4) * 100
    head = GlobalContext(GlobalContext.Config(normalize=False), in_channels=3, num_classes=2)
    expected = torch.cat([x, x.mean((2, 3), keepdim=True).expand(-1, -1, 4, 4)], 1)
    torch.testing.assert_close(head(x), expected)
    assert not list(head.parameters())


@pytest.mark.parametrize("scale", [1.0, 10.0, 20.0])
def test_declared_channels_and_one_scale_per_channel(scale: float) -> None:
    """out_channels = 2C; the extra parameters are one gamma per channel of each part (Sec. 3.3)."""
    head = GlobalContext(GlobalContext.Config(scale=scale), in_channels=1024, num_classes=21)
    assert head.out_channels == 2048
    assert sum(p.numel() for p in head.parameters()) == 2048
    assert all((p == scale).all() for p in head.parameters())


def test_context_depends_on_the_whole_image() -> None:
    """A change in one corner reaches the output at the opposite corner (global receptive field)."""
    x = torch.randn(1, 4, 9, 9, requires_grad=True)
    GlobalContext(GlobalContext.Config(), in_channels=4, num_classes=2)(x)[0, :, 8, 8].sum().backward()
    assert (x.grad[0, :, 0, 0] != 0).any()
