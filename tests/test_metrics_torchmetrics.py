"""ctxseg's IoU against an independent implementation: torchmetrics' MulticlassJaccardIndex."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.classification import MulticlassJaccardIndex

from ctxseg.metrics.confusion import ConfusionMatrix

IGNORE = 255


@settings(max_examples=40, deadline=None)
@given(classes=st.integers(2, 12), batches=st.integers(1, 3), h=st.integers(1, 12), w=st.integers(1, 12),
       ignored=st.floats(0.0, 0.5), seed=st.integers(0, 2**31 - 1))
def test_iou_matches_torchmetrics(classes: int, batches: int, h: int, w: int, ignored: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    ours = ConfusionMatrix(classes, IGNORE)
    theirs = MulticlassJaccardIndex(classes, average="none", ignore_index=IGNORE, zero_division=float("nan"))
    for _ in range(batches):
        # a few classes only, so that some are absent from labels and predictions alike
        present = torch.randperm(classes, generator=g)[: max(1, classes // 2)]
        target = present[torch.randint(0, len(present), (2, h, w), generator=g)]
        target[torch.rand(2, h, w, generator=g) < ignored] = IGNORE
        prediction = torch.where(torch.rand(2, h, w, generator=g) < 0.6, target,
                                 torch.randint(0, classes, (2, h, w), generator=g))
        prediction[prediction == IGNORE] = 0
        ours.update(prediction, target)
        theirs.update(prediction, target)
    expected = theirs.compute().double()
    iou = ours.iou()
    # NaN where a class is in neither the labels nor the predictions (of labelled pixels), in both.
    assert torch.equal(iou.isnan(), expected.isnan())
    assert torch.allclose(iou.nan_to_num(), expected.nan_to_num(), atol=1e-6)
    assert ours.compute()["mean_iou"] == pytest.approx(float(expected.nanmean()), abs=1e-6, nan_ok=True)
