"""ctxseg convert: torchvision's and MMSegmentation's checkpoints give the same outputs in ctxseg."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torchvision

from ctxseg.builtin.convert import VOC_CLASSES
from ctxseg.cli import main
from ctxseg.data import voc_palette
from ctxseg.engine.convert import convert
from ctxseg.errors import WeightsError
from ctxseg.files.weights import read_weights
from ctxseg.model.blocks import upsample
from ctxseg.model.load import load_model
from ctxseg.testing.tolerance import determined, summation_bound

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability

FIXTURES = Path(__file__).parent / "fixtures" / "mmseg"


def _torchvision(name: str, path: Path, **kwargs) -> torch.nn.Module:
    """A torchvision segmentation model with random weights and non-trivial BN statistics, saved to ``path``."""
    torch.manual_seed(0)
    model = getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None, **kwargs).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.save(model.state_dict(), path)
    return model


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_torchvision_outputs_equal_to_the_last_bit(tmp_path, name):
    reference = _torchvision(name, tmp_path / "tv.pth", aux_loss=True)
    kind, _, classes = convert(tmp_path / "tv.pth", tmp_path / "model.safetensors")
    assert kind == f"torchvision {name}" and classes == VOC_CLASSES
    model, spec, info = load_model(tmp_path / "model.safetensors")
    assert info.palette[:3] == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]  # VOC's colours
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = reference(image)
        assert torch.equal(model(image)["out"], expected["out"])
        aux = model.aux["c4"](model.backbone(image)["c4"])  # ctxseg runs auxiliary heads in training only
        assert torch.equal(upsample(aux, (64, 64)), expected["aux"])


def _mmseg_checkpoint(name: str, path: Path) -> dict[str, torch.Tensor]:
    """The fixture's MMSegmentation checkpoint, rebuilt from its names and shapes by the script that made it."""
    spec = importlib.util.spec_from_file_location("make_fixture", FIXTURES / "make_fixture.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    record = json.loads((FIXTURES / f"{name}.json").read_text())
    state = {key: script.fill(key, tuple(shape), getattr(torch, dtype))
             for key, (shape, dtype) in record["state_dict"].items()}
    torch.save({"meta": {"dataset_meta": {"classes": ("sky", "water", "boat"),
                                          "palette": [[1, 2, 3], [4, 5, 6], [7, 8, 9]]}},
                "state_dict": state}, path)
    return safetensors.torch.load_file(FIXTURES / f"{name}.safetensors")


@pytest.mark.parametrize("name", ["pspnet_r50-d8", "fcn_r50-d8"])
def test_mmsegmentation_fixture_is_reproduced(tmp_path, name):
    expected = _mmseg_checkpoint(name, tmp_path / "mmseg.pth")
    kind, spec, classes = convert(tmp_path / "mmseg.pth", tmp_path / "model.safetensors")
    assert kind == f"MMSegmentation {name.split('_')[0]}_r50-d8"
    assert spec.model.backbone.config.stem == "deep" and classes == ["sky", "water", "boat"]
    model, _, info = load_model(tmp_path / "model.safetensors")
    assert info.palette == [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
    with torch.no_grad():
        features = model.backbone(expected["image"])
        out, aux = model(expected["image"])["out"], model.aux["c4"](features["c4"])
    # The fixture was computed by another library's build on another CPU, which sums in its own
    # order: the bound is the rounding of two fp32 runs through this network's depth and sums.
    for ours, theirs in ((out, expected["out"]), (aux, expected["aux"])):
        bound = summation_bound(model, theirs.abs().max().item())
        torch.testing.assert_close(ours, theirs, rtol=0, atol=bound)
    sure = determined(expected["out"], summation_bound(model, expected["out"].abs().max().item()))
    assert sure.any() and torch.equal(out.argmax(1)[sure], expected["out"].argmax(1)[sure])


def test_a_mis_shaped_tensor_is_named_and_nothing_written(tmp_path):
    state = torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None).state_dict()
    state["classifier.0.weight"] = torch.zeros(512, 2048, 1, 1)
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "tv.pth")
    with pytest.raises(WeightsError, match=r"unexpected tensors, which no part of the model takes: extra\.weight"):
        convert(tmp_path / "tv.pth", tmp_path / "model.safetensors")
    del state["extra.weight"]
    torch.save(state, tmp_path / "tv.pth")
    with pytest.raises(WeightsError, match=r"mis-shaped tensors: context\.0\.block\.0\.weight \(file \(512, 2048, 1, "
                                           r"1\), model \(512, 2048, 3, 3\)\)"):
        convert(tmp_path / "tv.pth", tmp_path / "model.safetensors")
    assert not (tmp_path / "model.safetensors").exists()


def test_a_checkpoint_that_needs_unpickling_code_is_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": {"when": __import__("datetime").date(2026, 1, 1)}},
               tmp_path / "ckpt.pth")
    with pytest.raises(WeightsError, match=r"holds more than tensors and plain containers.*weights_only=True"):
        convert(tmp_path / "ckpt.pth", tmp_path / "model.safetensors")


def test_palette_is_vocs():
    assert voc_palette(21)[15] == (192, 128, 128)  # VOC's person


def test_cli_converts_and_predict_runs_on_the_result(tmp_path, capsys):
    _torchvision("fcn_resnet50", tmp_path / "tv.pth")
    assert main(["convert", str(tmp_path / "tv.pth"), "--to", str(tmp_path / "m.safetensors"),
                 "--classes", *(f"c{i}" for i in range(21))]) == 0
    assert "torchvision fcn_resnet50 as base.resnet (depth 50) + base.fcn, 21 classes (c0, c1, c2, c3, ...)" in \
        capsys.readouterr().out
    assert read_weights(tmp_path / "m.safetensors")[1].classes[:2] == ["c0", "c1"]
    image = tmp_path / "a.png"
    torchvision.io.write_png(torch.zeros(3, 40, 48, dtype=torch.uint8), str(image))
    assert main(["predict", str(tmp_path / "m.safetensors"), str(image), "--out", str(tmp_path / "preds"),
                 "--quiet"]) == 0
    assert (tmp_path / "preds" / "a.png").exists()


def test_cli_refuses_an_unknown_checkpoint(tmp_path, capsys):
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    assert main(["convert", str(tmp_path / "other.pth"), "--to", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "other.pth: not a checkpoint ctxseg can convert" in err and "its first keys are conv.weight" in err


def test_cli_never_writes_over_its_input_or_into_a_folder(tmp_path, capsys):
    source = tmp_path / "tv.pth"
    torch.save({"conv.weight": torch.zeros(1)}, source)
    before = source.read_bytes()
    assert main(["convert", str(source), "--to", str(source)]) == 2
    assert "--to is an input file; ctxseg never overwrites an input" in capsys.readouterr().err
    assert main(["convert", str(source), "--to", str(tmp_path)]) == 2
    assert "--to is a folder" in capsys.readouterr().err
    assert source.read_bytes() == before
