"""Online bootstrapping of hard training pixels: cross-entropy over the hard pixels only.

Wu, Shen and van den Hengel, "High-performance Semantic Segmentation Using Very Deep
Fully Convolutional Networks", 2016, https://arxiv.org/abs/1604.04339, Sec. 3.3,
Eq. 1, Table 4.

Most pixels of a crop, such as the inside of a large region, are easy; learning on
them "can hardly improve the objective". The loss averages the cross-entropy over
the pixels whose ground-truth probability ``p`` is below a threshold ``t`` (Eq. 1),
raising ``t`` when fewer than a minimum would be kept; or over the K hardest pixels
of each crop, all of them when a crop has fewer (Table 4: K = 512 is best for
crops of VOC and Cityscapes). The selection is made without gradient: only the
selected pixels receive one. A crop is one sample of the batch; pixels labelled
``ignore_index`` are never selected.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from ctxseg.interfaces import Loss

__all__ = ["OnlineBootstrapping"]


class OnlineBootstrapping(Loss):
    """Mean cross-entropy over each crop's hard pixels: the ``top_k`` hardest, or those
    with ``p < threshold`` (at least ``min_kept``, hardest first)."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        top_k: int = attrs.field(default=512, validator=attrs.validators.ge(0))
        """K hardest pixels kept per crop (Table 4: 256, 512, 1024; 512 best); 0 selects
        by ``threshold`` instead."""
        threshold: float = attrs.field(default=1.0, validator=[attrs.validators.gt(0.0), attrs.validators.le(1.0)])
        """t of Eq. 1: pixels whose ground-truth probability is below it are kept."""
        min_kept: int = attrs.field(default=0, validator=attrs.validators.ge(0))
        """Pixels kept per crop at the least: t is raised to keep this many of the hardest."""

        def __attrs_post_init__(self) -> None:
            if self.top_k and (self.threshold != 1.0 or self.min_kept):
                raise ValueError("'top_k' keeps a fixed number of pixels; 'threshold' and 'min_kept' "
                                 "apply only with top_k = 0")

    def __init__(self, config: Config, ignore_index: int):
        super().__init__()
        self.config = config
        self.ignore_index = ignore_index

    @torch.no_grad()
    def hard_pixels(self, nll: Tensor, valid: Tensor) -> Tensor:
        """Which pixels ``(B, H, W)`` the loss keeps, from their cross-entropy ``-log p``."""
        config = self.config
        kept = (torch.exp(-nll) < config.threshold) & valid if not config.top_k else torch.zeros_like(valid)
        hardest = config.top_k or config.min_kept
        if hardest:
            flat = nll.masked_fill(~valid, -torch.inf).flatten(1)  # (B, H*W), ignored pixels last
            top = flat.topk(min(hardest, flat.shape[1]), dim=1).indices
            chosen = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, top, True)
            kept |= chosen.view_as(valid) & valid
        return kept

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index
        log_p = F.log_softmax(scores.float(), dim=1)  # (B, K, H, W)
        nll = -log_p.gather(1, target.where(valid, 0)[:, None])[:, 0]  # (B, H, W)
        kept = self.hard_pixels(nll, valid)
        return torch.where(kept, nll, 0.0).sum() / kept.sum().clamp_min(1)
