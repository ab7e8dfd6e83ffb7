"""The input buffer (Sec. 4-5): reflection about each edge for any buffer width, and its geometry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ctxseg_dilation.padding import field_of_view, margin, pad


@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 2, 3, 4), (4, 4, 6, 6)])
def test_reflection_is_torchs_where_torch_can(pads: tuple[int, int, int, int]) -> None:
    x = torch.randn(2, 3, 5, 7)
    top, bottom, left, right = pads
    assert torch.equal(pad(x, *pads, "reflect"), F.pad(x, (left, right, top, bottom), mode="reflect"))


def test_a_wide_buffer_reflects_the_reflections() -> None:
    """Beyond the first reflection the line is mirrored again, period 2 (size - 1)."""
    line = torch.arange(3.0).view(1, 1, 1, 3)
    assert pad(line, 0, 0, 5, 6, "reflect").flatten().tolist() == [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1, 0]
    x = torch.randn(1, 2, 4, 5)
    once = F.pad(x, (4, 4, 3, 3), mode="reflect")  # the largest torch allows
    twice = F.pad(once, (3, 5, 2, 8), mode="reflect")
    assert torch.equal(pad(x, 5, 11, 7, 9, "reflect"), twice)


def test_a_one_pixel_map_is_repeated() -> None:
    x = torch.randn(2, 3, 1, 1)
    assert torch.equal(pad(x, 33, 33, 33, 33, "reflect"), x.expand(2, 3, 67, 67))
    row = torch.randn(1, 1, 1, 4)
    assert torch.equal(pad(row, 2, 2, 0, 0, "reflect"), row.expand(1, 1, 5, 4))


def test_zero_padding_and_gradients() -> None:
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    padded = pad(x, 1, 2, 3, 4, "zero")
    assert padded.shape == (1, 2, 6, 10) and padded[..., 0, :].abs().sum() == 0
    pad(x, 10, 10, 10, 10, "reflect").sum().backward()
    assert (x.grad > 0).all()  # every buffer pixel is a copy of some map pixel


def test_field_of_view_and_margin() -> None:
    """The recurrence field += (k - 1) d stride, stride *= s, and the centring margin."""
    layers = [nn.Conv2d(1, 1, 3), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Conv2d(1, 1, 3, dilation=2), nn.Dropout()]
    assert field_of_view(layers) == (1 + 2 + 1 + 2 * 2 * 2, 2)
    assert margin(layers) == (12 - 2) // 2
    with pytest.raises(ValueError, match="cannot be centred"):
        margin([nn.Conv2d(1, 1, 2)])
