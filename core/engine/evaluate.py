"""Evaluating a model on a dataset: confusion matrix, the spec's metrics and a few predictions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor
from tqdm import tqdm

from ctxseg.engine.inference import Inference
from ctxseg.interfaces import SegmentationDataset
from ctxseg.metrics.confusion import ConfusionMatrix
from ctxseg.spec import MetricRef

__all__ = ["evaluate"]


def evaluate(inference: Inference, dataset: SegmentationDataset, metrics: Sequence[MetricRef] = (), *,
             keep: int = 0, progress: bool = True) -> tuple[dict[str, Any], list[tuple[int, Tensor, Tensor, Tensor]]]:
    """Label every sample (whole images, one at a time); return the metrics and examples.

    :param metrics: measures beside the confusion matrix's (:class:`~ctxseg.interfaces.Metric`),
        their results merged into the returned metrics.
    :param keep: how many ``(index, image, mask, prediction)`` examples to return for pictures.
    """
    confusion = ConfusionMatrix(len(dataset.classes), dataset.ignore_index)
    measures = [ref.load()(ref.config, dataset.classes, dataset.ignore_index) for ref in metrics]
    kept = []
    for index in tqdm(range(len(dataset)), desc="eval", leave=False, disable=not progress):
        image, mask = dataset[index]
        prediction = inference.predict(image)
        for measure in (confusion, *measures):
            measure.update(prediction, mask)
        if index < keep:
            kept.append((index, image, mask, prediction))
    results = confusion.compute(dataset.classes)
    for measure in measures:
        results.update(measure.compute())
    return results, kept
