"""Confusion-matrix metrics against hand-computed values."""

import math

import torch

from ctxseg.metrics.confusion import ConfusionMatrix


def test_metrics_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    prediction = torch.tensor([[0, 1, 1, 1], [2, 0, 0, 1]])
    cm = ConfusionMatrix(3)
    cm.update(prediction, target)
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    m = cm.compute(["a", "b", "c"])
    assert m["pixel_accuracy"] == 5 / 7
    assert math.isclose(m["mean_accuracy"], (1 / 2 + 1 + 1 / 2) / 3)
    iou = [1 / 3, 3 / 4, 1 / 2]
    assert all(math.isclose(m["per_class_iou"][n], v) for n, v in zip("abc", iou))
    assert math.isclose(m["mean_iou"], sum(iou) / 3)
    assert math.isclose(m["frequency_weighted_iou"], (2 * iou[0] + 3 * iou[1] + 2 * iou[2]) / 7)


def test_absent_class_is_left_out_of_the_mean():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    m = cm.compute()
    assert math.isnan(m["per_class_iou"]["2"])
    assert m["mean_iou"] == 1.0


def test_boundary_region_is_within_width_of_a_label_change():
    from ctxseg.metrics.confusion import BoundaryAccuracy

    target = torch.zeros(20, 20, dtype=torch.int64)
    target[:, 10:] = 1
    target[0, 0] = 255  # ignored pixels neither make nor count as boundary
    meter = BoundaryAccuracy(width=3)
    region = meter.boundary(target)
    assert region[:, 7:13].all() and not region[:, :7].any() and not region[:, 13:].any()

    prediction = target.clone()
    prediction[:, 9] = 1  # wrong on a column inside the boundary region
    prediction[5, 0] = 1  # wrong on one internal pixel
    meter.update(prediction, target)
    m = meter.compute()
    assert m["boundary_accuracy"] == 1 - 20 / 120
    assert m["internal_accuracy"] == 1 - 1 / 279
    assert m["boundary_fraction"] == 120 / 399
