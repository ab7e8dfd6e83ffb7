"""The one transform evaluation and inference apply to an image: scaling and normalization."""

from __future__ import annotations

import torch
from torch import Tensor

from ctxseg.spec import DataSpec

__all__ = ["EvalTransform"]


class EvalTransform:
    """uint8 image -> float32 in [0, 1], minus the spec's ``mean``, over its ``std`` (per
    channel); the mask passes through unchanged.

    torchvision's ``v2.ToDtype(scale=True)`` and ``v2.Normalize``, op for op (the same
    bits), written here so that evaluating and predicting need not import torchvision
    (which imports ``torch._dynamo``: about 1 s of a one-image ``ctxseg predict``).
    """

    def __init__(self, spec: DataSpec):
        self.mean = torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        scaled = image.to(torch.float32).mul_(1.0 / 255)
        return scaled.sub_(self.mean.to(image.device)).div_(self.std.to(image.device)), mask
