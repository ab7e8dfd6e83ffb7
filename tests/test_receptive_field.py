"""The gradient-measured receptive field equals the textbook value on known stacks."""

from __future__ import annotations

import types

import attrs
import pytest
from torch import nn

from ctxseg.interfaces import Backbone
from ctxseg.model import SegmentationModel
from ctxseg.model.summary import receptive_field
from ctxseg.registry import (
    Component,
    default_registry,
    hookimpl,
    reset_default_registry,
)
from ctxseg.spec import spec_from_dict


class Stack(Backbone):
    """3x3 convolutions with the given dilations (stride 1) and a 3x3 max-pool: RF 1 + 2 sum(d) + 2."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        dilations: tuple[int, ...] = (1, 1)

    def __init__(self, config: Config):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, 4, 1)]
        for d in config.dilations:
            layers += [nn.Conv2d(4, 4, 3, padding=d, dilation=d), nn.BatchNorm2d(4), nn.ReLU()]
        layers.append(nn.MaxPool2d(3, stride=1, padding=1))
        self.body = nn.Sequential(*layers)
        self.channels, self.strides = {"out": 4}, {"out": 1}

    def forward(self, images):
        return {"out": self.body(images)}


@pytest.fixture
def stack_registered():
    plugin = types.SimpleNamespace(ctxseg_components=hookimpl(
        lambda: [Component("backbone", "test.stack", Stack)]))
    default_registry().register(plugin, "test-stack")
    yield
    reset_default_registry()


@pytest.mark.parametrize(("dilations", "expected"), [
    ((1,), 5), ((1, 1), 7), ((1, 2, 4), 17), ((1, 1, 2, 4, 8, 16, 1), 69),
])
def test_measured_field_is_exact(stack_registered, dilations, expected):
    spec = spec_from_dict({"model": {"backbone": {"name": "test.stack", "dilations": list(dilations)},
                                     "classifier": {"dropout": 0.0}}})
    model = SegmentationModel(spec.model, num_classes=2)
    assert receptive_field(model, (129, 129)) == (expected, expected)


def test_field_covering_the_input_is_reported_as_whole(stack_registered):
    spec = spec_from_dict({"model": {"backbone": {"name": "test.stack", "dilations": [8, 8]}}})
    assert receptive_field(SegmentationModel(spec.model, num_classes=2), (31, 31)) is None
