"""Segmentation metrics from a confusion matrix (Long et al., FCN, Sec. 5).

With n_ij the pixels of class i predicted as j and t_i = sum_j n_ij:
pixel accuracy sum_i n_ii / sum_i t_i; mean accuracy mean_i n_ii / t_i;
IoU_i = n_ii / (t_i + sum_j n_ji - n_ii); mean IoU over the classes present in the
labels or the predictions; frequency-weighted IoU sum_i t_i IoU_i / sum_i t_i.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["ConfusionMatrix"]


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
        """All metrics as plain floats (NaN for undefined per-class values), and the
        matrix itself as ``confusion`` (rows: true class, columns: predicted, in class order)."""
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
            "confusion": self.matrix.tolist(),
        }
