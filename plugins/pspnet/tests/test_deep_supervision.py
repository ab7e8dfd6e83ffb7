"""PSPNet's deep supervision (Sec. 4, Fig. 4) is the core's ``[[model.aux]]``: an FCN head
with its own classifier on stage 4 (``c4``, res4b22 in ResNet-101), loss weight 0.4,
run in training only. Checked on a whole PSPNet built from a spec table."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ctxseg.model import SegmentationModel
from ctxseg.spec import spec_from_dict

SPEC = {
    "model": {
        "backbone": {"name": "pspnet.resnet", "depth": 18, "output_stride": 8},
        "context": [{"name": "pspnet.pyramid_pooling", "channels": 16}],
        "aux": [{"name": "base.fcn", "input": "c4", "weight": 0.4, "channels": 8}],
    },
}


@pytest.fixture
def model() -> SegmentationModel:
    torch.manual_seed(0)
    return SegmentationModel(spec_from_dict(SPEC).model, num_classes=5)


def test_the_aux_branch_runs_in_training_only(model: SegmentationModel) -> None:
    images = torch.randn(2, 3, 32, 32)
    assert model.aux_weights == {"aux.c4": 0.4}
    outputs = model.train()(images)
    assert set(outputs) == {"out", "aux.c4"}
    assert outputs["aux.c4"].shape == outputs["out"].shape == (2, 5, 32, 32)
    with torch.no_grad():
        assert set(model.eval()(images)) == {"out"}


def test_both_losses_train_and_the_aux_loss_stops_at_stage_4(model: SegmentationModel) -> None:
    images, target = torch.randn(2, 3, 32, 32), torch.randint(0, 5, (2, 32, 32))
    outputs = model.train()(images)
    aux = F.cross_entropy(outputs["aux.c4"], target)
    aux.backward(retain_graph=True)
    grads = {name: p.grad for name, p in model.named_parameters()}
    for name, grad in grads.items():
        if name.startswith(("aux.", "backbone.layer3.", "backbone.conv1.")):
            assert grad is not None and grad.abs().sum() > 0, name  # "pass through all previous layers"
        if name.startswith(("backbone.layer4.", "context.", "classifier.")):
            assert grad is None, name  # the master branch above stage 4 is the main loss's alone

    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(outputs["out"], target) + model.aux_weights["aux.c4"] * aux
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.aux.parameters())
    assert all(p.grad is not None for p in model.context.parameters())
