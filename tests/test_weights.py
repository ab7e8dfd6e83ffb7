"""Weights files rebuild their model alone; mismatches are reported tensor by tensor."""

from __future__ import annotations

import errno
import json
import re
import types

import attrs
import pytest
import safetensors.torch
import torch

from ctxseg.builtin.fcn import FCNHead
from ctxseg.errors import WeightsError, WriteError
from ctxseg.files.weights import read_weights, save_weights, write_tensors
from ctxseg.model import SegmentationModel
from ctxseg.model.load import load_model
from ctxseg.registry import Component, default_registry, hookimpl, reset_default_registry
from ctxseg.spec import load_spec, spec_from_dict

CLASSES = ["a", "b", "c"]
PALETTE = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]


@pytest.fixture
def saved(tmp_path, tiny_spec_file):
    spec = load_spec(tiny_spec_file)
    model = SegmentationModel(spec.model, len(CLASSES)).eval()
    path = tmp_path / "model.safetensors"
    save_weights(path, model, spec.to_dict(), CLASSES, PALETTE, {"mean_iou": 0.5})
    return path, model, spec


def test_round_trip_needs_no_spec(saved):
    path, model, spec = saved
    loaded, loaded_spec, info = load_model(path)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x)["out"], model(x)["out"], rtol=0, atol=0)
    assert loaded_spec == spec
    assert info.classes == CLASSES and info.palette == PALETTE and info.metrics == {"mean_iou": 0.5}
    assert info.plugins["ctxseg"]


def _rewrite(path, change):
    """Rewrite ``path`` with its tensors changed, as a faulty tool would: checksummed anew."""
    tensors, _ = read_weights(path)
    with safetensors.safe_open(str(path), "pt") as f:
        meta = f.metadata()
    change(tensors)
    write_tensors(path, tensors, meta)


def test_mismatches_are_listed_by_name(saved):
    path, *_ = saved

    def damage(t):
        del t["classifier.1.bias"]
        t["stray.weight"] = torch.zeros(1)
        t["classifier.1.weight"] = torch.zeros(7, 16, 1, 1)

    _rewrite(path, damage)
    with pytest.raises(WeightsError) as info:
        load_model(path)
    message = str(info.value)
    assert "does not match SegmentationModel: missing tensors: classifier.1.bias; " in message
    assert "unexpected tensors: stray.weight; " in message
    assert "mis-shaped tensors: classifier.1.weight (file (7, 16, 1, 1), model (3, 16, 1, 1))" in message


def test_class_count_mismatch_is_an_error(saved):
    with pytest.raises(WeightsError, match="trained for 3 classes .* but 5 are expected"):
        load_model(saved[0], num_classes=5)


def test_corrupt_and_foreign_files(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(WeightsError, match="junk.safetensors: not a readable safetensors file"):
        load_model(junk)
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(1)}, str(foreign))
    with pytest.raises(WeightsError, match="not a ctxseg weights file"):
        load_model(foreign)
    with pytest.raises(WeightsError, match="no such weights file"):
        load_model(tmp_path / "missing.safetensors")


def test_failed_write_leaves_the_old_file(saved, monkeypatch):
    path, model, spec = saved
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(WriteError, match=f"^{path}: no space left on device; it was not written; the file "
                                         "already there is unchanged; free space and run again$"):
        save_weights(path, model, spec.to_dict(), CLASSES, PALETTE)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_metadata_is_plain_json(saved):
    with safetensors.safe_open(str(saved[0]), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["ctxseg.spec"])["model"]["backbone"]["name"] == "base.resnet"


class Focal(torch.nn.Module):
    """A third-party loss: the plugin of a training-only component."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        gamma: float = 2.0

    def __init__(self, config, ignore_index):
        super().__init__()

    def forward(self, scores, target):
        return scores.mean()


@pytest.fixture
def saved_with_plugins(tmp_path, tiny_spec_file):
    """Weights trained with ctxseg-focal's loss and a head of ctxseg-myhead, both then uninstalled."""
    hooks = {"ctxseg-focal": [Component("loss", "focal.loss", Focal)],
             "ctxseg-myhead": [Component("context_head", "myhead.fcn", FCNHead)],
             "ctxseg-unrelated": [Component("loss", "unrelated.loss", Focal)]}
    for dist, components in hooks.items():
        default_registry().register(types.SimpleNamespace(ctxseg_components=hookimpl(lambda c=components: c)),
                                    dist, "0.3", entry_point=dist.removeprefix("ctxseg-"))
    table = load_spec(tiny_spec_file).to_dict()
    table["loss"] = {"name": "focal.loss", "gamma": 1.0}
    spec = spec_from_dict(table)
    model = SegmentationModel(spec.model, len(CLASSES), pretrained=False).eval()
    path = tmp_path / "model.safetensors"
    save_weights(path, model, spec.to_dict(), CLASSES, PALETTE)
    yield path, table
    reset_default_registry()


def test_only_the_spec_s_distributions_are_recorded(saved_with_plugins):
    path, _ = saved_with_plugins
    assert set(read_weights(path)[1].plugins) == {"ctxseg", "ctxseg-focal"}


def test_an_absent_training_only_plugin_is_a_warning(saved_with_plugins):
    path, _ = saved_with_plugins
    reset_default_registry()  # the plugins are uninstalled
    with pytest.warns(UserWarning, match=re.escape(
            f"{path}: loss is loss 'focal.loss', which is not installed; not needed to run the model, so the "
            "default is used (the file was saved with plugin distribution ctxseg-focal 0.3; install it with: "
            "python -m pip install 'ctxseg-focal==0.3')")):
        model, spec, _ = load_model(path)
    assert spec.loss.name == "base.cross_entropy" and model(torch.zeros(1, 3, 32, 32))["out"].shape == (1, 3, 32, 32)


def test_an_absent_model_plugin_names_its_distribution(saved_with_plugins, tmp_path):
    _, table = saved_with_plugins
    table["model"]["context"][0]["name"] = "myhead.fcn"
    spec = spec_from_dict(table)
    other = tmp_path / "head.safetensors"
    save_weights(other, SegmentationModel(spec.model, len(CLASSES), pretrained=False), spec.to_dict(), CLASSES, PALETTE)
    reset_default_registry()
    with pytest.raises(WeightsError, match=re.escape(
            f"{other}: model.context[0] is context_head 'myhead.fcn', which is not installed; the file was saved "
            "with plugin distribution ctxseg-myhead 0.3; install it with: python -m pip install 'ctxseg-myhead==0.3'")):
        load_model(other)
