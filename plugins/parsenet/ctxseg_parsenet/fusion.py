"""ParseNet's feature fusion: several layers and the global context, early or late.

Liu, Rabinovich and Berg, "ParseNet: Looking Wider to See Better", 2015,
https://arxiv.org/abs/1506.04579, Sec. 3.2-3.3, Fig. 1, Tables 3-7.

How the paper maps onto this fusion and the spec's ``[model.fusion] inputs``:

* Fig. 1 / Sec. 3.1: "pool6" is the global average of fc7, unpooled (replicated) to
  the local map's size. ``global_context = true`` adds it, pooled from the *last* of
  ``inputs`` (list them shallow to deep, fc7 last, as the paper pools fc7).
* Sec. 3.2, early fusion: each feature (conv3_3, conv4_3, conv5_3, fc7 and pool6 in
  Tables 3-4) is brought to the finest input's resolution and the features are
  concatenated; one classifier (the core's 1x1 conv) sees the combined feature.
  ``mode = "early"``.
* Sec. 3.2, late fusion: "each feature is used to learn its own classifier, followed by
  merging the two predictions into a single classification score"; the scores are
  summed (as FCN's skip layers). ``mode = "late"``; the fusion then emits the scores
  and the model adds no classifier.
* Sec. 3.3: each feature is l2-normalized with its own learned per-channel scale
  before it is combined (``normalize``, initial gamma ``scale``); Table 4's and Table 6's
  "Norm" column. Without it, adding conv4 and conv3 to fc7 degrades and then collapses
  training on PASCAL-Context (Table 4: 36.5 and 0.009 mean IoU).
* Sec. 3.2 / Table 7, "1x1 conv": early fusion with "extra capacity, nonlinearity or
  dimensionality reduction" on the combined feature, ``projection`` channels of 1x1
  conv + ReLU after the concatenation. In Table 7 every 1x1-conv variant (at most 66.7)
  stays below normalizing and concatenating (69.43).

Each feature is normalized at its own resolution and then resized (bilinear, the
core's upsampling); in late fusion each input is classified first and its scores are
resized, which is the same as resizing first since both are linear and the
interpolation weights sum to 1. The pooled context is normalized and classified as a
``(B, C, 1, 1)`` vector and replicated afterwards, the same result at less cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctxseg.interfaces import Fusion
from ctxseg.nn import MAX_CHANNELS
from ctxseg_parsenet.global_context import normalizer, pool6, unpool

__all__ = ["ParseNetFusion"]


def _check_projection(config: ParseNetFusion.Config, attribute: attrs.Attribute, value: int) -> None:
    if not 0 <= value <= MAX_CHANNELS:
        raise ValueError(f"'projection' must be a channel count in [0, {MAX_CHANNELS}] (0 = none), got {value}")
    if value and config.mode != "early":
        raise ValueError("'projection' (a 1x1 conv on the concatenated features) needs mode = 'early'")


class ParseNetFusion(Fusion):
    """Early (concatenate) or late (sum of per-input classifier scores) fusion, with pool6.

    Inputs ``(B, C_i, H/s_i, W/s_i)`` in the order of the spec's ``inputs``; output at the
    finest of them: early ``(B, sum C_i [+ C_last] or projection, H/s, W/s)``, late
    ``(B, K, H/s, W/s)`` class scores.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        mode: Literal["early", "late"] = "early"
        """Sec. 3.2; Table 6 finds both equal (69.43 vs 69.55) once the features are normalized."""
        normalize: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
        """l2-normalize every input (and pool6) with a learned per-channel scale (Sec. 3.3)."""
        scale: float = attrs.field(default=10.0, validator=attrs.validators.gt(0.0))
        """Initial gamma of every normalization: Table 7's best is 10; 1 hardly trains (Sec. 3.3)."""
        global_context: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
        """Add pool6, the global average of the last input, as one more feature (Sec. 3.1)."""
        projection: int = attrs.field(default=0, validator=_check_projection)
        """Early fusion only: 1x1 conv + ReLU to this many channels after concatenating
        (Table 7's "1x1 conv" column); 0 concatenates only, the paper's choice."""

    def __init__(self, config: Config, in_channels: list[int], strides: list[int], num_classes: int):
        super().__init__()
        self.config = config
        self.finest = strides.index(min(strides))
        self.norms = nn.ModuleList(normalizer(c, config.normalize, config.scale) for c in in_channels)
        self.global_norm = (normalizer(in_channels[-1], config.normalize, config.scale)
                            if config.global_context else None)
        features = [*in_channels, in_channels[-1]] if config.global_context else list(in_channels)
        if config.mode == "late":
            self.emits_scores = True
            self.out_channels = num_classes
            self.classifiers = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in in_channels)
            self.global_classifier = nn.Conv2d(in_channels[-1], num_classes, 1) if config.global_context else None
        elif config.projection:
            self.out_channels = config.projection
            self.project = nn.Sequential(nn.Conv2d(sum(features), config.projection, 1), nn.ReLU(inplace=True))
        else:
            self.out_channels = sum(features)

    def forward(self, maps: Sequence[Tensor]) -> Tensor:
        size = maps[self.finest].shape[-2:]
        local = [norm(x) for norm, x in zip(self.norms, maps)]  # [(B, C_i, H/s_i, W/s_i)]
        context = self.global_norm(pool6(maps[-1])) if self.global_norm is not None else None  # (B, C_last, 1, 1)
        if self.config.mode == "late":
            scores = sum(_resize(classify(x), size) for classify, x in zip(self.classifiers, local))  # (B, K, H/s, W/s)
            if context is not None:
                scores = scores + self.global_classifier(context)  # (B, K, 1, 1) broadcast = unpooled
            return scores
        parts = [_resize(x, size) for x in local]  # [(B, C_i, H/s, W/s)]
        if context is not None:
            parts.append(unpool(context, size))  # (B, C_last, H/s, W/s)
        combined = torch.cat(parts, 1)  # (B, sum C_i [+ C_last], H/s, W/s)
        return self.project(combined) if self.config.projection else combined


def _resize(x: Tensor, size: torch.Size) -> Tensor:
    if x.shape[-2:] == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
