"""Padding the input once instead of every layer (Yu and Koltun, Sec. 4 and 5).

Yu and Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016,
https://arxiv.org/abs/1511.07122.

Both networks of the paper pad no intermediate feature map ("neither necessary nor
justified in dense prediction", Sec. 4): each layer sees only real pixels, and its
output shrinks by the layer's reach. The input is padded once instead, by a buffer
wide enough that the output has the input's size: 186 pixels around the image for the
front end (Sec. 4), 33 around the score maps for the context module (Sec. 5, "a buffer
of width 33"). The buffer is filled "by reflecting the image about each edge".

Torch's ``reflect`` padding needs the buffer narrower than the map, which a 186-pixel
buffer around a 64-pixel image, or a 33-pixel one around an 8 x 8 score map, is not.
:func:`pad` keeps reflecting: the buffer beyond a first reflection is the reflection
of that reflection, and so on (the map mirrored periodically, period ``2 (size - 1)``),
which agrees with torch's ``reflect`` wherever that applies. A map one pixel wide has
no reflection; it is repeated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["field_of_view", "margin", "pad"]

Mode = Literal["reflect", "zero"]


def _first(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else value


def field_of_view(layers: Iterable[nn.Module]) -> tuple[int, int]:
    """Receptive field (pixels per side) and stride of unpadded convolutions and max-pools
    applied in order; other layers (ReLU, dropout) do not change either."""
    field, stride = 1, 1
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            kernel, dilation = _first(layer.kernel_size), _first(layer.dilation)
            field += (kernel - 1) * dilation * stride
            stride *= _first(layer.stride)
    return field, stride


def margin(layers: Iterable[nn.Module]) -> int:
    """Buffer width per side that centres every output cell ``i`` on the input block
    ``[s i, s i + s)`` (``s`` the stride): ``(field - s) / 2``.

    With this buffer on every side and the input a multiple of ``s``, the unpadded layers
    give exactly one output cell per input block (Yu and Koltun's 186 for the front end:
    field 380, stride 8; 33 for the context module: field 67, stride 1).
    """
    field, stride = field_of_view(layers)
    if (field - stride) % 2:
        raise ValueError(f"a field of {field} pixels at stride {stride} cannot be centred on the blocks")
    return (field - stride) // 2


def _mirror(size: int, before: int, after: int, device: torch.device) -> Tensor:
    """Source index of each pixel of a line of ``size`` pixels extended by ``before`` and
    ``after`` pixels of repeated reflection, ``(before + size + after,)``."""
    position = torch.arange(-before, size + after, device=device)
    if size == 1:
        return torch.zeros_like(position)
    period = 2 * (size - 1)
    # position mod period, by floor division: the ONNX exporter translates a remainder only by a constant
    position = position - torch.div(position, period, rounding_mode="floor") * period
    return torch.where(position < size, position, period - position)


def pad(x: Tensor, top: int, bottom: int, left: int, right: int, mode: Mode) -> Tensor:
    """``(B, C, h, w)`` -> ``(B, C, top + h + bottom, left + w + right)``, the buffer filled
    with zeros or by reflection about the edges (repeated, for a buffer wider than the map)."""
    if mode == "zero":
        return F.pad(x, (left, right, top, bottom))
    rows = _mirror(x.shape[-2], top, bottom, x.device)
    cols = _mirror(x.shape[-1], left, right, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)  # (B, C, top + h + bottom, left + w + right)
