"""Losses: pixel-wise cross-entropy (every paper here trains with it), and Dice, Lovasz-softmax,
focal and a weighted sum of losses for imbalanced classes.

Dice, Lovasz-softmax and focal follow segmentation_models_pytorch's multi-class definitions
(its tests are their oracle). Dice and Lovasz-softmax are measures of a whole batch, not
means over its pixels: with ``[run] accumulate`` above 1, each micro-batch's value is
weighted by its share of the labelled pixels, as for every loss, which approximates the
value of the one big batch rather than equalling it.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctxseg.interfaces import Loss
from ctxseg.spec import LossRef

__all__ = ["CrossEntropy", "Dice", "Focal", "LovaszSoftmax", "Sum", "WeightedLoss"]

EPS = 1e-7
"""Floor of the Dice denominator, so that a class with no probability mass divides by no zero."""


def _labelled(scores: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
    """Scores ``(P, K)`` (float32) and labels ``(P,)`` of the labelled pixels."""
    valid = target != ignore_index
    return scores.float().movedim(1, -1)[valid], target[valid]


class CrossEntropy(Loss):
    """Mean cross-entropy over the labelled pixels; an all-ignored batch gives 0, not NaN."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        label_smoothing: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(1.0)])

    def __init__(self, config: Config, ignore_index: int):
        super().__init__()
        self.config = config
        self.ignore_index = ignore_index

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        losses = F.cross_entropy(
            scores.float(), target, ignore_index=self.ignore_index,
            label_smoothing=self.config.label_smoothing, reduction="none",
        )  # (B, H, W), 0 at ignored pixels
        valid = (target != self.ignore_index).sum().clamp_min(1)
        return losses.sum() / valid


class Dice(Loss):
    """Soft Dice loss ``1 - (2 |p * y| + s) / (|p| + |y| + s)`` per class over the batch's labelled
    pixels (``p`` the softmax, ``y`` the one-hot labels), averaged over the classes present in
    the labels.

    Milletari et al., "V-Net", 2016, Eq. 1, in segmentation_models_pytorch's multi-class form;
    its ``DiceLoss`` averages over all K classes, the absent ones counting 0.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        smooth: float = attrs.field(default=0.0, validator=attrs.validators.ge(0.0))
        """``s``, added to numerator and denominator."""

    def __init__(self, config: Config, ignore_index: int):
        super().__init__()
        self.config = config
        self.ignore_index = ignore_index

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        scores, labels = _labelled(scores, target, self.ignore_index)
        probs = scores.softmax(dim=1)  # (P, K)
        onehot = F.one_hot(labels, scores.shape[1]).to(probs.dtype)
        smooth = self.config.smooth
        dice = (2 * (probs * onehot).sum(0) + smooth) / ((probs + onehot).sum(0) + smooth).clamp_min(EPS)
        present = onehot.sum(0) > 0
        return ((1 - dice) * present).sum() / present.sum().clamp_min(1)


class LovaszSoftmax(Loss):
    """The Lovasz extension of the Jaccard loss on the softmax, averaged over the classes
    present in the labels (of the batch, or of each image then over the images).

    Berman, Rannen Triki and Blaschko, "The Lovasz-Softmax loss", CVPR 2018, Eq. 8 and
    Alg. 1: each class's errors ``|y - p|`` sorted in decreasing order, dotted with the
    gradient of the Lovasz extension of the Jaccard index.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        per_image: bool = False
        """Average over the images (those with a labelled pixel) instead of one value per batch."""

    def __init__(self, config: Config, ignore_index: int):
        super().__init__()
        self.config = config
        self.ignore_index = ignore_index

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        if not self.config.per_image:
            return self.lovasz(*_labelled(scores, target, self.ignore_index))
        images = [_labelled(s[None], t[None], self.ignore_index) for s, t in zip(scores, target, strict=True)]
        losses = [self.lovasz(s, t) for s, t in images if len(t)]
        return torch.stack(losses).mean() if losses else scores.float().sum() * 0

    @staticmethod
    def lovasz(scores: Tensor, labels: Tensor) -> Tensor:
        """The loss of pixels' scores ``(P, K)`` and labels ``(P,)``; 0 for no pixels."""
        probs = scores.softmax(dim=1)
        onehot = F.one_hot(labels, scores.shape[1]).to(probs.dtype)
        errors, order = (onehot - probs).abs().sort(dim=0, descending=True)
        sorted_labels = onehot.gather(0, order)
        positives = sorted_labels.sum(0)
        intersection = positives - sorted_labels.cumsum(0)
        union = positives + (1 - sorted_labels).cumsum(0)
        jaccard = 1 - intersection / union  # the Jaccard loss of the first 1..P errors; union >= 1
        gradient = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        present = positives > 0
        return ((errors * gradient).sum(0) * present).sum() / present.sum().clamp_min(1)


class Focal(Loss):
    """Sigmoid focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` of each class against the rest,
    averaged over the labelled pixels and the classes.

    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, Eq. 5, in
    segmentation_models_pytorch's multi-class form; gamma = 0 without alpha is the
    one-vs-rest binary cross-entropy.
    """

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        gamma: float = attrs.field(default=2.0, validator=attrs.validators.ge(0.0))
        """Focusing parameter: how much the well-classified pixels are down-weighted (Lin et al.: 2)."""
        alpha: float | None = attrs.field(
            default=None, validator=attrs.validators.optional([attrs.validators.ge(0.0), attrs.validators.le(1.0)]))
        """Weight of a class's own pixels, ``1 - alpha`` that of the others; unset: 1 for both."""

    def __init__(self, config: Config, ignore_index: int):
        super().__init__()
        self.config = config
        self.ignore_index = ignore_index

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        scores, labels = _labelled(scores, target, self.ignore_index)
        onehot = F.one_hot(labels, scores.shape[1]).to(scores.dtype)
        margin = scores * (2 * onehot - 1)  # log(p_t / (1 - p_t))
        # log p_t and log(1 - p_t) as log-sigmoids: finite gradients for any gamma, also where p_t rounds to 1
        losses = -torch.exp(self.config.gamma * F.logsigmoid(-margin)) * F.logsigmoid(margin)
        if self.config.alpha is not None:
            losses = losses * (self.config.alpha * onehot + (1 - self.config.alpha) * (1 - onehot))
        return losses.sum() / max(losses.numel(), 1)


@attrs.frozen
class WeightedLoss(LossRef):
    """A part of ``base.sum``: a loss table with its weight."""

    weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))


def _some_parts(instance: object, attribute: attrs.Attribute, value: tuple[WeightedLoss, ...]) -> None:
    if not value:
        raise ValueError("'parts' must name at least one loss, e.g. parts = [{ name = \"base.cross_entropy\" }]")


class Sum(Loss):
    """``sum_i weight_i * loss_i``: the parts' losses, each a loss table with a ``weight``
    (default 1), against the same labels."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        parts: tuple[WeightedLoss, ...] = attrs.field(default=(), validator=_some_parts)

    def __init__(self, config: Config, ignore_index: int):
        super().__init__()
        self.config = config
        self.weights = [part.weight for part in config.parts]
        self.parts = nn.ModuleList(part.build(ignore_index, key=f"loss.parts[{i}]")
                                   for i, part in enumerate(config.parts))

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        return sum(w * loss(scores, target) for w, loss in zip(self.weights, self.parts, strict=True))
