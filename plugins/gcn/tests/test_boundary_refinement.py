"""The Boundary Refinement block (Sec. 3.2, Fig. 2 C): S~ = S + R(S), R = conv3x3 - ReLU - conv3x3."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ctxseg_gcn.boundary_refinement import BoundaryRefinement

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


def test_residual_branch_is_conv_relu_conv() -> None:
    block = BoundaryRefinement(5)
    first, relu, last = block.residual
    assert isinstance(relu, nn.ReLU)
    for conv in (first, last):
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (5, 5, (3, 3), (1, 1))
    torch.manual_seed(0)
    s = torch.randn(2, 5, 7, 4)
    expected = s + F.conv2d(F.relu(F.conv2d(s, first.weight, first.bias, padding=1)), last.weight, last.bias, padding=1)
    torch.testing.assert_close(block(s), expected)


def test_zero_initialised_last_conv_is_the_identity() -> None:
    block = BoundaryRefinement(3)
    nn.init.zeros_(block.residual[-1].weight)
    nn.init.zeros_(block.residual[-1].bias)
    s = torch.randn(2, 3, 6, 5)
    assert torch.equal(block(s), s)


def test_gradient_reaches_both_convs_and_the_scores() -> None:
    torch.manual_seed(0)
    block = BoundaryRefinement(2)
    s = torch.randn(2, 2, 4, 4, requires_grad=True)
    block(s).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in block.parameters())
    assert s.grad.abs().sum() > 0
