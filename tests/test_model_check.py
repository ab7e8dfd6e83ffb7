"""The dry forward at build time: a component that breaks its declaration, or raises, is named
by its TOML path and plugin distribution; the traceback only with ``ctxseg --debug``."""

from __future__ import annotations

import types

import attrs
import pytest
from torch import Tensor, nn

from ctxseg.cli import main
from ctxseg.errors import ComponentError
from ctxseg.interfaces import ContextHead
from ctxseg.model import SegmentationModel
from ctxseg.model.check import check_model
from ctxseg.registry import Component, default_registry, hookimpl, reset_default_registry
from ctxseg.spec import spec_from_dict

BACKBONE = {"name": "base.resnet", "depth": 18, "output_stride": 8}


class Faulty(ContextHead):
    """A head that is wrong in the way ``Config.fault`` says."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        fault: str = "none"

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        if config.fault == "constructor":
            raise ValueError("cannot size the block")
        self.fault = config.fault
        self.out_channels = 128
        self.conv = nn.Conv2d(in_channels, 64 if config.fault == "channels" else 128, 3, padding=1,
                              stride=2 if config.fault == "stride" else 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.fault == "forward":
            raise RuntimeError("shapes do not broadcast")
        return self.conv(x)


@pytest.fixture
def faulty_registered():
    plugin = types.SimpleNamespace(ctxseg_components=hookimpl(
        lambda: [Component("context_head", "nonlocal.block", Faulty)]))
    default_registry().register(plugin, "ctxseg-nonlocal", "0.1", entry_point="nonlocal")
    yield
    reset_default_registry()


def build(fault: str) -> SegmentationModel:
    spec = spec_from_dict({"model": {"backbone": BACKBONE, "context": [
        {"name": "base.fcn", "channels": 16}, {"name": "nonlocal.block", "fault": fault}]}})
    model = SegmentationModel(spec.model, 5, pretrained=False, source="spec.toml")
    check_model(model, spec.model, "spec.toml")
    return model


WHO = r"spec.toml: model.context\[1\] \(nonlocal.block, plugin ctxseg-nonlocal 0.1\): "


@pytest.mark.parametrize(("fault", "message"), [
    ("channels", WHO + "output has 64 channels, declared 128$"),
    ("stride", WHO + r"output is 2x2, expected 4x4 \(the size of its input, 4x4\)$"),
    ("constructor", WHO + "constructor raised ValueError: cannot size the block$"),
    ("forward", WHO + "forward raised RuntimeError: shapes do not broadcast$"),
])
def test_a_faulty_head_is_named(faulty_registered, fault, message):
    with pytest.raises(ComponentError, match=message):
        build(fault)


def test_a_sound_model_passes_and_keeps_its_mode(faulty_registered):
    model = build("none").train()
    spec = spec_from_dict({"model": {"backbone": BACKBONE, "context": [{"name": "base.fcn", "channels": 16}],
                                     "aux": [{"name": "base.fcn", "input": "c4", "channels": 8}]}})
    model = SegmentationModel(spec.model, 5, pretrained=False).train()
    check_model(model, spec.model)
    assert model.training


def test_the_traceback_only_with_debug(faulty_registered, tmp_path, capsys):
    spec = tmp_path / "faulty.toml"
    spec.write_text('[model.backbone]\nname = "base.resnet"\ndepth = 18\n\n'
                    '[[model.context]]\nname = "nonlocal.block"\nfault = "channels"\n')
    assert main(["inspect", str(spec), "--classes", "3"]) == 2
    err = capsys.readouterr().err
    assert err == (f"ctxseg: error: {spec}: model.context[0] (nonlocal.block, plugin ctxseg-nonlocal 0.1): "
                   "output has 64 channels, declared 128\n")
    assert main(["--debug", "inspect", str(spec), "--classes", "3"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith("output has 64 channels, declared 128\n")
