"""``ctxseg inspect`` builds the model without drawing its weights, for speed: that this took
effect, and that no figure changed (that it imports no torchvision: tests/test_startup.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ctxseg.model import SegmentationModel
from ctxseg.model.summary import inspected_model, summarize
from ctxseg.spec import load_spec

ROOT = Path(__file__).parents[1]
SPECS = ["fcn_resnet18.toml", "parsenet/context_scenes_resnet18.toml", "pspnet/context_scenes_resnet18.toml",
         "gcn/context_scenes_k15_br.toml", "dilation/context_scenes_basic.toml", "fcrn/context_scenes_ce_simulated.toml"]


def built(path: str) -> tuple[SegmentationModel, SegmentationModel]:
    """The spec's model as inspect builds it and as training does, from one seed."""
    spec = load_spec(ROOT / "examples" / path)
    torch.manual_seed(0)
    fast = inspected_model(spec.model, 8, path)
    torch.manual_seed(0)
    return fast, SegmentationModel(spec.model, 8, pretrained=False)


@pytest.mark.parametrize("path", SPECS)
def test_inspect_reports_the_figures_of_the_model_training_builds(path):
    fast, trained = built(path)
    assert summarize(fast, (96, 64)) == summarize(trained, (96, 64))
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape for k, v in trained.state_dict().items()}


def test_inspect_draws_no_weight():
    fast, trained = built("fcn_resnet18.toml")
    convs = {name: m.weight for name, m in fast.named_modules() if isinstance(m, nn.Conv2d)}
    assert convs and not any(weight.any() for weight in convs.values())
    assert all(m.weight.any() for m in trained.modules() if isinstance(m, nn.Conv2d))


def test_inspect_keeps_deterministic_initialisations():
    """The basic context module's identity initialisation (Eq. 4) draws nothing, so it is
    built as in training; only the drawn weights around it are zeros."""
    fast, trained = built("dilation/context_scenes_basic.toml")
    module = {k: v for k, v in fast.state_dict().items() if k.startswith("context.2.")}  # after fcn, scores
    assert module and all(torch.equal(v, trained.state_dict()[k]) for k, v in module.items())
    assert any(v.any() for k, v in module.items() if k.endswith("weight"))

