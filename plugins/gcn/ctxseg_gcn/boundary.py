"""GCN's boundary and internal accuracy (Peng et al., Sec. 4.1.3, Table 5), a metric of the
evaluation: ``[[metrics]] name = "gcn.boundary"`` in a spec, or ``ctxseg eval --metric
gcn.boundary --metric-arg width=7``."""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor

from ctxseg.interfaces import Metric

__all__ = ["BoundaryAccuracy"]


class BoundaryAccuracy(Metric):
    """Pixel accuracy near label boundaries and away from them (GCN, Peng et al., Sec. 4.1.3).

    A pixel is in the boundary region when a pixel of another label (ignored pixels
    excluded) lies within ``width`` pixels of it in the chessboard metric (a square
    window; the paper says "within 7 pixels" without naming a metric); all other
    labelled pixels are internal. GCN claims its large kernels help internal pixels and
    its boundary refinement helps boundary pixels (Table 5).
    """

    sums = ("correct", "total")

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        width: int = attrs.field(default=7, validator=attrs.validators.ge(1))
        """Pixels from a boundary that still count as near it: 7 in the paper."""

    def __init__(self, config: Config, classes: list[str], ignore_index: int = 255):
        self.width, self.ignore_index = config.width, ignore_index
        self.correct = torch.zeros(2, dtype=torch.int64)  # boundary, internal
        self.total = torch.zeros(2, dtype=torch.int64)

    def boundary(self, target: Tensor) -> Tensor:
        """Boolean ``(H, W)`` (or batched) map of the boundary region of a label map."""
        labels = target.reshape(-1, 1, *target.shape[-2:]).float()
        valid = target.reshape(labels.shape) != self.ignore_index
        k, pad = 2 * self.width + 1, self.width
        # A window holds two labels iff its max and min differ (ignored pixels left out of both).
        high = F.max_pool2d(torch.where(valid, labels, -1.0), k, 1, pad)
        low = -F.max_pool2d(torch.where(valid, -labels, -1e9), k, 1, pad)
        return (high != low).reshape(target.shape)

    def update(self, prediction: Tensor, target: Tensor) -> None:
        valid = target != self.ignore_index
        near = self.boundary(target)
        correct = (prediction == target) & valid
        for i, region in enumerate((near & valid, ~near & valid)):
            self.correct[i] += (correct & region).sum().cpu()
            self.total[i] += region.sum().cpu()

    def compute(self) -> dict[str, float]:
        accuracy = self.correct.double() / self.total.clamp_min(1).double()
        return {"boundary_width": self.width, "boundary_accuracy": float(accuracy[0]),
                "internal_accuracy": float(accuracy[1]),
                "boundary_fraction": float(self.total[0].double() / self.total.sum().clamp_min(1).double())}
