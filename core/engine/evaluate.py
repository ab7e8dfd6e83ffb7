"""Evaluating a model on a dataset: confusion matrix, the spec's metrics and a few predictions."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import attrs
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ctxseg.engine import distributed
from ctxseg.engine.inference import Inference
from ctxseg.errors import CtxsegError
from ctxseg.interfaces import SegmentationDataset
from ctxseg.metrics.confusion import ConfusionMatrix
from ctxseg.spec import MetricRef

__all__ = ["evaluate"]


def evaluate(inference: Inference, dataset: SegmentationDataset, metrics: Sequence[MetricRef] = (), *,
             keep: int = 0, progress: bool = True,
             source: str = "<spec>") -> tuple[dict[str, Any], list[tuple[int, Tensor, Tensor, Tensor]]]:
    """Label every sample as the inference's ``[test]`` protocol says, a batch of
    ``test.batch`` samples at a time, read by ``data.workers`` loader processes; return
    the metrics (with the protocol and precision used, under ``"inference"``) and examples.

    Under torchrun (``ctxseg eval``, or training's process group) each process labels its
    part of the batches, joining the processes into a group if none exists, and every
    process returns the metrics of the whole dataset; only the first draws progress. A
    sample is labelled in the batch one process would give it, so the metrics are those
    of one process.

    :param metrics: measures beside the confusion matrix's (:class:`~ctxseg.interfaces.Metric`),
        their results merged into the returned metrics.
    :param keep: how many ``(index, image, mask, prediction)`` examples to return for pictures
        (those among this process's samples).
    :param source: the spec the metrics come from, which an error in building one names.
    """
    with distributed.session(inference.runtime.device):
        return _evaluate(inference, dataset, metrics, keep=keep, progress=progress and distributed.rank() == 0,
                         source=source)


def _evaluate(inference: Inference, dataset: SegmentationDataset, metrics: Sequence[MetricRef], *, keep: int,
              progress: bool, source: str) -> tuple[dict[str, Any], list[tuple[int, Tensor, Tensor, Tensor]]]:
    confusion = ConfusionMatrix(len(dataset.classes), dataset.ignore_index)
    measures = [ref.build(dataset.classes, dataset.ignore_index, key=f"metrics[{i}]", source=source)
                for i, ref in enumerate(metrics)]
    unsummed = [ref.name for ref, measure in zip(metrics, measures, strict=True) if not measure.sums]
    if distributed.world_size() > 1 and unsummed:
        raise CtxsegError(f"metric {unsummed[0]!r} declares no 'sums', so it cannot be evaluated across "
                          f"{distributed.world_size()} processes; evaluate it in one process (ctxseg eval)")
    kept = []
    mine = distributed.shard(len(dataset), inference.test.batch)  # each process's batches; the sums are added up below
    loader = DataLoader(Subset(dataset, mine), batch_size=None, num_workers=inference.spec.data.workers)
    samples = zip(mine, tqdm(loader, total=len(mine), desc="eval", leave=False, disable=not progress))
    for batch in iter(lambda: list(itertools.islice(samples, inference.test.batch)), []):
        predictions = inference.predict_many([image for _, (image, _) in batch])
        for (index, (image, mask)), prediction in zip(batch, predictions, strict=True):
            for measure in (confusion, *measures):
                measure.update(prediction, mask)
            if index < keep:
                kept.append((index, image, mask, prediction))
    distributed.all_sum(confusion.matrix)
    for measure in measures:
        for name in measure.sums:
            distributed.all_sum(getattr(measure, name))
    results = confusion.compute(dataset.classes)
    for measure in measures:
        results.update(measure.compute())
    results["inference"] = {**attrs.asdict(inference.test), "precision": inference.runtime.precision,  # as resolved
                            "channels_last": inference.runtime.channels_last}
    return results, kept
