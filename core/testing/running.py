"""Contracts of the extension points that change how ctxseg runs and scores a model: passes and metrics."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch
from hypothesis import given
from hypothesis import strategies as st

from ctxseg.registry import Kind
from ctxseg.testing._harness import (
    _SEED,
    BATCH,
    _construct,
    _describe,
    _fail,
    _make_config,
    _seeded,
    _settings,
    _single_threaded,
    _who,
)

__all__ = ["check_metric", "check_passes"]

_PROBE_MODEL = {
    "backbone": {"name": "base.resnet", "depth": 18, "output_stride": 8},
    "context": [{"name": "base.fcn", "channels": 8}],
    "batch_norm": "frozen_statistics",  # several passes over one batch see the same statistics
}
"""A small ResNet-18 FCN at output stride 8 that a way of running a model is checked on."""


@_single_threaded
def check_passes(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 3) -> None:
    """Runs a ResNet-18 FCN (output stride 8, 3 classes) in training and at inference.

    For images ``(2, 3, h, w)``, h and w multiples of 8 from 16 to 40: ``backward``
    calls the objective with labels of its outputs' size, returns the sum of the
    passes' shares of one batch's loss (a positive scalar tensor or float, at most the sum of the
    objective's values) and leaves a gradient on the classifier;
    ``inference(model)`` maps images to finite ``{"out": (2, 3, h, w)}`` scores, in eval
    mode, without changing the model's parameters.
    """
    from ctxseg.model import SegmentationModel
    from ctxseg.spec import spec_from_dict

    who = _who(Kind.PASSES, cls, name)
    config = _make_config(who, cls, config)
    spec = spec_from_dict({"model": _PROBE_MODEL}, source="ctxseg.testing probe model")

    @_settings(max_examples)
    @given(rows=st.integers(2, 5), cols=st.integers(2, 5), seed=_SEED)
    def passes_example(rows: int, cols: int, seed: int) -> None:
        size = (8 * rows, 8 * cols)
        where = f"images {(BATCH, 3, *size)}"
        with _seeded(seed):
            model = SegmentationModel(spec.model, 3, pretrained=False).train()
            passes = _construct(who, lambda: cls(config, model, "probe"), where)
            images, masks = torch.randn(BATCH, 3, *size), torch.randint(0, 3, (BATCH, *size))
            values = []

            def objective(outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
                if outputs["out"].shape[-2:] != labels.shape[-2:]:
                    _fail(who, f"objective got outputs {tuple(outputs['out'].shape)} and labels "
                               f"{tuple(labels.shape)} of another size ({where})")
                value = torch.nn.functional.cross_entropy(outputs["out"], labels)
                values.append(value.item())
                return value

            total = passes.backward(model, images, masks, objective, contextlib.nullcontext)
            if not values:
                _fail(who, f"backward never called the objective ({where})")
            if isinstance(total, torch.Tensor) and total.shape == () and not total.requires_grad:
                total = total.item()  # a scalar tensor, left unread on the device in training
            if not (isinstance(total, float) and 0 < total <= sum(values) * (1 + 1e-6)):
                _fail(who, f"backward returned {_describe(total)} {total!r}, not the passes' shares of the "
                           f"objective's values {values} ({where})")
            grad = model.classifier[1].weight.grad
            if grad is None or not grad.abs().sum() > 0:
                _fail(who, f"backward left no gradient on the classifier ({where})")

            before = [p.detach().clone() for p in model.parameters()]
            module = passes.inference(model)
            module.eval()
            with torch.no_grad():
                out = module(images)["out"]
            if tuple(out.shape) != (BATCH, 3, *size) or not torch.isfinite(out).all():
                _fail(who, f"inference gave {_describe(out)}, expected finite scores {(BATCH, 3, *size)} ({where})")
            if any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True)):
                _fail(who, f"inference changed the model's parameters ({where})")

    passes_example()


@_single_threaded
def check_metric(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 8) -> None:
    """Accumulates label maps into named finite numbers, blind to ignored pixels.

    For 2-5 classes and maps of 1-16 pixels a side, two updates: ``compute`` returns a
    dict of string names to finite numbers, the same when the prediction changes only
    at pixels whose label is ``ignore_index``.
    """
    who = _who(Kind.METRIC, cls, name)
    config = _make_config(who, cls, config)

    @_settings(max_examples)
    @given(classes=st.integers(2, 5), height=st.integers(1, 16), width=st.integers(1, 16),
           ignore_index=st.sampled_from((255, -1)), seed=_SEED)
    def metric_example(classes: int, height: int, width: int, ignore_index: int, seed: int) -> None:
        names = [f"class{i}" for i in range(classes)]
        where = f"{classes} classes, maps ({height}, {width}), ignore_index={ignore_index}"
        with _seeded(seed):
            target = torch.randint(0, classes, (2, height, width))
            target[torch.rand(2, height, width) < 0.3] = ignore_index
            target[0, 0, 0] = 0  # at least one labelled pixel
            prediction = torch.randint(0, classes, (2, height, width))
            changed = torch.where(target == ignore_index, torch.randint(0, classes, prediction.shape), prediction)
        results = []
        for predicted in (prediction, changed):
            metric = _construct(who, lambda: cls(config, names, ignore_index), where)
            for i in range(2):
                metric.update(predicted[i], target[i])
            results.append(metric.compute())
        result = results[0]
        if not isinstance(result, dict) or not result:
            _fail(who, f"compute returned {_describe(result)}, expected a dict of named numbers ({where})")
        for key, value in result.items():
            if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                _fail(who, f"compute gave {key!r}: {value!r}, expected a finite number under a name ({where})")
        if results[1] != result:
            _fail(who, f"predictions at ignored pixels changed the result: {result} vs {results[1]} ({where})")

    metric_example()
