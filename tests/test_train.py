"""End to end: train, resume after a kill, evaluate, predict, inspect, through the CLI."""

from __future__ import annotations

import json

import attrs
import pytest
import safetensors.torch
import torch

from ctxseg.cli import main
from ctxseg.engine.train import train
from ctxseg.errors import SpecError, WeightsError
from ctxseg.spec import load_spec

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


def test_train_fills_the_run_directory(tmp_path, tiny_spec_file, scenes_root, capsys, undetermined,
                                       counted_confusion):
    out = tmp_path / "run"
    assert main(["train", str(tiny_spec_file), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "mean iou" in printed and "boat" in printed
    for name in ("model.safetensors", "checkpoint.safetensors", "metrics.json", "curves.png"):
        assert (out / name).stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["final"]["mean_iou"] <= 1
    assert [h["step"] for h in metrics["history"] if "mean_iou" in h] == [2, 4]
    assert len(list((out / "predictions").glob("*.png"))) == 3

    assert main(["eval", str(out / "model.safetensors"), "--json", "--quiet", "--precision", "fp32",
                 "--metric", "gcn.boundary", "--metric-arg", "width=7"]) == 0  # a plugin's metric
    evaluated = json.loads(capsys.readouterr().out)
    # eval runs channels_last, training the spec's contiguous format: near-tied scores may round
    # apart, so the confusion matrices agree up to the pixels rounding can flip
    flips = 2 * undetermined(out / "model.safetensors", out / "model.safetensors")
    moved = (torch.tensor(evaluated["confusion"]) - torch.tensor(metrics["final"]["confusion"])).abs().sum()
    assert moved <= flips
    # and with the matrix counted directly from the model's scores
    assert (torch.tensor(evaluated["confusion"]) - counted_confusion(out / "model.safetensors")).abs().sum() <= flips
    assert evaluated["boundary_width"] == 7
    assert 0 <= evaluated["boundary_accuracy"] <= 1 and 0 <= evaluated["internal_accuracy"] <= 1

    images = sorted((scenes_root / "val" / "images").iterdir())
    assert main(["predict", str(out / "model.safetensors"), *map(str, images[:2]), "--out",
                 str(tmp_path / "pred"), "--quiet"]) == 0
    assert len(list((tmp_path / "pred").glob("*_overlay.png"))) == 2

    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    capsys.readouterr()
    assert main(["predict", str(out / "model.safetensors"), str(bad), "--out", str(tmp_path / "p2"), "--quiet"]) == 1
    assert capsys.readouterr().err == (f"ctxseg: error: {bad}: not a readable image (cannot identify image file "
                                       f"'{bad}')\nctxseg: 1 of 1 images failed (reported above)\n")


@pytest.mark.parametrize("accumulate", [1, 2])
def test_killed_run_resumes_to_the_same_weights(tmp_path, tiny_spec_file, kill_after_first_checkpoint, accumulate):
    text = tiny_spec_file.read_text()
    tiny_spec_file.write_text(text.replace('device = "cpu"', f'device = "cpu"\naccumulate = {accumulate}'))
    spec = load_spec(tiny_spec_file)
    assert spec.run.accumulate == accumulate
    train(spec, tmp_path / "straight", progress=False)

    kill_after_first_checkpoint(spec, tmp_path / "killed")  # after the checkpoint of step 2
    train(spec, tmp_path / "killed", resume=True, progress=False)

    straight = safetensors.torch.load_file(tmp_path / "straight" / "model.safetensors")
    resumed = safetensors.torch.load_file(tmp_path / "killed" / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert straight[key].equal(resumed[key]), key


def test_bad_spec_exits_with_a_message_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[model.backbone]\nname = "base.resnet"\ndepth = 19\n')
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ctxseg: error: ") and "bad.toml: model.backbone" in err and "Traceback" not in err


def test_inspect_reports_parameters_stride_and_field(tiny_spec_file, capsys):
    assert main(["inspect", str(tiny_spec_file), "--json", "--input-size", "64", "64",
                 "--rf-size", "512", "512"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["output_stride"] == 8
    assert report["output_shape"] == [1, 8, 64, 64]
    assert report["parameters"]["backbone"] == 11_176_512  # torchvision resnet18 without fc
    assert report["parameters"]["inference"] == report["parameters"]["total"] - report["parameters"]["aux.c4 (training only)"]
    h, w = report["receptive_field"]
    assert h == w and 200 < h < 512


@pytest.mark.parametrize(("precision", "channels_last"), [("bf16", True), ("fp32", False)])
def test_precision_and_memory_format_reach_the_training_step(tmp_path, tiny_spec_file, precision, channels_last):
    """Every conv of a training step sees the run's memory format and, under bf16
    autocast, returns bf16; the stored weights stay fp32 either way."""
    text = tiny_spec_file.read_text().replace(
        'device = "cpu"', f'device = "cpu"\nprecision = "{precision}"\nchannels_last = {str(channels_last).lower()}')
    tiny_spec_file.write_text(text.replace("steps = 4", "steps = 1"))
    spec = load_spec(tiny_spec_file)
    seen = []

    def record(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d) and module.training and torch.is_grad_enabled():
            seen.append((inputs[0].is_contiguous(memory_format=torch.channels_last), inputs[0].is_contiguous(),
                         output.dtype))

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        metrics = train(spec, tmp_path / "run", progress=False)
    finally:
        hook.remove()
    # its evaluations ran in training's memory format, in [test]'s precision ("auto": fp32 on the CPU)
    assert (metrics["inference"]["precision"], metrics["inference"]["channels_last"]) == ("fp32", channels_last)
    assert len(seen) > 20  # resnet18's convs, the FCN head's and the auxiliary head's, one step
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    assert all(out == dtype for _, _, out in seen)
    if channels_last:
        assert all(last for last, _, _ in seen)
    else:
        assert all(contiguous for _, contiguous, _ in seen) and not seen[0][0]  # the images' conv
    weights = safetensors.torch.load_file(tmp_path / "run" / "model.safetensors")
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float32}


def test_frozen_components_keep_their_weights_and_eval_mode(tmp_path, tiny_spec_file):
    text = tiny_spec_file.read_text().replace('depth = 18\n', 'depth = 18\nfrozen = true\n', 1)
    tiny_spec_file.write_text(text.replace("steps = 4", "steps = 2"))
    spec = load_spec(tiny_spec_file)
    from ctxseg.model import SegmentationModel

    model = SegmentationModel(spec.model, 8).train()
    assert not model.backbone.training and model.context[0].training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    train(spec, tmp_path / "frozen", progress=False)
    trained = safetensors.torch.load_file(tmp_path / "frozen" / "model.safetensors")
    torch.manual_seed(spec.run.seed)
    initial = SegmentationModel(spec.model, 8).state_dict()
    assert all(trained[k].equal(v) for k, v in initial.items() if k.startswith("backbone."))
    assert not all(trained[k].equal(v) for k, v in initial.items() if k.startswith("context."))


def test_training_starts_from_an_init_weights_file(tmp_path, tiny_spec_file):
    spec = load_spec(tiny_spec_file)
    train(spec, tmp_path / "first", progress=False)
    first = safetensors.torch.load_file(tmp_path / "first" / "model.safetensors")
    init = f'[model]\ninit = "{tmp_path / "first" / "model.safetensors"}"\n\n[data]'
    frozen = tiny_spec_file.read_text().replace("depth = 18\n", "depth = 18\nfrozen = true\n", 1)
    (tmp_path / "second.toml").write_text(frozen.replace("[data]", init, 1))
    train(load_spec(tmp_path / "second.toml"), tmp_path / "second", progress=False)
    second = safetensors.torch.load_file(tmp_path / "second" / "model.safetensors")
    assert all(second[k].equal(v) for k, v in first.items() if k.startswith("backbone."))
    assert not all(second[k].equal(v) for k, v in first.items() if k.startswith("context."))

    wider = frozen.replace("channels = 16", "channels = 12").replace("[data]", init, 1)
    (tmp_path / "third.toml").write_text(wider)
    with pytest.raises(WeightsError, match=r"mis-shaped tensors: context\.0\.block\.0\.weight"):
        train(load_spec(tmp_path / "third.toml"), tmp_path / "third", progress=False)


def test_a_crop_smaller_than_the_output_stride_is_refused(tmp_path, tiny_spec_file):
    spec = load_spec(tiny_spec_file)
    spec = attrs.evolve(spec, data=attrs.evolve(spec.data, crop_size=4))
    with pytest.raises(SpecError, match=r"spec: data.crop_size: 4 is smaller than the model's output stride 8"):
        train(spec, tmp_path / "run", source="spec")
    assert not (tmp_path / "run").exists()


def test_a_training_run_sets_up_one_runtime_and_one_passes(tmp_path, tiny_spec_file, monkeypatch):
    """The device and threads are chosen once, and the passes that train the model also run its evaluations."""
    from ctxseg.engine.runtime import Runtime
    from ctxseg.interfaces import Passes

    tiny_spec_file.write_text(tiny_spec_file.read_text().replace("steps = 4", "steps = 2"))
    calls = []  # (method, object)

    def recorded(method):
        def call(self, *args, **kwargs):
            calls.append((method.__qualname__, self))
            return method(self, *args, **kwargs)
        return call

    for cls, name in [(Runtime, "__init__"), (Passes, "__init__"), (Passes, "backward"), (Passes, "inference")]:
        monkeypatch.setattr(cls, name, recorded(getattr(cls, name)))
    train(load_spec(tiny_spec_file), tmp_path / "run", progress=False)
    assert len([obj for method, obj in calls if method == "Runtime.__init__"]) == 1
    (passes,) = [obj for method, obj in calls if method == "Passes.__init__"]
    assert {method for method, obj in calls if obj is passes} == {"Passes.__init__", "Passes.backward",
                                                                  "Passes.inference"}
    assert all(obj is passes for method, obj in calls if method.startswith("Passes."))


def test_a_checkpoint_written_before_keys_were_added_still_resumes(tmp_path, tiny_spec_file, kill_after_first_checkpoint):
    """A checkpoint of an earlier version (format /1, no checksum, a spec without keys added since,
    such as run.callbacks) resumes: its spec is read as the run's is, defaults filled in."""
    spec = load_spec(tiny_spec_file)
    kill_after_first_checkpoint(spec, tmp_path / "run")  # after the checkpoint of step 2
    path = tmp_path / "run" / "checkpoint.safetensors"
    with safetensors.safe_open(path, "pt") as f:
        meta = f.metadata()
        tensors = {key: f.get_tensor(key) for key in f.keys()}
    saved = json.loads(meta["ctxseg.spec"])
    del saved["run"]["callbacks"]
    old = {k: v for k, v in meta.items() if k != "ctxseg.checksum"}
    old.update({"ctxseg.format": "ctxseg.checkpoint/1", "ctxseg.spec": json.dumps(saved)})
    safetensors.torch.save_file(tensors, path, metadata=old)
    with pytest.warns(UserWarning):  # written before ctxseg checksummed its files
        train(spec, tmp_path / "run", resume=True, progress=False)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == spec.run.steps
    saved["run"]["steps"] = 99  # a different spec is still refused
    old["ctxseg.spec"] = json.dumps(saved)
    safetensors.torch.save_file(tensors, path, metadata=old)
    with pytest.warns(UserWarning), pytest.raises(WeightsError, match="was written by a run with a different spec"):
        train(spec, tmp_path / "run", resume=True, progress=False)
