"""Predictions in the benchmarks' own formats, checked by the official evaluation code.

A tiny model is trained on a generated Cityscapes-layout dataset; ``ctxseg predict
--format cityscapes`` writes its predictions and cityscapesScripts'
``evalPixelLevelSemanticLabeling`` (from PyPI) scores them. Its class IoUs and their
mean must equal ``ctxseg eval``'s.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctxseg.cli import main
from ctxseg.data import voc_palette
from ctxseg_datasets import ade20k, cityscapes, fixtures, voc

SPEC = """
[model.backbone]
name = "base.resnet"
depth = 18
output_stride = 8

[[model.context]]
name = "base.fcn"
channels = 16

[data]
batch_size = 2

[data.dataset]
name = "{name}"
root = "{root}"
{extra}

[optimizer]
name = "base.sgd"
lr = 0.05

[run]
steps = 20
device = "cpu"
"""


def _train(tmp_path: Path, name: str, root: Path, extra: str = "") -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(name=name, root=root, extra=extra))
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    return tmp_path / "run" / "model.safetensors"


def test_cityscapesscripts_agrees_with_ctxseg_eval(tmp_path: Path, monkeypatch) -> None:
    ev = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    root = fixtures.write_cityscapes(tmp_path / "cityscapes", {"train": {"aachen": 4},
                                                               "val": {"frankfurt": 2, "munster": 1}}, size=(32, 64))
    weights = _train(tmp_path, "datasets.cityscapes", root)
    images = sorted(str(p) for p in (root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png"))
    predictions = tmp_path / "predictions"
    assert main(["predict", str(weights), *images, "--out", str(predictions), "--format", "cityscapes", "--quiet"]) == 0
    assert main(["eval", str(weights), "--out", str(tmp_path / "eval.json"), "--quiet"]) == 0
    ours = json.loads((tmp_path / "eval.json").read_text())

    written = sorted(predictions.iterdir())
    assert [p.name for p in written] == sorted(Path(i).name for i in images)  # one labelId PNG per image, no overlays
    for path in written:
        with Image.open(path) as image:
            assert image.mode == "L" and set(np.unique(np.array(image))) <= set(cityscapes.LABEL_IDS)

    monkeypatch.setattr(ev.args, "cityscapesPath", str(root))
    monkeypatch.setattr(ev.args, "predictionPath", str(predictions))
    monkeypatch.setattr(ev.args, "predictionWalk", None)
    monkeypatch.setattr(ev.args, "JSONOutput", False)
    monkeypatch.setattr(ev.args, "quiet", True)
    # Its instance-weighted iIoU calls np.in1d, gone from NumPy 2.4; the class IoU compared here does not.
    monkeypatch.setattr(ev.args, "evalInstLevelScore", False)
    truth = sorted(str(p) for p in (root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    result = ev.evaluateImgLists([ev.getPrediction(ev.args, t) for t in truth], truth, ev.args)

    theirs = {name: result["classScores"][name] for name in cityscapes.CLASSES}
    for name in cityscapes.CLASSES:
        a, b = ours["per_class_iou"][name], theirs[name]
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12), name
    assert sum(not math.isnan(v) for v in theirs.values()) >= 5  # a non-trivial comparison
    assert ours["mean_iou"] == pytest.approx(result["averageScoreClasses"], abs=1e-12)


def test_voc_palette_pngs(tmp_path: Path) -> None:
    root = fixtures.write_voc2012(tmp_path / "voc", {"train": ["a", "b"], "val": ["c"]})
    weights = _train(tmp_path, "datasets.voc2012", root, 'train = "train"')
    out = tmp_path / "voc_predictions"
    assert main(["predict", str(weights), str(root / "JPEGImages" / "c.jpg"), "--out", str(out),
                 "--format", "voc", "--quiet"]) == 0
    assert [p.name for p in out.iterdir()] == ["c.png"]
    with Image.open(out / "c.png") as image:
        assert image.mode == "P" and image.size == (32, 24)
        assert image.getpalette()[:3 * 256] == [c for colour in voc_palette(256) for c in colour]
        assert set(np.unique(np.array(image))) <= set(range(len(voc.CLASSES)))


def test_a_format_the_dataset_does_not_offer(tmp_path: Path, capsys) -> None:
    root = fixtures.write_voc2012(tmp_path / "voc", {"train": ["a"], "val": ["c"]})
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(name="datasets.voc2012", root=root, extra='train = "train"').replace("steps = 20", "steps = 1"))
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    weights = tmp_path / "run" / "model.safetensors"
    capsys.readouterr()
    assert main(["predict", str(weights), str(root / "JPEGImages" / "c.jpg"), "--out", str(tmp_path / "p"),
                 "--format", "cityscapes"]) == 2
    assert capsys.readouterr().err == (f"ctxseg: error: {weights}: unknown prediction format 'cityscapes' for its "
                                       "dataset 'datasets.voc2012' (offered: palette, voc)\n")


def test_ade20k_predictions_read_back_as_annotations(tmp_path: Path) -> None:
    """ADE20K's format is its annotation format: read by the loader, a prediction is itself."""
    prediction = torch.arange(150).repeat(2, 1)  # (2, 150), every class
    image = ade20k.annotation_png(prediction)
    assert image.mode == "L" and np.array(image).min() == 1 and np.array(image).max() == 150
    root = fixtures.write_ade20k(tmp_path, {"training": 1, "validation": 1}, size=(2, 150))
    image.save(root / "annotations" / "validation" / "ADE_val_00000001.png")
    assert torch.equal(ade20k.ADE20K(ade20k.ADE20K.Config(root=str(root)), "val")[0][1], prediction)
    assert ade20k.ADE20K.output_formats() == {"ade20k": ade20k.annotation_png}
