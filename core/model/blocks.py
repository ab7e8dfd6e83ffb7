"""Small pieces that components share: upsampling scores, He initialisation, kernel-size checks."""

from __future__ import annotations

import attrs
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["he_init", "odd_kernel", "upsample"]


def upsample(scores: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of score maps to ``size`` (the input's), skipped when already there."""
    if scores.shape[-2:] == size:
        return scores
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)


def he_init(conv: nn.Conv2d) -> nn.Conv2d:
    """He initialisation (fan-out, ReLU) as torchvision gives its ResNet and VGG convs; bias to zero."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def odd_kernel(instance: object, attribute: attrs.Attribute, value: int) -> None:
    """attrs validator: a kernel size k >= 1 and odd, so that padding (k - 1) / 2 keeps the size
    and the kernel is centred on its pixel (GCN Sec. 4.1.1: "only odd k")."""
    if not (isinstance(value, int) and value >= 1 and value % 2 == 1):
        raise ValueError(f"'{attribute.name}' must be an odd kernel size >= 1, got {value!r}")
