"""The derived tolerances: their ingredients by hand, and a bound that holds yet still sees a bug."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctxseg.testing.tolerance import (
    CONFIDENCE,
    autocast_bound,
    determined,
    layers,
    rounding_bound,
    summation_bound,
    unit_roundoff,
)

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 5, padding=2, groups=2), nn.ReLU(), nn.Conv2d(32, 4, 1)).eval()


def test_unit_roundoff_is_half_the_machine_epsilon():
    assert unit_roundoff(torch.float32) == 2.0 ** -24
    assert unit_roundoff(torch.bfloat16) == 2.0 ** -8


def test_depth_and_longest_sum_by_hand():
    # three summing layers; the grouped 5x5 conv sums 16 / 2 channels x 25 taps = 200 terms
    assert layers(_net()) == (3, 200)
    assert rounding_bound(torch.float32, 100, 2.0) == CONFIDENCE * 10 * 2.0 ** -24 * 2.0


def test_determined_pixels_lead_by_more_than_twice_the_bound():
    scores = torch.tensor([[[[3.0, 1.0]], [[2.5, 0.9]], [[0.0, 0.0]]]])  # (1, K=3, 1, 2): gaps 0.5 and 0.1
    assert determined(scores, 0.2).tolist() == [[[True, False]]]
    assert determined(scores, 0.25).tolist() == [[[False, False]]]  # a gap of exactly twice it is not enough


def test_fp32_against_float64_lies_within_the_bound_and_a_wrong_weight_does_not():
    net, x = _net(), torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        exact = net.double()(x.double())
        got = net.float()(x)
        bound = summation_bound(net, exact.abs().max().item())
        assert (got.double() - exact).abs().max() <= bound
        net[3].weight[0, 0, 0, 0] += 1e-3  # one weight of 6,400 off by a thousandth: a mis-converted checkpoint
        assert (net(x).double() - exact).abs().max() > bound


def test_bf16_autocast_lies_within_its_bound():
    net, x = _net(), torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        exact = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rounded = net(x).float()
    assert (rounded - exact).abs().max() <= autocast_bound(net, exact.abs().max().item())
