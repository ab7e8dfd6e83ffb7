"""Model assembly: a head or fusion that emits the class scores is not followed by a classifier."""

from __future__ import annotations

import types

import attrs
import pytest
import torch
from torch import Tensor, nn

from ctxseg.errors import SpecError
from ctxseg.interfaces import ContextHead
from ctxseg.model import SegmentationModel
from ctxseg.registry import Component, default_registry, hookimpl, reset_default_registry
from ctxseg.spec import spec_from_dict

BACKBONE = {"name": "base.resnet", "depth": 18, "output_stride": 8}


class Mislabelled(ContextHead):
    """Says it emits the class scores but keeps its input's channels."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        pass

    emits_scores = True

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        self.out_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        return x


@pytest.fixture
def mislabelled_registered():
    plugin = types.SimpleNamespace(ctxseg_components=hookimpl(
        lambda: [Component("context_head", "test.mislabelled", Mislabelled)]))
    default_registry().register(plugin, "test-mislabelled", entry_point="test")
    yield
    reset_default_registry()


def model(*context: dict) -> SegmentationModel:
    spec = spec_from_dict({"model": {"backbone": BACKBONE, "context": list(context)}})
    return SegmentationModel(spec.model, 5, pretrained=False, source="spec.toml")


def test_a_feature_head_gets_a_classifier_and_a_score_head_none():
    features = model({"name": "base.fcn", "channels": 16})
    assert isinstance(features.classifier[1], nn.Conv2d) and features.classifier[1].in_channels == 16
    scores = model({"name": "base.fcn", "channels": 16}, {"name": "base.scores"})
    assert scores.context[-1].emits_scores and isinstance(scores.classifier, nn.Identity)
    assert scores.eval()(torch.zeros(1, 3, 32, 32))["out"].shape == (1, 5, 32, 32)


def test_only_the_last_head_decides():
    model_ = model({"name": "base.scores"}, {"name": "base.fcn", "channels": 16})
    assert isinstance(model_.classifier[1], nn.Conv2d)


def test_a_head_emitting_scores_of_the_wrong_width_is_named(mislabelled_registered):
    with pytest.raises(SpecError, match=r"spec.toml: model.context\[0\]: emits class scores, but 512 channels, "
                                        r"not the 5 classes"):
        model({"name": "test.mislabelled"})
