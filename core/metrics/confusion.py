"""Segmentation metrics from a confusion matrix (Long et al., FCN, Sec. 5).

With n_ij the pixels of class i predicted as j and t_i = sum_j n_ij:
pixel accuracy sum_i n_ii / sum_i t_i; mean accuracy mean_i n_ii / t_i;
IoU_i = n_ii / (t_i + sum_j n_ji - n_ii); mean IoU over the classes present in the
labels or the predictions; frequency-weighted IoU sum_i t_i IoU_i / sum_i t_i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BoundaryAccuracy", "ConfusionMatrix"]


class ConfusionMatrix:
    """Accumulates ``n[i, j]``: pixels of true class i predicted as j (ignored pixels skipped)."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, prediction: Tensor, target: Tensor) -> None:
        """Add a batch of predicted and true label maps of the same shape."""
        valid = target != self.ignore_index
        index = target[valid].to(torch.int64) * self.num_classes + prediction[valid].to(torch.int64)
        self.matrix += torch.bincount(index.cpu(), minlength=self.num_classes**2).view(self.num_classes, -1)

    def iou(self) -> Tensor:
        """Per-class IoU; NaN for a class absent from both labels and predictions."""
        n = self.matrix.double()
        tp = n.diag()
        union = n.sum(0) + n.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp_min(1), torch.nan)

    def compute(self, classes: list[str] | None = None) -> dict[str, object]:
        """All metrics as plain floats (NaN for undefined per-class values)."""
        n = self.matrix.double()
        tp, truth = n.diag(), n.sum(1)
        iou = self.iou()
        total = truth.sum().clamp_min(1)
        accuracy = torch.where(truth > 0, tp / truth.clamp_min(1), torch.nan)
        names = classes or [str(i) for i in range(self.num_classes)]
        return {
            "pixel_accuracy": float(tp.sum() / total),
            "mean_accuracy": float(accuracy.nanmean()),
            "mean_iou": float(iou.nanmean()),
            "frequency_weighted_iou": float((truth * iou.nan_to_num()).sum() / total),
            "per_class_iou": {name: float(v) for name, v in zip(names, iou, strict=True)},
        }


class BoundaryAccuracy:
    """Pixel accuracy near label boundaries and away from them (GCN, Peng et al., Sec. 4.1.3).

    A pixel is in the boundary region when a pixel of another label (ignored pixels
    excluded) lies within ``width`` pixels of it in the chessboard metric (a square
    window; the paper says "within 7 pixels" without naming a metric); all other
    labelled pixels are internal. GCN claims its large kernels help internal pixels and
    its boundary refinement helps boundary pixels (Table 5).
    """

    def __init__(self, width: int = 7, ignore_index: int = 255):
        self.width, self.ignore_index = width, ignore_index
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
