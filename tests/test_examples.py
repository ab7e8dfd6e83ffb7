"""Every spec under examples/ loads, builds, takes one optimizer step and can be inspected.

Files under a ``base/`` folder are recipes the specs beside it extend; they are tested through them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

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


def frozen_prefixes(spec, model: SegmentationModel) -> list[str]:
    """State-dict prefixes of the components the spec freezes."""
    prefixes = ["backbone."] if spec.model.backbone.frozen else []
    prefixes += [f"context.{i}." for i, ref in enumerate(spec.model.context) if ref.frozen]
    prefixes += ["fusion."] if spec.model.fusion is not None and spec.model.fusion.frozen else []
    prefixes += [f"aux.{name}.0." for name, ref in zip(model.aux, spec.model.aux) if ref.frozen]
    return prefixes


def components(model: SegmentationModel) -> dict[str, nn.Module]:
    """State-dict prefix -> backbone, each context head, fusion, classifier, each auxiliary head."""
    found = {}
    for name, child in model.named_children():
        grouped = isinstance(child, (nn.ModuleList, nn.ModuleDict))
        found.update({f"{name}.{sub}.": c for sub, c in child.named_children()} if grouped else {f"{name}.": child})
    return found


@pytest.mark.parametrize("path", SPECS, ids=[str(p.relative_to(EXAMPLES)) for p in SPECS])
def test_example_builds_trains_and_inspects(path):
    spec = load_spec(path)
    classes = num_classes(spec)
    model = SegmentationModel(spec.model, classes, pretrained=False, source=str(path)).train()
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = spec.optimizer.load()(spec.optimizer.config, trained)
    criterion = spec.loss.load()(spec.loss.config, 255)
    before = {name: t.clone() for name, t in model.state_dict().items()}

    images = torch.randn(2, 3, 32, 32, requires_grad=True)
    labels = torch.randint(0, classes, (2, 32, 32))
    outputs = model(images)
    assert outputs["out"].shape == (2, classes, 32, 32)
    assert set(outputs) == {"out", *model.aux_weights}
    sum(criterion(o, labels) for o in outputs.values()).backward()
    assert images.grad.abs().sum() > 0
    optimizer.step()

    after = model.state_dict()
    for prefix, component in components(model).items():
        names = [prefix + name for name, p in component.named_parameters() if p.requires_grad]
        assert not names or any(not after[n].equal(before[n]) for n in names), f"the step left {prefix} unchanged"
    for prefix in frozen_prefixes(spec, model):
        kept = [name for name in before if name.startswith(prefix)]
        assert kept and all(after[name].equal(before[name]) for name in kept), f"frozen {prefix} changed"
    report = summarize(model, (32, 32))
    assert report["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    assert report["output_shape"] == [1, classes, 32, 32]
