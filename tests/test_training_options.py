"""Whole-model training options: batch norm, dropout after named modules, several batches per update."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch

from ctxseg.engine.train import train
from ctxseg.errors import SpecError
from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec, spec_from_dict
from ctxseg.testing.tolerance import training_bound

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


def _model(**model_keys) -> SegmentationModel:
    spec = spec_from_dict({"model": {"backbone": {"name": "base.resnet", "depth": 18},
                                     "context": [{"name": "base.fcn", "channels": 8, "dropout": 0.0}],
                                     **model_keys}}, source="spec.toml")
    torch.manual_seed(0)
    return SegmentationModel(spec.model, num_classes=3, pretrained=False, source="spec.toml")


def _batch_norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize(("mode", "trains_affine"), [("frozen_statistics", True), ("frozen", False)])
def test_frozen_batch_norm_keeps_its_statistics(mode, trains_affine):
    model = _model(batch_norm=mode).train()
    before = [bn.running_mean.clone() for bn in _batch_norms(model)]
    model(torch.randn(2, 3, 32, 32))["out"].sum().backward()
    assert model.context[0].training and not any(bn.training for bn in _batch_norms(model))
    assert all(bn.running_mean.equal(b) for bn, b in zip(_batch_norms(model), before, strict=True))
    assert all((bn.weight.grad is not None) == trains_affine for bn in _batch_norms(model))

    batch = _model().train()
    batch(torch.randn(2, 3, 32, 32))
    assert not batch.backbone.bn1.running_mean.equal(torch.zeros(64))


def test_dropout_after_named_modules_acts_in_training_only():
    plain, dropped = _model(), _model(dropout={"p": 0.5, "after": ["context.0"]})
    in_backbone = _model(dropout={"p": 0.5, "after": ["backbone.layer4.1"]})
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for model in (dropped, in_backbone):
            torch.testing.assert_close(model.eval()(images)["out"], plain.eval()(images)["out"])

    outputs = {}
    for name, model in (("plain", plain), ("dropped", dropped)):
        model.context[0].register_forward_hook(lambda m, i, out, name=name: outputs.setdefault(name, out))
    plain.train()(images)
    dropped.train()(images)
    positive = outputs["plain"] > 0
    kept = outputs["dropped"][positive]
    assert 0.4 < (kept == 0).float().mean().item() < 0.6  # traditional dropout: element-wise, p = 0.5
    torch.testing.assert_close(kept[kept != 0], 2 * outputs["plain"][positive][kept != 0])
    assert not in_backbone.train()(images)["out"].equal(plain(images)["out"])


def test_dropout_after_a_missing_module_is_named():
    with pytest.raises(SpecError, match=r"^spec.toml: model.dropout.after\[0\]: the model has no module "
                                        r"'backbone.layer4.9'; did you mean 'backbone.layer4.1' or"):
        _model(dropout={"after": ["backbone.layer4.9"]})


def test_field_of_view_composes_declared_heads():
    assert _model().field_of_view == 3 * 8  # base.fcn's 3x3 conv at output stride 8
    scores = _model(context=[{"name": "base.fcn"}, {"name": "base.scores"}, {"name": "base.fcn"}])
    assert scores.field_of_view == (1 + 2 + 0 + 2) * 8
    global_context = _model(context=[{"name": "base.fcn"}, {"name": "pspnet.pyramid_pooling", "channels": 8}])
    assert global_context.field_of_view == "global"  # the pyramid's 1 x 1 bin sees the whole map


def test_accumulated_batches_make_the_same_update_as_one_big_batch(tmp_path, tiny_spec_file):
    """Two batches of 2 summed before one update = one batch of 4, with batch norm frozen
    (batch statistics would differ) and no dropout (its draws would)."""
    text = tiny_spec_file.read_text().replace("[data]", '[model]\nbatch_norm = "frozen_statistics"\n\n[data]')
    text = text.replace("channels = 16", "channels = 16\ndropout = 0.0").replace("channels = 8", "channels = 8\ndropout = 0.0")
    text = text.replace("steps = 4", "steps = 2").replace("eval_every = 2", "eval_every = 0")
    (tmp_path / "big.toml").write_text(text.replace("batch_size = 2", "batch_size = 4"))
    (tmp_path / "acc.toml").write_text(text.replace('device = "cpu"', 'device = "cpu"\naccumulate = 2'))
    assert load_spec(tmp_path / "acc.toml").run.accumulate == 2
    train(load_spec(tmp_path / "big.toml"), tmp_path / "big", progress=False)
    train(load_spec(tmp_path / "acc.toml"), tmp_path / "acc", progress=False)
    big = safetensors.torch.load_file(tmp_path / "big" / "model.safetensors")
    acc = safetensors.torch.load_file(tmp_path / "acc" / "model.safetensors")
    spec = load_spec(tmp_path / "big.toml")
    torch.manual_seed(spec.run.seed)
    model = SegmentationModel(spec.model, 8)
    initial = model.state_dict()
    assert sum(not initial[k].equal(v) for k, v in big.items()) > 10  # the updates did move the weights
    for key, value in big.items():  # the same sums in another order: within rounding of how far they moved
        moved = (value.double() - initial[key].double()).abs().max().item()
        torch.testing.assert_close(acc[key], value, rtol=0, atol=training_bound(model, moved, 4 * 48 * 48), msg=key)
