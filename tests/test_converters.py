"""The converter hook: a plugin teaches ``ctxseg convert`` a checkpoint layout; its failures name it."""

from __future__ import annotations

import types

import pytest
import torch

from ctxseg.cli import main
from ctxseg.engine.convert import convert
from ctxseg.errors import PluginError
from ctxseg.model import SegmentationModel
from ctxseg.model.load import load_model
from ctxseg.registry import Conversion, Converter, PluginFailure, Registry, hookimpl, reset_default_registry
from ctxseg.spec import spec_from_dict

TOY = {"model": {"backbone": {"name": "base.resnet", "depth": 18}, "context": [{"name": "base.fcn", "channels": 8}]}}
"""The model a toy library's checkpoints hold, under ``net.`` and with their class names under ``labels``."""


def toy(state):
    """The toy library's checkpoints; None for another."""
    if "net.classifier.1.weight" not in state:
        return None
    return Conversion("toy resnet18", TOY, [(r"^net\.", "")], classifier="net.classifier.1.weight",
                      classes=("sky", "sea", "ship"))


def plugin(*converters: Converter) -> types.SimpleNamespace:
    return types.SimpleNamespace(ctxseg_converters=hookimpl(lambda: list(converters)))


@pytest.fixture
def registry():
    """A registry of ctxseg's own components and converters, the process's default while the test runs."""
    registry = Registry(autoload=False)
    reset_default_registry(registry)
    yield registry
    reset_default_registry()


def test_a_plugin_adds_a_format(registry, tmp_path):
    registry.register(plugin(Converter("checkpoint", "toy.checkpoint", toy, "the toy library's (net.*)")), "ctxseg-toy",
                      entry_point="toy")
    torch.manual_seed(0)
    model = SegmentationModel(spec_from_dict(TOY).model, 3, pretrained=False, source="toy")
    torch.save({f"net.{k}": v for k, v in model.state_dict().items()}, tmp_path / "toy.pth")
    kind, _, classes = convert(tmp_path / "toy.pth", tmp_path / "model.safetensors")
    assert (kind, classes) == ("toy resnet18", ["sky", "sea", "ship"])
    converted = load_model(tmp_path / "model.safetensors")[0].state_dict()
    assert converted.keys() == model.state_dict().keys()
    assert all(torch.equal(converted[k], v) for k, v in model.state_dict().items())


def test_a_plugin_cannot_change_how_a_checkpoint_converts(registry):
    greedy = Converter("checkpoint", "greedy.all", lambda state: Conversion("anything", {}))
    registry.register(plugin(greedy), "ctxseg-greedy", entry_point="greedy")
    assert [c.name for c in registry.converters("checkpoint")] == ["base.torchvision", "base.mmsegmentation",
                                                                   "greedy.all"]
    with pytest.warns(PluginFailure, match=r"converter 'base.torchvision' is registered by two plugin distributions: "
                                           r"'ctxseg' and 'ctxseg-greedy'"):
        registry.register(plugin(Converter("checkpoint", "base.torchvision", toy)), "ctxseg-greedy")
    assert registry.converters("checkpoint")[0].distribution == "ctxseg"


def _fail(state):
    raise KeyError("net.fc.weight")


@pytest.mark.parametrize(("target", "said"), [
    (_fail, "failed: KeyError: 'net.fc.weight'"),
    (lambda state: {"model": {}}, "returned {'model': {}}; expected a Conversion or None"),
    ("ctxseg_no_such_module:convert", "cannot be imported from 'ctxseg_no_such_module:convert': ModuleNotFoundError"),
])
def test_a_failing_converter_is_named_with_its_distribution(registry, tmp_path, capsys, target, said):
    registry.register(plugin(Converter("checkpoint", "broken.checkpoint", target)), "ctxseg-broken")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(PluginError, match="^converter 'broken.checkpoint' of plugin distribution 'ctxseg-broken' "):
        convert(tmp_path / "other.pth", tmp_path / "model.safetensors")
    assert main(["convert", str(tmp_path / "other.pth"), "--to", str(tmp_path / "model.safetensors")]) == 2
    err = capsys.readouterr().err
    assert f"converter 'broken.checkpoint' of plugin distribution 'ctxseg-broken' {said}" in err
    assert "Traceback" not in err and not (tmp_path / "model.safetensors").exists()


def test_a_part_is_renamed_by_its_own_conversion_and_placed():
    head = Conversion("head", {}, [(r"^convs\.(\d+)\.", r"block.\1.")])
    whole = Conversion("whole", {}, [(r"^decode_head\.conv_seg\.", "classifier.1.")],
                       parts=[("decode_head", "context.0", head)])
    assert whole.rename("decode_head.convs.1.weight") == "context.0.block.1.weight"
    assert whole.rename("decode_head.conv_seg.bias") == "classifier.1.bias"  # the whole's rules first
    assert whole.rename("decode_head.other.weight") is None and whole.rename("convs.1.weight") is None
