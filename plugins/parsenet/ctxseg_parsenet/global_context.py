"""ParseNet's global context: "pool6", unpooled and concatenated to the local features.

Liu, Rabinovich and Berg, "ParseNet: Looking Wider to See Better", 2015,
https://arxiv.org/abs/1506.04579, Sec. 3.1-3.3 and Fig. 1.

Deep features have a large theoretical receptive field (404 x 404 pixels for fc7 of
FCN's VGG-16) but an empirical one about a quarter of that (Sec. 3.1), so a pixel is
classified from local evidence: a cat's fur patch can pass for a bird (Fig. 1). ParseNet
adds the whole image explicitly: global average pooling of a feature map ("pool6"), a
vector per image that is unpooled, i.e. replicated to the map's size (footnote 1), and
concatenated with the local features at every position (early fusion, Sec. 3.2). Both
parts are l2-normalized with a learned scale first (Sec. 3.3), because features of
different layers differ in scale (Fig. 2); without that, pool6 does not help on VOC2012
(Table 5: 64.84 vs 67.49; Table 6: 65.30 vs 69.43).

:class:`GlobalContext` is this early fusion on one map, as a context head; the core's
classifier after it is the paper's classifier on the combined feature.
``ctxseg_parsenet.fusion`` does the same over several layers, and late fusion.
"""

from __future__ import annotations

import attrs
import torch
from torch import Tensor, nn

from ctxseg.interfaces import ContextHead
from ctxseg_parsenet.l2norm import L2Norm

__all__ = ["GlobalContext", "normalizer", "pool6", "unpool"]


def pool6(x: Tensor) -> Tensor:
    """Global average pooling: ``(B, C, h, w) -> (B, C, 1, 1)``, one context vector per image (Sec. 3.1)."""
    return x.mean((2, 3), keepdim=True)


def unpool(context: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
    """Replicate ``(B, C, 1, 1)`` horizontally and vertically to ``(B, C, *size)`` (Sec. 3.2, footnote 1)."""
    return context.expand(-1, -1, *size)


def normalizer(channels: int, normalize: bool, scale: float) -> nn.Module:
    """An :class:`L2Norm` with gamma starting at ``scale``, or the identity when not normalizing."""
    return L2Norm(channels, scale) if normalize else nn.Identity()


class GlobalContext(ContextHead):
    """``x -> concat(L2Norm(x), unpool(L2Norm(pool6(x))))``: ``(B, C, h, w) -> (B, 2C, h, w)``.

    The two halves have separate scales: the paper learns "to weight pool6 and fc7 after
    l2 normalization" (Sec. 4.2). Normalizing the pooled vector before replicating it is
    the same as normalizing the replicated map, at 1/(h w) of the cost.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        normalize: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
        """l2-normalize both parts before concatenating (Sec. 3.3); Table 6's "Norm" column."""
        scale: float = attrs.field(default=10.0, validator=attrs.validators.gt(0.0))
        """Initial gamma of both normalizations: Table 7's best is 10; 1 hardly trains (Sec. 3.3)."""

    field_of_view = "global"  # pool6 is the average of the whole map

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        self.out_channels = 2 * in_channels
        self.local_norm = normalizer(in_channels, config.normalize, config.scale)
        self.global_norm = normalizer(in_channels, config.normalize, config.scale)

    def forward(self, x: Tensor) -> Tensor:
        local = self.local_norm(x)  # (B, C, h, w)
        context = self.global_norm(pool6(x))  # (B, C, 1, 1)
        return torch.cat([local, unpool(context, x.shape[-2:])], 1)  # (B, 2C, h, w)
