"""Metric tables as a person reads them in a terminal."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["metrics_table"]


def _pct(value: float) -> str:
    return "   -" if math.isnan(value) else f"{100 * value:5.1f}"


def metrics_table(metrics: dict[str, Any]) -> str:
    """Per-class IoU then the summary metrics, in percent."""
    per_class = metrics["per_class_iou"]
    summary = ("mean_iou", "pixel_accuracy", "mean_accuracy", "frequency_weighted_iou")
    width = max(len(n) for n in [*per_class, *summary])
    lines = [f"{'class':<{width}}  IoU (%)", "-" * (width + 9)]
    lines += [f"{name:<{width}}  {_pct(v)}" for name, v in per_class.items()]
    lines.append("-" * (width + 9))
    for key in (*summary, "boundary_accuracy", "internal_accuracy"):
        if key in metrics:
            lines.append(f"{key.replace('_', ' '):<{width}}  {_pct(metrics[key])}")
    return "\n".join(lines)
