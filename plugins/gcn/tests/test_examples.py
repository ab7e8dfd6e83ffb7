"""Each spec in examples/gcn is the table row its header names; the context-scenes specs train at 64 px.

tests/test_examples.py builds and steps every spec; here each one is checked against
its row of the paper (cheap: specs are only loaded), and the five context-scenes specs
are built and run forward and backward at their 64 x 64 size.

Table 3's stacks other than k = 7 (Table 4's m = 2048 row) have no spec: they are
``head = "stack3x3"`` with ``kernel`` 5, 9 or 11, and at k = 11 the four 2048/1024/512/
256-wide stacks hold 259M parameters, too heavy for tests/test_examples.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec

EXAMPLES = Path(__file__).parents[3] / "examples" / "gcn"
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="not a source checkout with examples/gcn")

R152, R50, R50_GCN = ("base.resnet", 152), ("base.resnet", 50), ("gcn.resnet", 50)
# file: (backbone, head, kernel, stack_channels, refine, header row)
ROWS = {
    "table1_base.toml": (R152, "conv1x1", 1, 0, False, 'Table 1, k = "base"'),
    **{f"table1_k{k}.toml": (R152, "gcn", k, 0, False, f"Table 1, k = {k}: {score}")
       for k, score in {3: 70.1, 5: 71.1, 7: 72.8, 9: 73.4, 11: 73.7, 13: 74.0, 15: 74.5}.items()},
    **{f"table2_conv_k{k}.toml": (R152, "conv_kxk", k, 0, False, f"Table 2, Conv k = {k}: {score}")
       for k, score in {3: 69.8, 5: 70.4, 7: 69.6, 9: 68.8}.items()},
    "table4_stack_m2048.toml": (R152, "stack3x3", 7, 0, False, "Table 4, m (Stack) = 2048: 71.3"),  # = Table 3, k = 7
    "table4_stack_m1024.toml": (R152, "stack3x3", 7, 1024, False, "Table 4, m (Stack) = 1024: 70.4"),
    "table4_stack_m210.toml": (R152, "stack3x3", 7, 210, False, "Table 4, m (Stack) = 210: 68.8"),
    "table5_gcn_br.toml": (R152, "gcn", 15, 0, True, 'Table 5, "GCN + BR"'),
    "table6_resnet50_baseline.toml": (R50, "conv1x1", 1, 0, False, 'Table 6, ResNet50, "Seg. Score (Baseline)": 65.7'),
    "table6_resnet50_gcn_br.toml": (R50, "gcn", 15, 0, True, 'Table 6, ResNet50, "Seg. Score (GCN + BR)": 72.3'),
    "table6_resnet50_gcn_baseline.toml": (R50_GCN, "conv1x1", 1, 0, False,
                                          'Table 6, ResNet50-GCN, "Seg. Score (Baseline)": 71.2'),
    "table6_resnet50_gcn_gcn_br.toml": (R50_GCN, "gcn", 15, 0, True,
                                        'Table 6, ResNet50-GCN, "Seg. Score (GCN + BR)": 72.5'),
}
# file: (head, kernel, refine)
CONTEXT_SCENES = {
    "context_scenes_conv1x1.toml": ("conv1x1", 1, False),
    "context_scenes_k3.toml": ("gcn", 3, False),
    "context_scenes_k7.toml": ("gcn", 7, False),
    "context_scenes_k15.toml": ("gcn", 15, False),
    "context_scenes_k15_br.toml": ("gcn", 15, True),
}
C2_TO_C5 = ("c2", "c3", "c4", "c5")


def test_every_spec_is_listed() -> None:
    assert {p.name for p in EXAMPLES.glob("*.toml")} == {*ROWS, *CONTEXT_SCENES}


@pytest.mark.parametrize("name", ROWS)
def test_spec_is_its_table_row(name: str) -> None:
    (backbone, depth), head, kernel, stack_channels, refine, row = ROWS[name]
    path = EXAMPLES / name
    assert f"# Reproduces {row}" in path.read_text()
    spec = load_spec(path)
    assert (spec.model.backbone.name, spec.model.backbone.config.depth) == (backbone, depth)
    assert spec.model.backbone.config.output_stride == 32  # undilated ResNet, FCN-4 (Sec. 3.2)
    fusion = spec.model.fusion
    assert fusion.name == "gcn.fusion" and fusion.inputs == C2_TO_C5
    config = fusion.config
    assert (config.head, config.kernel, config.stack_channels, config.refine) == (head, kernel, stack_channels, refine)
    assert not spec.model.aux and not spec.model.context
    # Sec. 4: SGD, batch 1, momentum 0.99, weight decay 5e-4; inputs padded to 512 x 512 (Sec. 4.1).
    assert (spec.data.batch_size, spec.data.crop_size, spec.data.flip) == (1, 512, True)
    assert (spec.optimizer.config.momentum, spec.optimizer.config.weight_decay) == (0.99, 5e-4)
    assert (spec.data.dataset.name, spec.data.dataset.config.root) == ("datasets.voc2012", "data/VOCdevkit/VOC2012")
    assert spec.data.dataset.config.train == "train_aug"  # the 10,582 images with SBD's annotations (Sec. 4)


def test_resnet50_gcn_rows_use_the_resnet_gcn_defaults() -> None:
    config = load_spec(EXAMPLES / "table6_resnet50_gcn_gcn_br.toml").model.backbone.config
    assert (config.stages, config.kernels, config.widths) == (("c4", "c5"), (5, 7), (85, 128))


FCN_BASELINE = EXAMPLES.parent / "fcn_resnet18.toml"


@pytest.mark.parametrize("name", CONTEXT_SCENES)
def test_context_scenes_spec_trains_at_64_px(name: str) -> None:
    """fcn_resnet18.toml's everything but the head, with an undilated backbone; 64 x 64 scores."""
    spec, fcn = load_spec(EXAMPLES / name), load_spec(FCN_BASELINE)
    assert (spec.data, spec.optimizer, spec.schedule, spec.run, spec.loss) == (
        fcn.data, fcn.optimizer, fcn.schedule, fcn.run, fcn.loss)
    assert spec.model.aux == fcn.model.aux
    assert spec.model.backbone.config.depth == 18 and spec.model.backbone.config.output_stride == 32
    assert spec.model.fusion.inputs == C2_TO_C5
    config = spec.model.fusion.config
    assert (config.head, config.kernel, config.refine) == CONTEXT_SCENES[name]

    torch.manual_seed(0)
    model = SegmentationModel(spec.model, num_classes=8, pretrained=False).train()
    assert model.output_stride == 1
    images = torch.randn(2, 3, 64, 64, requires_grad=True)
    outputs = model(images)
    assert outputs["out"].shape == outputs["aux.c4"].shape == (2, 8, 64, 64)
    sum(o.square().mean() for o in outputs.values()).backward()
    assert images.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.fusion.parameters())
