"""FCRN's simulated high-resolution network (ctxseg_fcrn.simulate) is the finer network, exactly.

The finer network is the same weights with the down-sampling layer's stride removed
and every later convolution dilated twice as much. In float64 the four shifted passes,
interleaved, equal its score map at every pixel, the border rows and columns
included, for even and odd sizes; and in training the four passes' gradients add up
to its gradient.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

from ctxseg.errors import SpecError
from ctxseg.model import SegmentationModel
from ctxseg.spec import spec_from_dict
from ctxseg_fcrn.simulate import (
    SHIFTS,
    Simulated,
    SimulatedPasses,
    finer,
    interleave,
    label_phase,
    shifted,
    upsample_finer,
)

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


def _model(depth: int, output_stride: int, batch_norm: str = "batch") -> SegmentationModel:
    spec = spec_from_dict({"model": {
        "backbone": {"name": "base.resnet", "depth": depth, "output_stride": output_stride},
        "context": [{"name": "base.fcn", "channels": 8, "dropout": 0.0}],
        "batch_norm": batch_norm,
    }})
    torch.manual_seed(0)
    model = SegmentationModel(spec.model, num_classes=3, pretrained=False).double()
    with torch.no_grad():  # batch norm with statistics of its own, not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize(("depth", "output_stride", "layer", "size"), [
    (18, 8, "backbone.layer2", (32, 48)),   # 1/8 simulating 1/4 (Table 3), BasicBlock
    (18, 8, "backbone.layer2", (44, 36)),   # stride-4 maps of odd size (11 x 9)
    (50, 16, "backbone.layer3", (48, 32)),  # 1/16 simulating 1/8, bottleneck (strided 3x3 and 1x1)
])
def test_simulation_equals_the_finer_network_everywhere(depth, output_stride, layer, size):
    model = _model(depth, output_stride).eval()
    images = torch.randn(2, 3, *size, dtype=torch.float64)
    simulated = Simulated(model, layer)
    assert simulated.output_stride == output_stride // 2
    with torch.no_grad():
        coarse = model.scores(images)["out"]
        expected = finer(model, layer, images).scores(images)["out"]
        got = simulated.scores(images)["out"]
    assert got.shape == expected.shape
    assert got.shape[-2:] == tuple(-(-s // (output_stride // 2)) for s in size)
    torch.testing.assert_close(got[..., ::2, ::2], coarse)  # pass (0, 0) is the coarse network itself
    shifted_phase = got[..., 1::2, 1::2]
    assert not torch.allclose(shifted_phase, coarse[..., :shifted_phase.shape[-2], :shifted_phase.shape[-1]])
    # ...and the border, where shifting the map itself (the paper's wording) would drop a row:
    for border in (got[..., 0, :] - expected[..., 0, :], got[..., :, 0] - expected[..., :, 0],
                   got[..., -1, :] - expected[..., -1, :], got[..., :, -1] - expected[..., :, -1]):
        assert border.abs().max() < 1e-9
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)
    with torch.no_grad():
        upsampled = simulated(images)["out"]
    assert upsampled.shape == (2, 3, *size)


def test_shift_leaves_the_model_as_it_was():
    model = _model(18, 8).eval()
    images = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        before = model.scores(images)["out"]
        with shifted(model, "backbone.layer2", 1, 1):
            moved = model.scores(images)["out"]
        after = model.scores(images)["out"]
    assert before.equal(after) and not before.equal(moved)
    assert model.backbone.layer2[0].conv1.padding == (1, 1)


def test_the_passes_gradients_add_up_to_the_finer_networks():
    """With fixed batch-norm statistics (FCRN Sec. 3.2), training by four passes is
    training the finer network on the labels at its pixels' centres."""
    model = _model(18, 8, batch_norm="frozen_statistics").train()
    criterion = torch.nn.CrossEntropyLoss()
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 32, 32))
    fine = finer(model, "backbone.layer2", images).train()

    passes = SimulatedPasses(SimulatedPasses.Config(layer="backbone.layer2"), model)
    loss = passes.backward(model, images, labels, lambda outputs, target: criterion(outputs["out"], target),
                           contextlib.nullcontext)
    centres = torch.arange(4, 33, 4).clamp(max=31)  # pixel p of the stride-4 map stands for 4p + 3.5
    fine_loss = criterion(fine.scores(images)["out"], labels[:, centres[:, None], centres])
    fine_loss.backward()
    assert loss.shape == () and not loss.requires_grad  # left on the device, unread
    assert loss.item() == pytest.approx(fine_loss.item(), rel=1e-9)
    for (name, p), q in zip(model.named_parameters(), fine.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-7, atol=1e-10, msg=name)


def test_label_phase_samples_where_the_pass_pixels_stand():
    """Pixel i of a stride-8 map stands for 8i + 3.5 (how ctxseg.model.upsample places it);
    pass (dy, dx) moves that by 4 px; the nearest pixel, rounding up, clamped at the edge."""
    labels = torch.arange(32 * 40).view(1, 32, 40)
    for dy, dx in SHIFTS:
        phase = label_phase(labels, 4, dy, dx, (4, 5))
        rows, cols = phase // 40, phase % 40
        assert rows[0, :, 0].tolist() == [min(8 * i + 4 * dy + 4, 31) for i in range(4)]
        assert cols[0, 0].tolist() == [min(8 * j + 4 * dx + 4, 39) for j in range(5)]


def test_interleave_puts_each_pass_on_its_phase():
    phases = {(dy, dx): torch.full((1, 1, 2 - dy, 3 - dx), float(2 * dy + dx)) for dy, dx in SHIFTS}
    assert interleave(phases)[0, 0].tolist() == [[0, 1, 0, 1, 0], [2, 3, 2, 3, 2], [0, 1, 0, 1, 0]]


@pytest.mark.parametrize(("layer", "message"), [
    ("backbone.layr2", "the model has no module 'backbone.layr2'; did you mean 'backbone.layer2'"),
    ("backbone.layer1", "'backbone.layer1' must down-sample by strided convolutions alone (it has 0 strided"),
    ("backbone", "'backbone' must down-sample by strided convolutions alone (it has 3 strided convolutions and a "
                 "strided pooling)"),
])
def test_a_layer_that_cannot_be_simulated_is_named(layer, message):
    with pytest.raises(SpecError) as error:
        Simulated(_model(18, 8), layer, "spec.toml")
    assert str(error.value).startswith("spec.toml: run.passes.layer: ") and message in str(error.value)


def test_the_finer_map_is_upsampled_to_where_its_pixels_stand():
    """A map of stride 4 whose value is its column index p: at input column x the
    upsampled value is (x - 3.5) / 4, i.e. pixel p stands for 4p + 3.5, as the coarse
    network's pixel i stands for 8i + 3.5 (edges clamped)."""
    scores = torch.arange(8, dtype=torch.float64).expand(1, 1, 6, 8)
    out = upsample_finer(scores, (24, 32), 4)[0, 0]
    columns = torch.arange(32, dtype=torch.float64)
    torch.testing.assert_close(out[3], ((columns - 3.5) / 4).clamp(0, 7))
    coarse = torch.arange(4, dtype=torch.float64).expand(1, 1, 3, 4)
    torch.testing.assert_close(F.interpolate(coarse, size=(24, 32), mode="bilinear")[0, 0, 3, 4:28:4] * 2,
                               out[3, 4:28:4])  # the same place as upsampling the stride-8 map


def test_simulated_forward_is_the_finer_map_upsampled():
    model = _model(18, 8).eval()
    images = torch.randn(1, 3, 32, 40, dtype=torch.float64)
    simulated = Simulated(model, "backbone.layer2")
    with torch.no_grad():
        torch.testing.assert_close(simulated(images)["out"],
                                   upsample_finer(simulated.scores(images)["out"], (32, 40), 4))
