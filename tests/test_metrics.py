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
