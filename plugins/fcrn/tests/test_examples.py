"""Each spec in examples/fcrn is the table row its header names; the context-scenes specs differ only in the loss.

tests/test_examples.py builds and steps every spec at 32 x 32; here each one is
checked against its row of Table 1 or Table 4 (the FoV column through the model, built
on ResNet-18: the field of view does not depend on the depth), and ``ctxseg inspect``
reports a row's field of view.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs
import pytest

from ctxseg.cli import main
from ctxseg.model import SegmentationModel
from ctxseg.spec import DropoutSpec, load_spec

EXAMPLES = Path(__file__).parents[3] / "examples" / "fcrn"
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="not a source checkout with examples/fcrn")

TABLE_1 = """50 16 3 6 208 69.09|50 8 3 6 104 67.61|50 8 3 12 200 69.94|50 8 3 18 296 70.01|50 8 5 6 200 69.81
50 8 5 12 392 71.10|50 8 7 6 296 70.67|101 16 3 6 208 70.93|101 8 3 6 104 70.20|101 8 3 12 200 72.34
101 8 3 18 296 72.37|101 8 5 6 200 71.97|101 8 5 12 392 73.41|101 8 7 6 296 72.56|152 16 3 6 208 71.27
152 8 3 6 104 70.23|152 8 3 12 200 72.29|152 8 3 18 296 71.85|152 8 5 6 200 71.95|152 8 5 12 392 73.32
152 8 7 6 296 72.94"""
ROWS_1 = [tuple(row.split()) for row in TABLE_1.replace("\n", "|").split("|")]
# Table 4 (kernel 5, dilation 12 at 1/8, FoV 392): dataset, depth, K ("F" = none), dropout, mean IoU.
# Its F/F rows on VOC are Table 1's rows of the same setting (table1_r101/r152_os8_k5_d12.toml).
ROWS_4 = [("voc", 101, 256, False, "74.41"), ("voc", 101, 512, False, "74.80"), ("voc", 101, 1024, False, "74.17"),
          ("voc", 101, 512, True, "75.45"), ("voc", 152, 256, False, "74.53"), ("voc", 152, 512, False, "74.72"),
          ("voc", 152, 1024, False, "74.40"), ("voc", 152, 512, True, "75.90"),
          ("cityscapes", 152, "F", False, "71.51"), ("cityscapes", 152, 256, False, "73.97"),
          ("cityscapes", 152, 512, False, "74.64"), ("cityscapes", 152, 1024, False, "73.45")]
SPECS_1 = {f"table1_r{d}_os{s}_k{k}_d{dil}.toml": (int(d), int(s), int(k), int(dil), int(fov), miou)
           for d, s, k, dil, fov, miou in ROWS_1}
SPECS_4 = {f"table4_{data}_r{depth}_{'baseline' if bs == 'F' else f'bs{bs}'}{'_dropout' if do else ''}.toml":
           (data, depth, bs, do, miou) for data, depth, bs, do, miou in ROWS_4}
CONTEXT_SCENES = {"context_scenes_ce.toml": None, **{f"context_scenes_bs{k}.toml": k for k in (256, 512, 1024)}}
SIMULATED = "context_scenes_ce_simulated.toml"
RES5 = ("backbone.layer4.0", "backbone.layer4.1", "backbone.layer4.2")


def test_every_spec_is_listed():
    assert {p.name for p in EXAMPLES.glob("*.toml")} == {*SPECS_1, *SPECS_4, *CONTEXT_SCENES, SIMULATED}
    assert len(SPECS_1) == 21 and len(SPECS_4) == 12


def field_of_view(spec) -> int:
    """The spec's field of view, measured on its model built with ResNet-18 (cheap; its
    res5 has two blocks, so no dropout after a third)."""
    backbone = attrs.evolve(spec.model.backbone, config=attrs.evolve(spec.model.backbone.config, depth=18))
    model = attrs.evolve(spec.model, backbone=backbone, dropout=DropoutSpec())
    return SegmentationModel(model, 21, pretrained=False).field_of_view


def check_fcrn(spec, depth: int, stride: int, kernel: int, dilation: int, data: str = "voc") -> None:
    backbone, (head,) = spec.model.backbone, spec.model.context
    assert (backbone.name, backbone.config.depth, backbone.config.output_stride) == ("base.resnet", depth, stride)
    assert (head.name, head.config.kernel, head.config.dilation) == ("fcrn.classifier", kernel, dilation)
    assert not spec.model.aux and not spec.model.fusion
    assert spec.model.batch_norm == "frozen_statistics"  # Sec. 3.2
    assert spec.data.crop_size >= field_of_view(spec)  # Sec. 4.3: a FoV beyond the crop is not learned
    dataset = spec.data.dataset
    if data == "voc":  # Sec. 4.1: the 10,582 SBD-augmented images, evaluated on VOC val
        assert (dataset.name, dataset.config.train, dataset.config.val) == ("datasets.voc2012", "train_aug", "val")
    else:
        assert dataset.name == "datasets.cityscapes"


@pytest.mark.parametrize("name", SPECS_1)
def test_table_1_spec_is_its_row(name):
    depth, stride, kernel, dilation, fov, miou = SPECS_1[name]
    path = EXAMPLES / name
    assert (f"# Reproduces Table 1, depth {depth}, resolution 1/{stride}, kernel {kernel}, dilation {dilation}: "
            f"FoV {fov}, {miou} mean IoU (PASCAL VOC 2012 val).") in path.read_text()
    spec = load_spec(path)
    check_fcrn(spec, depth, stride, kernel, dilation)
    assert field_of_view(spec) == fov
    assert spec.loss.name == "base.cross_entropy" and not spec.model.dropout.after


@pytest.mark.parametrize("name", SPECS_4)
def test_table_4_spec_is_its_row(name):
    data, depth, bootstrapping, dropout, miou = SPECS_4[name]
    path = EXAMPLES / name
    header = re.search(r"# Reproduces Table 4, (.*)\.\n", path.read_text()).group(1)
    assert header.endswith(f"depth {depth}, 1/8, kernel 5, dilation 12, Bs./Do. {bootstrapping}/"
                           f"{'T' if dropout else 'F'}: {miou} mean IoU "
                           f"({'PASCAL VOC 2012' if data == 'voc' else 'Cityscapes'} val)")
    spec = load_spec(path)
    check_fcrn(spec, depth, 8, 5, 12, data)
    assert field_of_view(spec) == 392
    if bootstrapping == "F":
        assert spec.loss.name == "base.cross_entropy"
    else:
        assert (spec.loss.name, spec.loss.config.top_k) == ("fcrn.bootstrapping", bootstrapping)
    assert spec.model.dropout.after == (RES5 if dropout else ())


def test_inspect_reports_the_field_of_view(capsys):
    assert main(["inspect", str(EXAMPLES / "table1_r50_os8_k5_d12.toml"), "--json", "--classes", "21",
                 "--input-size", "64", "64"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["field_of_view"], report["output_stride"]) == (392, 8)
    assert report["parameters"]["context[0]"] == 5 * 5 * 2048 * 21 + 21


@pytest.mark.parametrize("name", CONTEXT_SCENES)
def test_context_scenes_specs_differ_only_in_the_loss(name):
    spec, baseline = load_spec(EXAMPLES / name), load_spec(EXAMPLES / "context_scenes_ce.toml")
    assert (spec.model, spec.data, spec.optimizer, spec.schedule, spec.run) == (
        baseline.model, baseline.data, baseline.optimizer, baseline.schedule, baseline.run)
    k = CONTEXT_SCENES[name]
    if k is None:
        assert spec.loss.name == "base.cross_entropy"
    else:
        assert (spec.loss.name, spec.loss.config.top_k) == ("fcrn.bootstrapping", k)


def test_simulated_context_scenes_spec_differs_only_in_the_simulation():
    spec, baseline = load_spec(EXAMPLES / SIMULATED), load_spec(EXAMPLES / "context_scenes_ce.toml")
    assert (spec.model, spec.data, spec.loss, spec.optimizer, spec.schedule) == (
        baseline.model, baseline.data, baseline.loss, baseline.optimizer, baseline.schedule)
    assert attrs.evolve(spec.run, passes=baseline.run.passes) == baseline.run
    passes = spec.run.passes
    assert (passes.name, passes.config.layer, passes.config.train, passes.config.test) == (
        "fcrn.simulated", "backbone.layer2", True, True)
