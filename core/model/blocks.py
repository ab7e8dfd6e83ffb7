"""Small pieces that components share: upsampling scores, He initialisation, kernel-size checks."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MAX_CHANNELS", "MAX_KERNEL", "channel_count", "he_init", "odd_kernel", "upsample"]

MAX_CHANNELS = 65_536
"""Largest channel count a spec may give a component: 32 times ResNet's widest map (2048)
and already 38.7 billion weights (155 GB) in one 3x3 conv of that width. Anything above
it is a typo that would try to allocate terabytes, so it is refused before building."""
MAX_KERNEL = 255
"""Largest kernel side: GCN's largest is 15, FCRN's field of view is made by dilation."""


def upsample(scores: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of score maps to ``size`` (the input's), skipped when already there.

    Not skipped while exported (ONNX): the exporter would bake in the comparison made at
    the traced size, and the resize to the same size is the identity anyway."""
    if scores.shape[-2:] == size and not torch.compiler.is_exporting():
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
    and the kernel is centred on its pixel (GCN Sec. 4.1.1: "only odd k"); at most MAX_KERNEL."""
    if not (isinstance(value, int) and 1 <= value <= MAX_KERNEL and value % 2 == 1):
        raise ValueError(f"'{attribute.name}' must be an odd kernel size in [1, {MAX_KERNEL}], got {value!r}")


def channel_count(minimum: int = 1):
    """attrs validator: a channel count in ``[minimum, MAX_CHANNELS]`` (``minimum = 0`` where
    0 means "as many as the input")."""
    def check(instance: object, attribute: attrs.Attribute, value: int) -> None:
        if not minimum <= value <= MAX_CHANNELS:
            raise ValueError(f"'{attribute.name}' must be a channel count in [{minimum}, {MAX_CHANNELS}], "
                             f"got {value}")
    return check
