"""The gradient-measured receptive field equals the textbook value on known stacks, and the
figure ``ctxseg inspect`` composes from declarations equals the measured one and the one
computed by hand."""

from __future__ import annotations

import re
import types

import attrs
import pytest
from torch import nn

from ctxseg.interfaces import Backbone
from ctxseg.model import SegmentationModel
from ctxseg.model.summary import declared_receptive_field, receptive_field
from ctxseg.registry import (
    Component,
    default_registry,
    hookimpl,
    reset_default_registry,
)
from ctxseg.spec import spec_from_dict

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


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
        self.receptive_fields = {"out": 1 + 2 * sum(config.dilations) + 2}

    def forward(self, images):
        return {"out": self.body(images)}


@pytest.fixture
def stack_registered():
    plugin = types.SimpleNamespace(ctxseg_components=hookimpl(
        lambda: [Component("backbone", "test.stack", Stack)]))
    default_registry().register(plugin, "test-stack", entry_point="test")
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
    assert declared_receptive_field(model, (129, 129)) == (expected, expected)


def test_field_covering_the_input_is_reported_as_whole(stack_registered):
    spec = spec_from_dict({"model": {"backbone": {"name": "test.stack", "dilations": [8, 8]}}})
    model = SegmentationModel(spec.model, num_classes=2)
    assert receptive_field(model, (31, 31)) is None
    assert declared_receptive_field(model, (31, 31)) is None


RESNET18 = {"name": "base.resnet", "depth": 18, "output_stride": 8}


# Expected fields by hand, layer by layer: r += (kernel - 1) * dilation * jump, jump *= stride.
# ResNet-18's c5 sees 435 pixels at output stride 8 or 16 (dilation keeps the field), 439 with
# the deep stem (its three 3x3 convs, the first /2, see 11 pixels where the 7x7/2 conv sees 7);
# a head's window of side f at stride s adds (f - 1) * s. The centre output pixel c is
# interpolated from score pixels floor((c + 0.5) / s - 0.5) and the next one (+ s), and the
# window is clipped to the input; None: it covers the input.
@pytest.mark.parametrize(("backbone", "context", "size", "expected"), [
    # examples/fcn_resnet18.toml: 435 + 2 * 8 = 451 around score pixels 31 and 32
    (RESNET18, [{"name": "base.fcn", "channels": 8}], (512, 512), (451 + 8, 451 + 8)),
    # 435 + 2 * 16 = 467 (base.scores is 1x1) around rows 15 and 16, and columns 14 and 15:
    # [14 * 16 - 233, 15 * 16 + 233] = [-9, 473], clipped at 0
    ({**RESNET18, "output_stride": 16}, [{"name": "base.fcn", "channels": 8}, {"name": "base.scores"}], (512, 480),
     (467 + 16, 474)),
    # deep stem, a 3x3 classifier at dilation 6 (f = 13): 439 + 12 * 8 = 535 > 512
    ({**RESNET18, "name": "pspnet.resnet"}, [{"name": "fcrn.classifier", "kernel": 3, "dilation": 6}], (512, 512),
     None),
    (RESNET18, [{"name": "pspnet.pyramid_pooling", "bins": [1, 3], "channels": 8}], (128, 128), None),  # global
    (RESNET18, [{"name": "base.fcn", "channels": 8}], (256, 256), None),  # 459 > 256
    # MMSegmentation's ResNetV1c and FCNHead: two 3x3 convs and concat's (f = 7): 439 + 6 * 8 = 487
    ({**RESNET18, "stem": "deep"}, [{"name": "base.fcn", "channels": 8, "convs": 2, "concat_input": True}],
     (512, 512), (487 + 8, 487 + 8)),
])
def test_declared_and_measured_fields_are_the_hand_computed_one(backbone, context, size, expected):
    spec = spec_from_dict({"model": {"backbone": backbone, "context": context}})
    model = SegmentationModel(spec.model, num_classes=2, pretrained=False)
    assert declared_receptive_field(model, size) == receptive_field(model, size) == expected


def test_declared_field_of_resnet18_is_the_textbook_one():
    model = SegmentationModel(spec_from_dict({"model": {"backbone": RESNET18}}).model, num_classes=2, pretrained=False)
    assert model.backbone.receptive_fields == {"c2": 43, "c3": 99, "c4": 211, "c5": 435}
    assert declared_receptive_field(model, (512, 512)) == (443, 443)  # + 8: the bilinear upsampling's second pixel


@pytest.mark.parametrize(("model", "undeclared"), [
    ({"backbone": {"name": "gcn.resnet"}}, "the backbone declares no receptive_fields"),
    ({"backbone": RESNET18, "context": [{"name": "dilation.context_module"}]}, "context[0] declares no field_of_view"),
])
def test_an_undeclared_field_names_the_component(model, undeclared):
    model = SegmentationModel(spec_from_dict({"model": model}).model, num_classes=2, pretrained=False)
    with pytest.raises(LookupError, match=re.escape(undeclared)):
        declared_receptive_field(model, (64, 64))
