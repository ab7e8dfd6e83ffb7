"""Each spec in examples/parsenet is the table row its header names (tests/test_examples.py builds them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctxseg.spec import load_spec

EXAMPLES = Path(__file__).parents[3] / "examples" / "parsenet"

LARGE_FOV, DEEPLAB, FCN_32S = (8, 3, 12, 1024), (8, 4, 4, 4096), (32, 7, 1, 4096)
"""(output_stride, fc6_kernel, fc6_dilation, fc_channels) of the three baselines (Sec. 4.1)."""

FC7 = ("fc7",)
# file: (backbone, fusion inputs or None, mode, normalize, scale, global_context, projection, header row)
ROWS = {
    "parsenet_baseline.toml": (LARGE_FOV, None, "", False, 0, False, 0, 'Table 2 "DeepLab-LargeFOV Baseline"'),
    "parsenet.toml": (LARGE_FOV, FC7, "early", True, 10.0, True, 0, 'Table 6 "pool6 + fc7, Y, E"'),
    "table6_fc7_norm.toml": (LARGE_FOV, FC7, "early", True, 10.0, False, 0, 'Table 6 "fc7, Y, NA"'),
    "table6_pool6_fc7_early.toml": (LARGE_FOV, FC7, "early", False, 0, True, 0, 'Table 6 "pool6 + fc7, N, E"'),
    "table6_pool6_fc7_norm_late.toml": (LARGE_FOV, FC7, "late", True, 10.0, True, 0, 'Table 6 "pool6 + fc7, Y, L"'),
    "table6_pool6_fc7_late.toml": (LARGE_FOV, FC7, "late", False, 0, True, 0, 'Table 6 "pool6 + fc7, N, L"'),
    "table7_norm1_concat.toml": (LARGE_FOV, FC7, "early", True, 1.0, True, 0, 'Table 7 "Norm 1, concatenate"'),
    "table7_norm1_conv1x1.toml": (LARGE_FOV, FC7, "early", True, 1.0, True, 1024, 'Table 7 "Norm 1, 1x1 conv"'),
    "table7_norm10_conv1x1.toml": (LARGE_FOV, FC7, "early", True, 10.0, True, 1024, 'Table 7 "Norm 10, 1x1 conv"'),
    "table7_nonorm_conv1x1.toml": (LARGE_FOV, FC7, "early", False, 0, True, 1024, 'Table 7 "Norm NA, 1x1 conv"'),
    "table5_deeplab_fc7.toml": (DEEPLAB, None, "", False, 0, False, 0, 'Table 5 "fc7, w/o Norm"'),
    "table5_deeplab_fc7_norm.toml": (DEEPLAB, FC7, "early", True, 10.0, False, 0, 'Table 5 "fc7, w/ Norm"'),
    "table5_deeplab_pool6_fc7.toml": (DEEPLAB, FC7, "early", False, 0, True, 0, 'Table 5 "pool6 + fc7, w/o Norm"'),
    "table5_deeplab_pool6_fc7_norm.toml": (DEEPLAB, FC7, "early", True, 10.0, True, 0,
                                           'Table 5 "pool6 + fc7, w/ Norm"'),
}
TABLE_4 = {
    "fc7": (FC7, False, '"fc7"'),
    "pool6": (FC7, True, '"pool6 + fc7"'),
    "conv5": (("conv5_3", "fc7"), True, '"pool6 + fc7 + conv5"'),
    "conv4": (("conv4_3", "conv5_3", "fc7"), True, '"pool6 + fc7 + conv5 + conv4"'),
    "conv3": (("conv3_3", "conv4_3", "conv5_3", "fc7"), True, '"pool6 + fc7 + conv5 + conv4 + conv3"'),
}
for short, (inputs, context, row) in TABLE_4.items():
    ROWS[f"table4_{short}.toml"] = (FCN_32S, None if short == "fc7" else inputs, "early", False, 0, context, 0,
                                    f"Table 4 {row}, w/o Norm")
    ROWS[f"table4_{short}_norm.toml"] = (FCN_32S, inputs, "early", True, 10.0, context, 0, f"Table 4 {row}, w/ Norm")

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="not a source checkout with examples/parsenet")


def test_every_spec_is_listed() -> None:
    assert {p.name for p in EXAMPLES.glob("*.toml")} == {*ROWS, "context_scenes_resnet18.toml"}


@pytest.mark.parametrize("name", ROWS)
def test_spec_is_its_table_row(name: str) -> None:
    backbone, inputs, mode, normalize, scale, context, projection, row = ROWS[name]
    path = EXAMPLES / name
    assert f"# Reproduces {row}" in path.read_text()
    spec = load_spec(path)
    b = spec.model.backbone.config
    assert spec.model.backbone.name == "parsenet.deeplab_vgg16"
    assert (b.output_stride, b.fc6_kernel, b.fc6_dilation, b.fc_channels, b.dropout) == (*backbone, 0.5)
    assert not spec.model.context
    dataset = (("datasets.pascal_context", "data/VOCdevkit/VOC2010") if backbone == FCN_32S
               else ("datasets.voc2012", "data/VOCdevkit/VOC2012"))
    assert (spec.data.dataset.name, spec.data.dataset.config.root) == dataset
    assert (spec.optimizer.config.momentum, spec.schedule.config.power, spec.run.steps) == (0.9, 0.9, 80_000)
    if inputs is None:
        assert spec.model.fusion is None and spec.model.classifier.dropout == 0.0
        return
    f = spec.model.fusion.config
    assert spec.model.fusion.name == "parsenet.fusion" and spec.model.fusion.inputs == inputs
    assert (f.mode, f.normalize, f.global_context, f.projection) == (mode, normalize, context, projection)
    if normalize:
        assert f.scale == scale


def test_context_scenes_spec_differs_from_the_fcn_baseline_only_by_global_context() -> None:
    fcn = load_spec(EXAMPLES.parent / "fcn_resnet18.toml").to_dict()
    parsenet = load_spec(EXAMPLES / "context_scenes_resnet18.toml").to_dict()
    context = parsenet["model"].pop("context")
    assert context[:-1] == fcn["model"].pop("context")
    assert context[-1] == {"name": "parsenet.global_context", "frozen": False, "normalize": True, "scale": 10.0}
    assert parsenet == fcn
