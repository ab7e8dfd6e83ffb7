"""Each spec in examples/dilation is what its header says (tests/test_examples.py builds them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec

EXAMPLES = Path(__file__).parents[3] / "examples" / "dilation"

# file: (context module (variant, init) or None, header line)
FRONT_END = {
    "frontend.toml": (None, 'Reproduces Table 3 (top) "Front end": 69.8'),
    "frontend_basic.toml": (("basic", "identity"), 'Reproduces Table 3 (top) "Front + Basic": 71.3'),
    "frontend_large.toml": (("large", "identity"), 'Reproduces Table 3 (top) "Front + Large": 72.1'),
    "frontend_basic_random.toml": (("basic", "random"), "No table row: Sec. 3's negative result"),
    "frontend_large_random.toml": (("large", "random"), "No table row: Sec. 3's negative result"),
}
CONTEXT_SCENES = {
    "context_scenes_baseline.toml": None,
    "context_scenes_basic.toml": ("basic", "identity"),
    "context_scenes_large.toml": ("large", "identity"),
    "context_scenes_basic_random.toml": ("basic", "random"),
    "context_scenes_large_random.toml": ("large", "random"),
}

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="not a source checkout with examples/dilation")


def test_every_spec_is_listed() -> None:
    assert {p.name for p in EXAMPLES.glob("*.toml")} == {*FRONT_END, *CONTEXT_SCENES}


@pytest.mark.parametrize("name", FRONT_END)
def test_front_end_spec_is_its_table_row(name: str) -> None:
    module, row = FRONT_END[name]
    path = EXAMPLES / name
    assert f"# {row}" in path.read_text()
    spec = load_spec(path)
    backbone = spec.model.backbone
    assert backbone.name == "dilation.frontend"
    assert (backbone.config.fc_channels, backbone.config.dropout, backbone.config.intermediate_padding) == (
        4096, 0.5, False)
    assert [ref.name for ref in spec.model.context][:1] == ["base.scores"]
    assert (spec.data.batch_size, spec.data.crop_size, spec.data.dataset.config.root) == (14, 512, "data/VOCdevkit/VOC2012")
    optimizer = spec.optimizer.config
    assert (spec.optimizer.name, optimizer.lr, optimizer.momentum) == ("base.sgd", 1e-3, 0.9)  # Sec. 4 and 5
    assert spec.schedule.config.power == 0.0  # a fixed learning rate
    if module is None:
        assert len(spec.model.context) == 1 and not backbone.frozen and not spec.model.init
        assert spec.run.steps == 60_000  # Sec. 4
        return
    # Sec. 5: the module trains on the output of the trained front end, which stays fixed.
    assert spec.model.init == "runs/dilation_frontend/model.safetensors"
    scores, context = spec.model.context
    assert backbone.frozen and scores.frozen and not context.frozen
    assert context.name == "dilation.context_module"
    assert (context.config.variant, context.config.init) == module


def test_front_end_specs_differ_only_in_the_module() -> None:
    """Everything but the context module's table is shared by the four module specs."""
    specs = {name: load_spec(EXAMPLES / name).to_dict() for name in FRONT_END if name != "frontend.toml"}
    for spec in specs.values():
        spec["model"]["context"].pop()
    first, *others = specs.values()
    assert all(spec == first for spec in others)


def test_the_trained_front_end_initialises_the_module_specs() -> None:
    """``[model] init`` loads tensors where names match: every tensor of frontend.toml's model
    is in the module specs' models with its shape, and only the module's are new."""
    with torch.device("meta"):  # names and shapes only
        front_end = SegmentationModel(load_spec(EXAMPLES / "frontend.toml").model, 21, pretrained=False)
        with_module = SegmentationModel(load_spec(EXAMPLES / "frontend_large.toml").model, 21, pretrained=False)
    trained = {name: tensor.shape for name, tensor in front_end.state_dict().items()}
    target = {name: tensor.shape for name, tensor in with_module.state_dict().items()}
    assert {name: target[name] for name in trained} == trained
    new = target.keys() - trained.keys()
    assert new and all(name.startswith("context.1.layers.") for name in new)


@pytest.mark.parametrize("name", CONTEXT_SCENES)
def test_context_scenes_spec_is_the_fcn_baseline_with_the_module(name: str) -> None:
    fcn = load_spec(EXAMPLES.parent / "shallow" / "fcn_c2.toml").to_dict()
    spec = load_spec(EXAMPLES / name).to_dict()
    context = spec["model"].pop("context")
    fcn_context = fcn["model"].pop("context")
    assert context[: len(fcn_context)] == fcn_context  # base.fcn, 128 channels
    assert context[len(fcn_context)] == {"name": "base.scores", "frozen": False, "dropout": 0.0}
    assert spec["model"].pop("classifier") == {"dropout": 0.0}
    fcn["model"].pop("classifier")
    assert spec.pop("optimizer") == {**fcn.pop("optimizer"), "lr": 0.01}  # the module is unstable at 0.05
    assert spec == fcn
    module = CONTEXT_SCENES[name]
    if module is None:
        assert len(context) == len(fcn_context) + 1
        return
    (last,) = context[len(fcn_context) + 1 :]
    assert last["name"] == "dilation.context_module" and not last["frozen"]  # trained jointly
    assert (last["variant"], last["init"]) == module
