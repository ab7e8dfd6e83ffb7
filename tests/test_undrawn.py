"""``ctxseg inspect`` and loading a weights file build the model without drawing its weights,
for speed: that this took effect, and that neither the figures nor the loaded model changed
(that inspect imports no torchvision: tests/test_startup.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from ctxseg.files.weights import save_weights
from ctxseg.model import SegmentationModel
from ctxseg.model.load import load_model
from ctxseg.model.summary import summarize
from ctxseg.model.undrawn import undrawn_model
from ctxseg.spec import load_spec

ROOT = Path(__file__).parents[1]
SPECS = ["fcn_resnet18.toml", "parsenet/context_scenes_resnet18.toml", "pspnet/context_scenes_resnet18.toml",
         "gcn/context_scenes_k15_br.toml", "dilation/context_scenes_basic.toml", "fcrn/context_scenes_ce_simulated.toml"]


def built(path: str) -> tuple[SegmentationModel, SegmentationModel]:
    """The spec's model as inspect builds it and as training does, from one seed."""
    spec = load_spec(ROOT / "examples" / path)
    torch.manual_seed(0)
    fast = undrawn_model(spec.model, 8, path)
    torch.manual_seed(0)
    return fast, SegmentationModel(spec.model, 8, pretrained=False)


def parameters_in_file(path: Path) -> Counter[str]:
    """Parameters per component of a weights file, counted from its tensors (all but batch norm's
    statistics) and named as inspect reports them."""
    counts: Counter[str] = Counter()
    for key, tensor in safetensors.torch.load_file(path).items():
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            part, index = key.split(".")[:2]
            name = {"context": f"context[{index}]", "aux": f"aux.{index} (training only)"}.get(part, part)
            counts[name] += tensor.numel()
    return counts


@pytest.mark.parametrize("path", SPECS)
def test_inspect_reports_the_figures_of_the_model_training_builds(path, tmp_path):
    fast, trained = built(path)
    figures = summarize(fast, (96, 64))
    assert figures == summarize(trained, (96, 64))
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape for k, v in trained.state_dict().items()}
    # the parameters inspect reports are those training saves
    save_weights(tmp_path / "model.safetensors", trained, {}, [str(i) for i in range(8)], [(i, i, i) for i in range(8)])
    saved = parameters_in_file(tmp_path / "model.safetensors")
    reported = figures["parameters"]
    assert {part: n for part, n in reported.items() if n and part not in ("total", "inference")} == saved
    assert reported["total"] == saved.total()
    assert reported["inference"] == sum(n for part, n in saved.items() if not part.startswith("aux."))


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


def test_loading_draws_nothing_and_gives_the_saved_model(tmp_path):
    spec = load_spec(ROOT / "examples" / "fcn_resnet18.toml")
    saved = SegmentationModel(spec.model, 8, pretrained=False)
    save_weights(tmp_path / "model.safetensors", saved, spec.to_dict(), [str(i) for i in range(8)],
                 [(i, i, i) for i in range(8)])
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    loaded = load_model(tmp_path / "model.safetensors")[0]
    assert torch.equal(torch.rand(4), expected)  # the build drew no random number
    state = saved.state_dict()
    assert all(torch.equal(tensor, state[name]) for name, tensor in loaded.state_dict().items())
