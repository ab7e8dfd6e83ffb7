"""Evaluating a model on a dataset: confusion matrix, the spec's metrics and a few predictions."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import attrs
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from ctxseg.engine.inference import Inference
from ctxseg.interfaces import SegmentationDataset
from ctxseg.metrics.confusion import ConfusionMatrix
from ctxseg.spec import MetricRef

__all__ = ["evaluate"]


def evaluate(inference: Inference, dataset: SegmentationDataset, metrics: Sequence[MetricRef] = (), *,
             keep: int = 0, progress: bool = True) -> tuple[dict[str, Any], list[tuple[int, Tensor, Tensor, Tensor]]]:
    """Label every sample as the inference's ``[test]`` protocol says, a batch of
    ``test.batch`` samples at a time, read by ``data.workers`` loader processes; return
    the metrics (with the protocol and precision used, under ``"inference"``) and examples.

    :param metrics: measures beside the confusion matrix's (:class:`~ctxseg.interfaces.Metric`),
        their results merged into the returned metrics.
    :param keep: how many ``(index, image, mask, prediction)`` examples to return for pictures.
    """
    confusion = ConfusionMatrix(len(dataset.classes), dataset.ignore_index)
    measures = [ref.load()(ref.config, dataset.classes, dataset.ignore_index) for ref in metrics]
    kept = []
    loader = DataLoader(dataset, batch_size=None, num_workers=inference.spec.data.workers)
    samples = enumerate(tqdm(loader, total=len(dataset), desc="eval", leave=False, disable=not progress))
    for batch in iter(lambda: list(itertools.islice(samples, inference.test.batch)), []):
        predictions = inference.predict_many([image for _, (image, _) in batch])
        for (index, (image, mask)), prediction in zip(batch, predictions, strict=True):
            for measure in (confusion, *measures):
                measure.update(prediction, mask)
            if index < keep:
                kept.append((index, image, mask, prediction))
    results = confusion.compute(dataset.classes)
    for measure in measures:
        results.update(measure.compute())
    results["inference"] = {**attrs.asdict(inference.test), "precision": inference.runtime.precision}  # as resolved
    return results, kept
