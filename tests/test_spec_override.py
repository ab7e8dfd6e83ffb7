"""``--set KEY=VALUE``: overrides laid over a spec after ``extends`` and before validation, on
``load_spec`` and on the commands that take them (train and inspect: any key; eval and
predict: the ``[test]`` table)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ctxseg.cli import main
from ctxseg.errors import CtxsegError, SpecError
from ctxseg.model.report import resolved_spec
from ctxseg.spec import Override, load_spec

BASE = """
[model.backbone]
name = "base.resnet"
depth = 18
output_stride = 8

[[model.context]]
name = "base.fcn"
channels = 64

[loss]
name = "fcrn.bootstrapping"
top_k = 512
"""


@pytest.fixture
def spec_file(tmp_path) -> Path:
    (tmp_path / "base.toml").write_text(BASE)
    path = tmp_path / "child.toml"
    path.write_text('extends = "base.toml"\n[run]\nsteps = 10\n')
    return path


def load(path: Path, *texts: str):
    return load_spec(path, [Override.parse(text) for text in texts])


def error(path: Path, *texts: str) -> str:
    with pytest.raises(SpecError) as info:
        load(path, *texts)
    return str(info.value)


@pytest.mark.parametrize(("text", "value"), [
    ("[1, 2, 3, 6]", [1, 2, 3, 6]), ("true", True), ("0.01", 0.01), ("7", 7), ('"base.sgd"', "base.sgd"),
    ("base.sgd", "base.sgd"), ("a b", "a b"), ("{ name = 'x', k = 1 }", {"name": "x", "k": 1}), ("", ""),
])
def test_the_value_is_toml_or_else_a_string(text, value):
    assert Override.parse(f"run.steps={text}").value == value


def test_the_key_is_a_dotted_path_with_indices():
    assert Override.parse("model.context[0].bins=[1]").path == ("model", "context", 0, "bins")
    assert Override.parse(" run.steps = 3").path == ("run", "steps")
    with pytest.raises(SpecError, match=r"^--set run\.steps: expected KEY=VALUE, such as run\.steps=100$"):
        Override.parse("run.steps")
    for key in ("model..context", "model.context[x]", "model.context[-1]", "", "a b"):
        with pytest.raises(SpecError, match=r"expected a dotted spec key with \[index\] into arrays"):
            Override.parse(f"{key}=1")


def test_values_are_set_after_extends_and_validated(spec_file):
    spec = load(spec_file, "run.steps=3", "model.context[0].channels=32", "data.dataset.image_size=96",
                "test.flip=true", "model.backbone.depth=34")
    assert (spec.run.steps, spec.model.context[0].config.channels, spec.model.backbone.config.depth) == (3, 32, 34)
    assert (spec.data.dataset.config.image_size, spec.test.flip) == (96, True)  # tables the spec leaves out
    assert load(spec_file, "data.scale[1]=2.0").data.scale == (1.0, 2.0)  # into a default array
    assert load(spec_file) == load_spec(spec_file)


def test_a_table_value_merges_as_extends_does(spec_file):
    spec = load(spec_file, "data={batch_size = 2}", "model.backbone={depth = 50}")
    assert (spec.data.batch_size, spec.model.backbone.config.depth, spec.model.backbone.config.output_stride) == (
        2, 50, 8)
    spec = load(spec_file, "model.context=[{name = 'pspnet.pyramid_pooling', bins = [1, 2]}]")  # an array is replaced whole
    assert [(ref.name, ref.config.bins) for ref in spec.model.context] == [("pspnet.pyramid_pooling", (1, 2))]


def test_a_new_name_drops_the_old_components_keys(spec_file):
    """As in ``extends``: ``top_k`` belongs to the bootstrapping loss, not to cross-entropy."""
    assert load(spec_file, "loss.name=base.cross_entropy").loss.config == load(spec_file, "loss={name = "
                                                                               "'base.cross_entropy'}").loss.config
    assert load(spec_file, "loss.name=base.cross_entropy").loss.config.label_smoothing == 0.0
    assert load(spec_file, "loss.name=fcrn.bootstrapping").loss.config.top_k == 512  # the same name: kept
    spec = load(spec_file, "model.context[0].bins=[1, 3]", "model.context[0].name=pspnet.pyramid_pooling")  # the name goes first
    assert (spec.model.context[0].name, spec.model.context[0].config.bins) == ("pspnet.pyramid_pooling", (1, 3))


def test_errors_name_the_key(spec_file):
    assert error(spec_file, "model.context[3].bins=[1]") == (
        "--set model.context[3].bins: the spec's model.context has 1 entry ([0])")
    assert error(spec_file, "model.aux[0].weight=1.0") == (
        "--set model.aux[0].weight: the spec leaves model.aux out; set it whole, as --set model.aux=[...]")
    assert error(spec_file, "run.steps.x=1") == "--set run.steps.x: run.steps is 10, not a table"
    assert error(spec_file, "run[0]=1") == "--set run[0]: run is a table, not an array"
    assert error(spec_file, "run.steps=ten") == f"{spec_file} (with --set): run.steps: expected an integer, got 'ten'"
    assert error(spec_file, "loss.top=1").startswith(
        f"{spec_file} (with --set): loss: unknown key 'top' (did you mean 'top_k'?); expected one of: top_k,")


def test_inspect_resolved_shows_the_overrides(spec_file, capsys):
    assert main(["inspect", str(spec_file), "--resolved", "--set", "run.steps=3", "--set", "loss.name=base.dice"]) == 0
    table = tomllib.loads(capsys.readouterr().out)
    assert table["run"]["steps"] == 3 and table["loss"]["name"] == "base.dice" and "top_k" not in table["loss"]


def test_inspect_refuses_overrides_of_a_weights_file(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "model.safetensors"), "--set", "run.steps=3"]) == 2
    assert capsys.readouterr().err == (f"ctxseg: error: --set run.steps: --set changes a spec file; "
                                       f"{tmp_path / 'model.safetensors'} holds the spec its weights were trained "
                                       "with\n")


def test_train_records_the_overrides_in_the_run(tiny_spec_file, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(tiny_spec_file), "--out", str(out), "--quiet", "--set", "run.steps=1",
                 "--set", "run.eval_every=0", "--set", "model.context[0].channels=8"]) == 0
    spec = resolved_spec(out / "model.safetensors")
    assert (spec.run.steps, spec.model.context[0].config.channels) == (1, 8)
    assert spec == load(tiny_spec_file, "run.steps=1", "run.eval_every=0", "model.context[0].channels=8")


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_eval_and_predict_set_only_the_test_table(command, monkeypatch, capsys):
    seen = {}

    def run(*args, test, **kwargs):
        seen["test"] = test
        raise CtxsegError("stopped")

    monkeypatch.setattr(f"ctxseg.engine.{'eval_weights.evaluate_weights' if command == 'eval' else 'predict.predict'}",
                        run)
    rest = ["m.safetensors", *(["a.png", "--out", "masks"] if command == "predict" else [])]
    assert main([command, *rest, "--set", "test.flip=true", "--set", "test.scales=[0.5, 1]", "--batch", "2"]) == 2
    assert seen["test"] == {"flip": True, "scales": [0.5, 1], "batch": 2}
    assert capsys.readouterr().err == "ctxseg: error: stopped\n"
    assert main([command, *rest, "--set", "run.steps=3"]) == 2
    assert capsys.readouterr().err == (f"ctxseg: error: --set run.steps: ctxseg {command} runs the weights with the "
                                       "spec they were trained with; --set changes only its [test] table here, as "
                                       "test.KEY (test.flip=true)\n")
    assert main([command, *rest, "--set", "test.flip=true", "--no-flip"]) == 2
    assert capsys.readouterr().err == "ctxseg: error: --set test.flip and --flip both set it; give one\n"
