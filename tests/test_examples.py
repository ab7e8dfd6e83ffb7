"""Every spec under examples/ loads, builds, trains one step and can be inspected.

Files under a ``base/`` folder are recipes the specs beside it extend; they are tested through them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ctxseg.errors import CtxsegError
from ctxseg.model import SegmentationModel
from ctxseg.model.summary import summarize
from ctxseg.spec import load_spec

EXAMPLES = Path(__file__).parents[1] / "examples"
SPECS = sorted(EXAMPLES.rglob("*.toml"))
SPECS = [p for p in SPECS if "thirdparty" not in p.parts and "base" not in p.parts]


def num_classes(spec) -> int:
    """The dataset's class count when it is known without data on disk, else PASCAL VOC's 21."""
    ref = spec.data.dataset
    try:
        return len(ref.load().class_names(ref.config))
    except CtxsegError:
        return 21


@pytest.mark.parametrize("path", SPECS, ids=[str(p.relative_to(EXAMPLES)) for p in SPECS])
def test_example_builds_trains_and_inspects(path):
    spec = load_spec(path)
    classes = num_classes(spec)
    model = SegmentationModel(spec.model, classes, pretrained=False, source=str(path)).train()
    images = torch.randn(2, 3, 32, 32, requires_grad=True)
    outputs = model(images)
    assert outputs["out"].shape == (2, classes, 32, 32)
    assert set(outputs) == {"out", *model.aux_weights}
    sum(o.square().mean() for o in outputs.values()).backward()
    assert images.grad.abs().sum() > 0
    report = summarize(model, (32, 32))
    assert report["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    assert report["output_shape"] == [1, classes, 32, 32]
