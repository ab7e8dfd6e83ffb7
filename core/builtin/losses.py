"""Pixel-wise cross-entropy, the loss every paper here trains with."""

from __future__ import annotations

import attrs
import torch.nn.functional as F
from torch import Tensor

from ctxseg.interfaces import Loss


class CrossEntropy(Loss):
    """Mean cross-entropy over the labelled pixels; an all-ignored batch gives 0, not NaN."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        label_smoothing: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])

    def __init__(self, config: Config, ignore_index: int):
        super().__init__()
        self.config = config
        self.ignore_index = ignore_index

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        losses = F.cross_entropy(
            scores.float(), target, ignore_index=self.ignore_index,
            label_smoothing=self.config.label_smoothing, reduction="none",
        )  # (B, H, W), 0 at ignored pixels
        valid = (target != self.ignore_index).sum().clamp_min(1)
        return losses.sum() / valid
