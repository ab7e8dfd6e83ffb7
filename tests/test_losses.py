"""Dice, Lovasz-softmax, focal and the weighted sum against independent values: segmentation_models_pytorch's
implementations (values and gradients, on random scores with ignored pixels) and cases computed by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from segmentation_models_pytorch import losses as smp

from ctxseg.builtin.losses import CrossEntropy, Dice, Focal, LovaszSoftmax, Sum
from ctxseg.errors import SpecError
from ctxseg.spec import spec_from_dict
from ctxseg.spec.convert import structure
from ctxseg.testing.tolerance import rounding_bound

IGNORE = 255


def _inputs(classes: int, batch: int, h: int, w: int, ignored: float, scale: float,
            seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores (float64, rounded to float32 values) and labels with ignored pixels, one at least labelled."""
    g = torch.Generator().manual_seed(seed)
    scores = (torch.randn(batch, classes, h, w, generator=g) * scale).float().double()
    target = torch.randint(0, classes, (batch, h, w), generator=g)
    target[torch.rand(batch, h, w, generator=g) < ignored] = IGNORE
    target[0, 0, 0] = 0
    return scores, target


def _value_and_grad(loss, scores: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores = scores.clone().requires_grad_(True)
    value = loss(scores, target)
    value.backward()
    return value.detach().double(), scores.grad.double()


def _assert_matches(ours, theirs, scores: torch.Tensor, target: torch.Tensor) -> None:
    """ours (float32 inside) against theirs within float32's rounding of a sum over the pixels' terms."""
    value, grad = _value_and_grad(ours, scores, target)
    expected, expected_grad = _value_and_grad(theirs, scores, target)
    terms = 8 * scores.numel()  # a few roundings per pixel and class: softmax, products, sums
    assert value.item() == pytest.approx(expected.item(), abs=rounding_bound(torch.float32, terms, 1.0))
    scale = max(expected_grad.abs().max().item(), 1.0 / scores.numel())
    assert torch.allclose(grad, expected_grad, rtol=0, atol=rounding_bound(torch.float32, terms, scale))
    assert (grad.movedim(1, -1)[target == IGNORE] == 0).all()


_RANDOM = {"classes": st.integers(2, 6), "batch": st.integers(1, 3), "h": st.integers(1, 8), "w": st.integers(1, 8),
           "ignored": st.sampled_from((0.0, 0.3, 0.8)), "scale": st.sampled_from((0.1, 1.0, 5.0)),
           "seed": st.integers(0, 2**31 - 1)}


@pytest.mark.numerics
@settings(max_examples=30, deadline=None)
@given(smooth=st.sampled_from((0.0, 1.0)), **_RANDOM)
def test_dice_matches_smp(smooth: float, classes: int, batch: int, h: int, w: int, ignored: float, scale: float,
                          seed: int) -> None:
    scores, target = _inputs(classes, batch, h, w, ignored, scale, seed)
    present = target[target != IGNORE].unique().tolist()
    # smp averages over the classes it is given, and its smoothing term is s/2 of Milletari's (2I + s)/(|p| + |y| + s)
    theirs = smp.DiceLoss("multiclass", classes=present, ignore_index=IGNORE, smooth=smooth / 2)
    _assert_matches(Dice(Dice.Config(smooth=smooth), IGNORE), theirs, scores, target)


@pytest.mark.numerics
@settings(max_examples=30, deadline=None)
@given(per_image=st.booleans(), **_RANDOM)
def test_lovasz_softmax_matches_smp(per_image: bool, classes: int, batch: int, h: int, w: int, ignored: float,
                                    scale: float, seed: int) -> None:
    scores, target = _inputs(classes, batch, h, w, ignored, scale, seed)
    if per_image:  # smp fails on an image without labelled pixels; ctxseg leaves it out of the mean
        target[:, 0, 0] = 0
    theirs = smp.LovaszLoss("multiclass", ignore_index=IGNORE, per_image=per_image)
    # in float32: smp's Lovasz gradient is float32 whatever the scores (its dot product then fails on float64)
    _assert_matches(LovaszSoftmax(LovaszSoftmax.Config(per_image=per_image), IGNORE), theirs, scores.float(), target)


@pytest.mark.numerics
@settings(max_examples=30, deadline=None)
@given(gamma=st.sampled_from((0.0, 0.5, 2.0)), alpha=st.sampled_from((None, 0.25)), **_RANDOM)
def test_focal_matches_smp(gamma: float, alpha: float | None, classes: int, batch: int, h: int, w: int,
                           ignored: float, scale: float, seed: int) -> None:
    scores, target = _inputs(classes, batch, h, w, ignored, scale, seed)
    theirs = smp.FocalLoss("multiclass", ignore_index=IGNORE, gamma=gamma, alpha=alpha)
    _assert_matches(Focal(Focal.Config(gamma=gamma, alpha=alpha), IGNORE), theirs, scores, target)


def _pixels(probabilities: list[list[float]], labels: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``(1, K, 1, P)`` whose softmax is ``probabilities`` (one row per pixel), and labels ``(1, 1, P)``."""
    scores = torch.tensor(probabilities).log().T[None, :, None]
    return scores, torch.tensor(labels)[None, None]


def test_dice_by_hand() -> None:
    # class 0: I = 0.8, |p| = 0.8 + 0.4, |y| = 1: dice 1.6 / 2.2; class 1: I = 0.6, |p| = 0.2 + 0.6: dice 1.2 / 1.8.
    # The third pixel is ignored, so its probabilities count nowhere.
    scores, target = _pixels([[0.8, 0.2], [0.4, 0.6], [0.9, 0.1]], [0, 1, IGNORE])
    expected = ((1 - 1.6 / 2.2) + (1 - 1.2 / 1.8)) / 2
    assert Dice(Dice.Config(), IGNORE)(scores, target).item() == pytest.approx(expected, rel=1e-6)
    # only class 0 present: class 1 is left out of the mean; smoothing 1: (2 * 0.8 + 1) / (0.8 + 1 + 1)
    scores, target = _pixels([[0.8, 0.2]], [0])
    assert Dice(Dice.Config(smooth=1.0), IGNORE)(scores, target).item() == pytest.approx(1 - 2.6 / 2.8, rel=1e-6)


def test_lovasz_softmax_at_hard_predictions_is_the_jaccard_loss() -> None:
    """Berman et al.: the Lovasz extension equals the set function at binary errors, so one-hot scores give
    the mean over present classes of 1 - IoU. Labels 0 0 1 1, predicted 0 1 1 1: IoU 1/2 and 2/3."""
    scores = 100.0 * F.one_hot(torch.tensor([[[0, 1, 1, 1, 0]]]), 3).permute(0, 3, 1, 2).float()
    target = torch.tensor([[[0, 0, 1, 1, IGNORE]]])
    loss = LovaszSoftmax(LovaszSoftmax.Config(), IGNORE)(scores, target)
    assert loss.item() == pytest.approx(((1 - 1 / 2) + (1 - 2 / 3)) / 2, rel=1e-6)


def test_lovasz_softmax_per_image_averages_the_images_with_labels() -> None:
    scores, target = _inputs(3, 3, 4, 4, 0.0, 1.0, seed=1)
    target[1] = IGNORE
    loss = LovaszSoftmax(LovaszSoftmax.Config(per_image=True), IGNORE)
    batch = LovaszSoftmax(LovaszSoftmax.Config(), IGNORE)
    expected = (batch(scores[:1], target[:1]) + batch(scores[2:], target[2:])) / 2
    assert loss(scores, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_focal_by_hand() -> None:
    # logits 0: every sigmoid is 1/2, so each class's term is (1/2)^2 * log 2; alpha weighs the
    # labelled class by 0.25 and the other by 0.75, averaging to half
    scores, target = torch.zeros(1, 2, 1, 2), torch.tensor([[[0, IGNORE]]])
    assert Focal(Focal.Config(), IGNORE)(scores, target).item() == pytest.approx(0.25 * math.log(2), rel=1e-6)
    alpha = Focal(Focal.Config(alpha=0.25), IGNORE)(scores, target)
    assert alpha.item() == pytest.approx(0.5 * 0.25 * math.log(2), rel=1e-6)
    # gamma 0 without alpha: torch's one-vs-rest binary cross-entropy
    scores, target = _inputs(4, 2, 3, 5, 0.3, 2.0, seed=2)
    valid = target != IGNORE
    bce = F.binary_cross_entropy_with_logits(scores.movedim(1, -1)[valid], F.one_hot(target[valid], 4).double())
    assert Focal(Focal.Config(gamma=0.0), IGNORE)(scores, target).item() == pytest.approx(bce.item(), rel=1e-6)


def test_focal_gradient_is_finite_where_the_probability_rounds_to_one() -> None:
    """(1 - p_t)^gamma for gamma < 1 has an infinite derivative at p_t = 1; computed in log space it stays finite."""
    scores = torch.tensor([[[[200.0]], [[-200.0]]]], requires_grad=True)
    Focal(Focal.Config(gamma=0.5), IGNORE)(scores, torch.zeros(1, 1, 1, dtype=torch.long)).backward()
    assert torch.isfinite(scores.grad).all()


def test_sum_weighs_its_parts() -> None:
    config = structure({"parts": [{"name": "base.cross_entropy", "label_smoothing": 0.1},
                                  {"name": "base.dice", "weight": 0.5}]}, Sum.Config, source="test")
    scores, target = _inputs(4, 2, 5, 5, 0.3, 1.0, seed=3)
    parts = [CrossEntropy(CrossEntropy.Config(label_smoothing=0.1), IGNORE), Dice(Dice.Config(), IGNORE)]
    value, grad = _value_and_grad(Sum(config, IGNORE), scores, target)
    values, grads = zip(*(_value_and_grad(part, scores, target) for part in parts), strict=True)
    assert value.item() == pytest.approx(values[0].item() + 0.5 * values[1].item(), rel=1e-6)
    assert torch.allclose(grad, grads[0] + 0.5 * grads[1], rtol=1e-5, atol=1e-7)


SPEC = {"model": {"backbone": {"name": "base.resnet", "depth": 18}}}


def test_sum_in_a_spec_round_trips() -> None:
    loss = {"name": "base.sum", "parts": [{"name": "base.cross_entropy"},
                                          {"name": "base.lovasz_softmax", "weight": 0.5}]}
    spec = spec_from_dict({**SPEC, "loss": loss})
    assert [(p.name, p.weight) for p in spec.loss.config.parts] == [("base.cross_entropy", 1.0),
                                                                    ("base.lovasz_softmax", 0.5)]
    assert spec.to_dict()["loss"]["parts"][1] == {"name": "base.lovasz_softmax", "weight": 0.5, "per_image": False}
    assert spec_from_dict(spec.to_dict()) == spec
    assert isinstance(spec.loss.build(IGNORE, key="loss"), Sum)


@pytest.mark.parametrize(("loss", "message"), [
    ({"name": "base.sum"}, "loss: 'parts' must name at least one loss"),
    ({"name": "base.sum", "parts": [{"name": "base.dise"}]}, "loss.parts[0]: unknown loss 'base.dise'"),
    ({"name": "base.sum", "parts": [{"name": "base.focal", "weight": -1.0}]}, "loss.parts[0]"),
    ({"name": "base.focal", "alpha": 1.5}, "loss: 'alpha' must be <= 1.0"),
])
def test_loss_spec_errors(loss: dict, message: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_dict({**SPEC, "loss": loss}, source="spec.toml")
    assert message in str(info.value), str(info.value)
