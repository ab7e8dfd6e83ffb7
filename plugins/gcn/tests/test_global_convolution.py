"""The GCN block (Sec. 3.1, Fig. 2 B): contract, separable large kernel, linearity, k x k receptive field."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctxseg.registry import default_registry
from ctxseg.testing import check_component, check_context_head
from ctxseg_gcn.global_convolution import GlobalConvolution

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


def gcn(in_channels: int = 4, num_classes: int = 3, **params) -> GlobalConvolution:
    return GlobalConvolution(GlobalConvolution.Config(**params), in_channels, num_classes)


def test_registered_head_passes_the_contract() -> None:
    component = default_registry().get("context_head", "gcn.global_convolution")
    assert component.distribution == "ctxseg-gcn"
    assert component.load() is GlobalConvolution
    check_component(component)


@pytest.mark.parametrize("params", [{"kernel": 1}, {"kernel": 15}, {"kernel": 3, "channels": 5}],
                         ids=["k1", "k15", "channels5"])
def test_variants_pass_the_contract(params: dict) -> None:
    check_context_head(GlobalConvolution, params, max_examples=4)


def test_defaults_and_shapes() -> None:
    assert GlobalConvolution.Config().kernel == 15  # Table 1's best
    block = gcn(in_channels=6, num_classes=4, kernel=7)
    assert block.out_channels == 4  # class score maps
    assert [c.kernel_size for c in block.left] == [(7, 1), (1, 7)]  # k x 1 then 1 x k
    assert [c.kernel_size for c in block.right] == [(1, 7), (7, 1)]  # 1 x k then k x 1
    assert [(c.in_channels, c.out_channels) for c in [*block.left, *block.right]] == [(6, 4), (4, 4)] * 2
    assert block(torch.randn(2, 6, 5, 9)).shape == (2, 4, 5, 9)
    assert gcn(channels=10).out_channels == 10


@pytest.mark.parametrize("kernel", [0, 2, 14, -3])
def test_kernel_must_be_odd(kernel: int) -> None:
    with pytest.raises(ValueError, match=rf"'kernel' must be an odd kernel size in \[1, 255\], got {kernel}"):
        GlobalConvolution.Config(kernel=kernel)


def test_k1_is_a_sum_of_two_1x1_convs() -> None:
    """With k = 1 each branch is two 1x1 convs, so the block is one 1x1 conv whose weight is
    ``W_l2 W_l1 + W_r2 W_r1`` (and whose bias collects the four biases)."""
    torch.manual_seed(0)
    block = gcn(in_channels=5, num_classes=3, kernel=1)
    (l1, l2), (r1, r2) = block.left, block.right
    merged = nn.Conv2d(5, 3, 1)
    with torch.no_grad():
        matrix = lambda conv: conv.weight[:, :, 0, 0]  # noqa: E731 - (out, in)
        merged.weight.copy_((matrix(l2) @ matrix(l1) + matrix(r2) @ matrix(r1))[:, :, None, None])
        merged.bias.copy_(matrix(l2) @ l1.bias + l2.bias + matrix(r2) @ r1.bias + r2.bias)
    x = torch.randn(2, 5, 6, 7)
    torch.testing.assert_close(block(x), merged(x))


def test_the_block_is_linear() -> None:
    """No nonlinearity (Sec. 3.1, "we do not use any nonlinearity after convolution layers"):
    without its biases (constants) the block is a linear map, f(a x + b y) = a f(x) + b f(y)."""
    torch.manual_seed(0)
    block = gcn(in_channels=4, num_classes=3, kernel=5).double()
    for conv in [*block.left, *block.right]:
        nn.init.zeros_(conv.bias)
    x, y = torch.randn(2, 2, 4, 9, 8, dtype=torch.float64)
    a, b = 1.7, -0.4
    torch.testing.assert_close(block(a * x + b * y), a * block(x) + b * block(y))


@pytest.mark.parametrize("kernel", [1, 3, 7, 15])
def test_receptive_field_is_k_by_k(kernel: int) -> None:
    """The centre output depends on exactly the k x k input window around it (gradient
    test; positive weights so that no path cancels another)."""
    block = gcn(in_channels=2, num_classes=2, kernel=kernel).double()
    with torch.no_grad():
        for conv in [*block.left, *block.right]:
            conv.weight.uniform_(0.5, 1.0)
    height, width = 2 * kernel + 5, 2 * kernel + 3
    x = torch.randn(1, 2, height, width, dtype=torch.float64, requires_grad=True)
    block(x)[0, :, height // 2, width // 2].sum().backward()
    reached = x.grad[0].abs().sum(0) > 0  # (H, W)
    expected = torch.zeros(height, width, dtype=torch.bool)
    r = kernel // 2
    expected[height // 2 - r : height // 2 + r + 1, width // 2 - r : width // 2 + r + 1] = True
    assert torch.equal(reached, expected)
