"""The pyramid pooling module, PSPNet's context head.

Zhao, Shi, Qi, Wang and Jia, "Pyramid Scene Parsing Network", CVPR 2017,
https://arxiv.org/abs/1612.01105, Sec. 3.2 and Fig. 3 (c)-(d).

A single global average (ParseNet) mixes every object of a scene into one vector.
The pyramid pooling module keeps some layout: it pools the last feature map into
b x b bins for several b (1, 2, 3 and 6: the whole image, halves, and small
portions of it), reduces each level to 1/N of the channels with a 1x1 conv (N the
number of levels, so the global levels together weigh as much as the local feature),
upsamples every level back bilinearly and concatenates them with the feature map
itself. A 3x3 conv then mixes the local feature with this global prior.

The head ends with that 3x3 conv (BN, ReLU, dropout); ctxseg adds the final 1x1
classifier, as for every head. Its width (512) and the dropout (0.1) are not in the
paper's text; they are the authors' released models' (github.com/hszhao/PSPNet).
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctxseg.interfaces import ContextHead
from ctxseg.nn import channel_count

__all__ = ["PyramidLevel", "PyramidPooling", "bin_pool", "bins_of"]


class PyramidLevel(nn.Module):
    """One level of the pyramid: pool to ``bins`` x ``bins``, then, with dimension
    reduction, 1x1 conv to ``reduced`` channels, BN and ReLU (as the authors' models).

    ``(B, in_channels, h, w) -> (B, out_channels, bins, bins)``. Adaptive pooling
    splits any h, w into the bins, overlapping them where the map is smaller than
    ``bins``; so a 1x1 map works too.
    """

    def __init__(self, bins: int, pooling: Literal["avg", "max"], in_channels: int, reduced: int | None):
        super().__init__()
        self.bins, self.pooling = bins, pooling
        self.pool = nn.AdaptiveAvgPool2d(bins) if pooling == "avg" else nn.AdaptiveMaxPool2d(bins)
        self.reduce: nn.Module
        if reduced is None:
            self.reduce, self.out_channels = nn.Identity(), in_channels
        else:
            self.reduce = nn.Sequential(
                nn.Conv2d(in_channels, reduced, 1, bias=False),
                nn.BatchNorm2d(reduced),
                nn.ReLU(inplace=True),
            )
            self.out_channels = reduced

    def forward(self, x: Tensor) -> Tensor:
        # The ONNX exporter cannot take adaptive pooling of a map whose size is only known
        # at run time (bins that do not divide it); exported, the same bins are pooled by
        # plain tensor ops instead (equal up to float rounding, see bin_pool).
        pooled = bin_pool(x, self.bins, self.pooling) if torch.compiler.is_exporting() else self.pool(x)
        return self.reduce(pooled)  # (B, out_channels, bins, bins)


def bins_of(size: int, bins: int, device: torch.device) -> Tensor:
    """``(bins, size)``, True where pixel j lies in bin i: adaptive pooling's bins,
    ``[floor(i size / bins), ceil((i + 1) size / bins))``, overlapping where ``size`` is
    not a multiple of ``bins``."""
    i = torch.arange(bins, device=device)
    start = torch.div(i * size, bins, rounding_mode="floor")
    end = torch.div((i + 1) * size + bins - 1, bins, rounding_mode="floor")
    j = torch.arange(size, device=device)
    return (j >= start[:, None]) & (j < end[:, None])


def bin_pool(x: Tensor, bins: int, pooling: Literal["avg", "max"]) -> Tensor:
    """Adaptive average or max pooling to ``bins`` x ``bins`` from the bins' masks alone, so
    that the map's size may be symbolic. Averages are two matrix products (rows, then
    columns), so they equal ``adaptive_avg_pool2d``'s up to the order of the sums; maxima
    are exact. ``(B, C, h, w) -> (B, C, bins, bins)``."""
    rows = bins_of(x.shape[-2], bins, x.device)  # (bins, h)
    cols = bins_of(x.shape[-1], bins, x.device)  # (bins, w)
    if pooling == "avg":
        rows, cols = (m.to(x.dtype) / m.sum(1, keepdim=True) for m in (rows, cols))
        return rows @ x @ cols.T  # (B, C, bins, bins)
    low = torch.finfo(x.dtype).min
    x = x.unsqueeze(-3).masked_fill(~rows[:, :, None], low).amax(-2)  # (B, C, bins, w)
    return x.unsqueeze(-2).masked_fill(~cols, low).amax(-1)  # (B, C, bins, bins)


class PyramidPooling(ContextHead):
    """Pyramid pooling module (Fig. 3 (c)) and the 3x3 conv after it (Fig. 3 (d)).

    ``(B, in_channels, h, w) -> (B, channels, h, w)`` for any h, w >= 1. The BN of a
    reduced 1x1 level sees one value per sample and channel, so training needs a
    batch of at least 2 (the paper stresses a large BN batch, 16, Sec. 5.1); eval
    mode uses the running statistics and takes any batch.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        bins: tuple[int, ...] = attrs.field(
            default=(1, 2, 3, 6),
            converter=tuple,
            validator=attrs.validators.deep_iterable(
                member_validator=[attrs.validators.instance_of(int), attrs.validators.gt(0), attrs.validators.le(256)],
                iterable_validator=attrs.validators.min_len(1),
            ),
        )
        """Bins per side of each level: 1x1, 2x2, 3x3 and 6x6 (Sec. 3.2); Table 1 also
        tries global pooling alone, ``[1]`` ("B1")."""
        pooling: Literal["avg", "max"] = attrs.field(default="avg", validator=attrs.validators.in_(("avg", "max")))
        """Average or max pooling (Table 1 "AVE" / "MAX"); average is better in every setting."""
        reduction: bool = True
        """1x1 conv + BN + ReLU to ``in_channels // len(bins)`` channels per level (at
        least 1), "to maintain the weight of global feature" (Sec. 3.2; Table 1 "DR").
        Without it the pooled maps are concatenated at full width."""
        align_corners: bool = True
        """Bilinear upsampling of the levels with corner pixels aligned, as the authors'
        Caffe ``Interp`` layer and PyTorch code do: the b x b grid is stretched so its
        outer bin centres fall on the border pixels. ``false`` puts every bin centre at
        its geometric position instead. A 1x1 level is a constant map either way."""
        channels: int = attrs.field(default=512, validator=channel_count())
        """Width of the 3x3 conv after the concatenation (the authors' models)."""
        dropout: float = attrs.field(default=0.1, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])
        """Channel dropout after the 3x3 conv, 0.1 (the authors' models). The classifier's
        own dropout (``model.classifier.dropout``, 0 by default) comes right after it; the
        paper's specs move the authors' single dropout there (this one 0, that one 0.1)."""

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        self.align_corners = config.align_corners
        reduced = max(in_channels // len(config.bins), 1) if config.reduction else None
        self.levels = nn.ModuleList(PyramidLevel(b, config.pooling, in_channels, reduced) for b in config.bins)
        self.pyramid_channels = in_channels + sum(level.out_channels for level in self.levels)
        self.conv = nn.Sequential(
            nn.Conv2d(self.pyramid_channels, config.channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(config.channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(config.dropout),
        )
        self.out_channels = config.channels
        # A 1x1 level is the global average: every output pixel sees the whole map.
        self.field_of_view = "global" if 1 in config.bins else None

    def pyramid(self, x: Tensor) -> Tensor:
        """The pyramid pooling global feature: ``x`` and every level upsampled to its size,
        concatenated, ``(B, pyramid_channels, h, w)``."""
        size = x.shape[-2:]
        levels = [
            F.interpolate(level(x), size=size, mode="bilinear", align_corners=self.align_corners)  # (B, C_l, h, w)
            for level in self.levels
        ]
        return torch.cat([x, *levels], dim=1)  # (B, in_channels + sum C_l, h, w)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self.pyramid(x))  # (B, channels, h, w)
