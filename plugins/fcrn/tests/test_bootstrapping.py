"""Online bootstrapping (Sec. 3.3, Eq. 1, Table 4): which pixels it keeps, its value, its gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxseg.errors import SpecError
from ctxseg.spec import spec_from_dict
from ctxseg.testing import check_loss
from ctxseg_fcrn.bootstrapping import OnlineBootstrapping

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability

IGNORE = 255


def _batch(seed: int, classes: int, height: int, width: int, ignored: float):
    generator = torch.Generator().manual_seed(seed)
    scores = (3 * torch.randn(2, classes, height, width, generator=generator)).requires_grad_()
    target = torch.randint(0, classes, (2, height, width), generator=generator)
    target[torch.rand(2, height, width, generator=generator) < ignored] = IGNORE
    return scores, target


def _loss(**config) -> OnlineBootstrapping:
    return OnlineBootstrapping(OnlineBootstrapping.Config(**config), IGNORE)


def _nll(scores, target):
    return F.cross_entropy(scores.detach(), target, ignore_index=IGNORE, reduction="none")


shapes = dict(seed=st.integers(0, 2**31 - 1), classes=st.integers(2, 5), height=st.integers(1, 9),
              width=st.integers(1, 9), ignored=st.sampled_from((0.0, 0.3, 0.9)))


def test_contract():
    for config in ({"top_k": 3}, {"top_k": 0, "threshold": 0.6, "min_kept": 4}, {"top_k": 0}):
        check_loss(OnlineBootstrapping, config)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(**shapes)
def test_k_at_least_the_valid_pixels_is_plain_cross_entropy(seed, classes, height, width, ignored):
    scores, target = _batch(seed, classes, height, width, ignored)
    if (target != IGNORE).sum() == 0:
        target[0, 0, 0] = 0
    plain = F.cross_entropy(scores, target, ignore_index=IGNORE)
    torch.testing.assert_close(_loss(top_k=height * width)(scores, target), plain)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(k=st.integers(1, 40), **shapes)
def test_top_k_keeps_the_k_hardest_pixels_of_each_crop_and_only_they_learn(k, seed, classes, height, width, ignored):
    scores, target = _batch(seed, classes, height, width, ignored)
    loss_fn = _loss(top_k=k)
    loss = loss_fn(scores, target)
    loss.backward()
    learns = (scores.grad != 0).any(1)  # (2, H, W)
    nll, valid = _nll(scores, target), target != IGNORE
    kept = loss_fn.hard_pixels(nll, valid)
    assert learns.equal(kept) and not (kept & ~valid).any()
    for crop in range(2):
        n_valid = int(valid[crop].sum())
        assert int(kept[crop].sum()) == min(k, n_valid)  # "we keep all of them" when fewer
        if kept[crop].any() and (valid[crop] & ~kept[crop]).any():
            assert nll[crop][kept[crop]].min() >= nll[crop][valid[crop] & ~kept[crop]].max()
    expected = nll[kept].mean() if kept.any() else torch.tensor(0.0)
    torch.testing.assert_close(loss.detach(), expected)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(t=st.sampled_from((0.2, 0.5, 0.9)), min_kept=st.integers(0, 30), **shapes)
def test_threshold_keeps_pixels_below_t_and_raises_t_for_a_minimum(t, min_kept, seed, classes, height, width, ignored):
    """Eq. 1: pixels whose ground-truth probability is below t; t is raised per crop so
    that at least min_kept of the hardest are kept."""
    scores, target = _batch(seed, classes, height, width, ignored)
    loss_fn = _loss(top_k=0, threshold=t, min_kept=min_kept)
    nll, valid = _nll(scores, target), target != IGNORE
    kept = loss_fn.hard_pixels(nll, valid)
    probability = torch.exp(-nll)
    for crop in range(2):
        below = valid[crop] & (probability[crop] < t)
        if int(below.sum()) >= min_kept:
            assert kept[crop].equal(below)
        else:
            assert int(kept[crop].sum()) == min(min_kept, int(valid[crop].sum()))
            assert (kept[crop] | ~below).all()  # the pixels below t are among them
            if (valid[crop] & ~kept[crop]).any():
                assert probability[crop][kept[crop]].max() <= probability[crop][valid[crop] & ~kept[crop]].min()
    expected = nll[kept].mean() if kept.any() else torch.tensor(0.0)
    torch.testing.assert_close(loss_fn(scores, target).detach(), expected)


def test_easy_pixels_are_left_out():
    """A crop of confidently right pixels and one wrong pixel: only the wrong one is learned."""
    scores = torch.full((1, 2, 4, 4), -10.0)
    scores[:, 0] = 10.0
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 2, 3] = 1
    scores.requires_grad_()
    loss = _loss(top_k=1)(scores, target)
    assert loss.item() == pytest.approx(20.0, abs=1e-3)
    loss.backward()
    assert (scores.grad != 0).any(1)[0].nonzero().tolist() == [[2, 3]]
    assert _loss(top_k=0, threshold=0.5)(scores, target).item() == pytest.approx(20.0, abs=1e-3)


@pytest.mark.parametrize(("table", "message"), [
    ({"top_k": 512, "threshold": 0.7}, "loss: 'top_k' keeps a fixed number of pixels; 'threshold' and 'min_kept' "
                                       "apply only with top_k = 0"),
    ({"threshold": 0.0, "top_k": 0}, "loss: 'threshold' must be > 0.0: 0.0"),
    ({"top_k": -1}, "loss: 'top_k' must be >= 0: -1"),
])
def test_bad_settings_name_the_key(table, message):
    with pytest.raises(SpecError) as error:
        spec_from_dict({"model": {"backbone": {"name": "base.resnet"}},
                        "loss": {"name": "fcrn.bootstrapping", **table}}, source="spec.toml")
    assert f"spec.toml: {message}" in str(error.value)
