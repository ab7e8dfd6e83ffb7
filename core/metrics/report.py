"""Metric tables as a person reads them in a terminal."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["metrics_table"]

SUMMARY = ("mean_iou", "pixel_accuracy", "mean_accuracy", "frequency_weighted_iou")


def _pct(value: float) -> str:
    return "   -" if math.isnan(value) else f"{100 * value:5.1f}"


def metrics_table(metrics: dict[str, Any]) -> str:
    """Per-class IoU, the summary metrics, then any other measure (the spec's ``[[metrics]]``):
    fractions in percent, counts as they are."""
    per_class = metrics["per_class_iou"]
    others = {k: v for k, v in metrics.items() if k not in SUMMARY and isinstance(v, (int, float))}
    width = max(len(n) for n in [*per_class, *SUMMARY, *others])
    lines = [f"{'class':<{width}}  IoU (%)", "-" * (width + 9)]
    lines += [f"{name:<{width}}  {_pct(v)}" for name, v in per_class.items()]
    lines.append("-" * (width + 9))
    for key, value in [*((k, metrics[k]) for k in SUMMARY), *others.items()]:
        shown = _pct(value) if isinstance(value, float) else f"{value:5d}"
        lines.append(f"{key.replace('_', ' '):<{width}}  {shown}")
    return "\n".join(lines)
