"""Evaluating a model on a dataset: confusion matrix, metrics and a few predictions."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from ctxseg.data.pipeline import EvalTransform
from ctxseg.engine.runtime import Runtime
from ctxseg.interfaces import SegmentationDataset
from ctxseg.metrics.confusion import BoundaryAccuracy, ConfusionMatrix
from ctxseg.spec import DataSpec

__all__ = ["evaluate", "predict_scores"]


@torch.no_grad()
def predict_scores(model: torch.nn.Module, image: Tensor, runtime: Runtime) -> Tensor:
    """Class scores ``(K, H, W)`` (float32) of one normalized image ``(3, H, W)``."""
    with runtime.autocast():
        scores = model(runtime.images(image[None]))["out"]
    return scores[0].float()


def evaluate(model: torch.nn.Module, dataset: SegmentationDataset, data: DataSpec, runtime: Runtime,
             *, keep: int = 0, boundary: int = 0,
             progress: bool = True) -> tuple[dict[str, Any], list[tuple[int, Tensor, Tensor, Tensor]]]:
    """Run ``model`` over every sample (whole images, one at a time); return metrics and examples.

    :param keep: how many ``(index, image, mask, prediction)`` examples to return for pictures.
    :param boundary: if > 0, also report accuracy within that many pixels of a label
        boundary and away from it (:class:`~ctxseg.metrics.BoundaryAccuracy`).
    """
    was_training = model.training
    model.eval()
    transform = EvalTransform(data)
    confusion = ConfusionMatrix(len(dataset.classes), dataset.ignore_index)
    near = BoundaryAccuracy(boundary, dataset.ignore_index) if boundary else None
    kept = []
    for index in tqdm(range(len(dataset)), desc="eval", leave=False, disable=not progress):
        image, mask = dataset[index]
        prediction = predict_scores(model, transform(image, mask)[0], runtime).argmax(0).cpu()
        confusion.update(prediction, mask)
        if near is not None:
            near.update(prediction, mask)
        if index < keep:
            kept.append((index, image, mask, prediction))
    model.train(was_training)
    metrics = confusion.compute(dataset.classes)
    if near is not None:
        metrics.update(near.compute())
    return metrics, kept
