"""The papers' test protocols: an image scored whole or by a sliding window, over scales and flips.

PSPNet (Sec. 5) averages the class probabilities of several scales ('MS', Tables 3-4)
and mirrored views; its reference implementation, like MMSegmentation, scores
Cityscapes' 2048 x 1024 images by overlapping windows, averaging where they overlap.
Everything here works on normalized image batches and a ``score`` function (a model
already on its device and precision), so it is tested with toy models.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ctxseg.model.blocks import upsample
from ctxseg.spec import TestSpec

__all__ = ["probabilities", "window_starts"]

Score = Callable[[Tensor], Tensor]
"""Normalized images ``(n, 3, h, w)`` -> class scores ``(n, K, h, w)`` (float32)."""


def probabilities(score: Score, images: Tensor, test: TestSpec) -> Tensor:
    """Class probabilities ``(B, K, H, W)`` of normalized images ``(B, 3, H, W)``: the mean,
    over the views ``test`` names (scales x mirror), of each view's softmax resized back."""
    size = images.shape[-2:]
    total, views = None, 0
    for scale in test.scales:
        scaled = images if scale == 1 else F.interpolate(
            images, size=(max(1, round(size[0] * scale)), max(1, round(size[1] * scale))),
            mode="bilinear", align_corners=False)
        for mirrored in (False, True) if test.flip else (False,):
            view = scaled.flip(-1) if mirrored else scaled
            scores = _slide(score, view, test) if test.mode == "slide" else _whole(score, view, test.batch)
            probs = scores.softmax(1)
            probs = upsample(probs.flip(-1) if mirrored else probs, size)
            total = probs if total is None else total + probs
            views += 1
    return total / views


def _whole(score: Score, images: Tensor, batch: int) -> Tensor:
    return torch.cat([score(images[i:i + batch]) for i in range(0, len(images), batch)])


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Offsets of the windows along one side: ``stride`` apart from 0, the last one flush
    with the end, so that every pixel is covered (one window when ``length <= crop``)."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop, stride))
    return [*starts, length - crop]


def _slide(score: Score, images: Tensor, test: TestSpec) -> Tensor:
    """Scores of overlapping ``crop`` x ``crop`` windows averaged where they overlap; an image
    smaller than a window is padded at the bottom and right with 0 (the mean colour, once
    normalized) and the result cropped back."""
    height, width = images.shape[-2:]
    crop = test.crop
    padded = F.pad(images, (0, max(0, crop - width), 0, max(0, crop - height)))
    rows, cols = padded.shape[-2:]
    windows = [(i, y, x) for i in range(len(images))
               for y in window_starts(rows, crop, test.step) for x in window_starts(cols, crop, test.step)]
    total = count = None
    for first in range(0, len(windows), test.batch):
        chunk = windows[first:first + test.batch]
        scores = score(torch.stack([padded[i, :, y:y + crop, x:x + crop] for i, y, x in chunk]))
        if total is None:
            total = scores.new_zeros(len(images), scores.shape[1], rows, cols)
            count = scores.new_zeros(rows, cols)
        for (i, y, x), window in zip(chunk, scores, strict=True):
            total[i, :, y:y + crop, x:x + crop] += window
            if i == 0:
                count[y:y + crop, x:x + crop] += 1
    return (total / count)[..., :height, :width]
