"""Spec inheritance (``extends``) and ``ctxseg inspect --resolved``.

Paths are relative to a temporary working directory, so the messages are asserted whole.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ctxseg.cli import main
from ctxseg.errors import SpecError
from ctxseg.files.weights import save_weights
from ctxseg.model import SegmentationModel
from ctxseg.spec import load_spec, spec_from_dict

EXAMPLES = Path(__file__).parents[1] / "examples"
SPECS = [p for p in sorted(EXAMPLES.rglob("*.toml")) if not {"thirdparty", "base"} & set(p.parts)]

BASE = """
[model.backbone]
name = "base.resnet"
depth = 50
output_stride = 8

[[model.context]]
name = "base.fcn"
channels = 64

[[model.context]]
name = "base.scores"

[data]
batch_size = 4
crop_size = 64
scale = [0.5, 2.0]

[run]
steps = 10
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def write(path: str, text: str) -> Path:
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    return file


def error(path: str) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    return str(info.value)


def test_tables_merge_key_by_key_and_the_child_wins():
    write("base.toml", BASE)
    spec = load_spec(write("child.toml", 'extends = "base.toml"\n[model.backbone]\ndepth = 18\n'
                                         "[data]\ncrop_size = 32\n[run.passes]\nname = 'fcrn.simulated'\n"
                                         "layer = 'backbone.layer2'\n"))
    backbone = spec.model.backbone.config
    assert (backbone.depth, backbone.output_stride) == (18, 8)
    assert (spec.data.batch_size, spec.data.crop_size, spec.data.scale) == (4, 32, (0.5, 2.0))
    assert (spec.run.steps, spec.run.passes.config.layer) == (10, "backbone.layer2")
    assert [ref.name for ref in spec.model.context] == ["base.fcn", "base.scores"]


def test_arrays_and_arrays_of_tables_are_replaced_whole():
    write("base.toml", BASE)
    spec = load_spec(write("child.toml", 'extends = "base.toml"\n[data]\nscale = [1.0, 1.0]\n'
                                         '[[model.context]]\nname = "base.fcn"\ndropout = 0.0\n'))
    (head,) = spec.model.context
    assert head.name == "base.fcn" and head.config == type(head.config)(dropout=0.0)  # not the base's 64 channels
    assert spec.data.scale == (1.0, 1.0)


def test_a_table_naming_another_component_replaces_the_bases():
    """The issue's spec: the bootstrapping loss's ``top_k`` is not carried over to cross-entropy."""
    write("child.toml", f'extends = "{EXAMPLES / "fcrn/context_scenes_bs512.toml"}"\n'
                        '[loss]\nname = "base.cross_entropy"\n[run.passes]\nname = "base.single"\n')
    spec = load_spec("child.toml")
    assert spec.loss.name == "base.cross_entropy" and spec.loss.config == type(spec.loss.config)()
    write("base.toml", BASE + '[run.passes]\nname = "fcrn.simulated"\nlayer = "backbone.layer2"\n')
    spec = load_spec(write("child.toml", 'extends = "base.toml"\n[run.passes]\nname = "base.single"\n'))
    assert spec.run.passes.name == "base.single" and spec.run.steps == 10  # the rest of [run] still merges


def test_a_table_naming_the_same_component_merges_into_the_bases():
    write("base.toml", BASE + '[loss]\nname = "fcrn.bootstrapping"\ntop_k = 0\nthreshold = 0.7\n')
    spec = load_spec(write("child.toml", 'extends = "base.toml"\n[loss]\nname = "fcrn.bootstrapping"\n'
                                         "min_kept = 7\n"))
    assert (spec.loss.config.threshold, spec.loss.config.min_kept) == (0.7, 7)
    spec = load_spec(write("child.toml", 'extends = "base.toml"\n[loss]\nmin_kept = 7\n'))  # no name: the same
    assert (spec.loss.name, spec.loss.config.threshold, spec.loss.config.min_kept) == ("fcrn.bootstrapping", 0.7, 7)


def test_a_chain_of_three_files_applies_in_order():
    write("a.toml", BASE)
    write("b.toml", 'extends = "a.toml"\n[data]\nbatch_size = 2\ncrop_size = 48\n')
    spec = load_spec(write("c.toml", 'extends = "b.toml"\n[data]\ncrop_size = 16\n'))
    assert (spec.data.batch_size, spec.data.crop_size, spec.run.steps) == (2, 16, 10)


def test_the_path_is_relative_to_the_file_that_names_it(tmp_path, monkeypatch):
    write("recipes/base/model.toml", BASE)
    write("recipes/base/data.toml", 'extends = "model.toml"\n[data]\nbatch_size = 1\n')
    write("recipes/rows/row.toml", 'extends = "../base/data.toml"\n[run]\nsteps = 3\n')
    monkeypatch.chdir(tmp_path / "recipes" / "base")  # neither the child's folder nor the base's
    spec = load_spec("../rows/row.toml")
    assert (spec.model.backbone.config.depth, spec.data.batch_size, spec.run.steps) == (50, 1, 3)


def test_a_missing_base_names_the_chain():
    write("a.toml", 'extends = "b.toml"\n')
    assert error("a.toml") == "a.toml: extends 'b.toml': no such file (a.toml -> b.toml)"
    write("b.toml", 'extends = "sub/c.toml"\n')
    assert error("a.toml") == "b.toml: extends 'sub/c.toml': no such file (a.toml -> b.toml -> sub/c.toml)"


def test_a_cycle_is_an_error():
    write("a.toml", 'extends = "b.toml"\n')
    write("b.toml", 'extends = "./a.toml"\n')
    assert error("a.toml") == "b.toml: extends './a.toml': a cycle (a.toml -> b.toml -> a.toml)"
    write("self.toml", 'extends = "self.toml"\n')
    assert error("self.toml") == "self.toml: extends 'self.toml': a cycle (self.toml -> self.toml)"


def test_extends_must_be_a_string():
    write("a.toml", 'extends = ["b.toml"]\n')
    assert error("a.toml") == "a.toml: extends: expected a path string (relative to this file), got ['b.toml']"


def test_invalid_toml_in_a_base_is_named_by_its_own_path():
    write("a.toml", 'extends = "b.toml"\n')
    write("b.toml", "model = [\n")
    message = error("a.toml")
    assert message.startswith("b.toml: invalid TOML: ") and message.endswith("(a.toml -> b.toml)")


def test_validation_errors_of_the_merged_spec_name_the_users_file():
    write("base.toml", BASE.replace("depth = 50", "dept = 50"))
    write("child.toml", 'extends = "base.toml"\n')
    assert error("child.toml").startswith(
        "child.toml: model.backbone: unknown key 'dept' (did you mean 'depth'?); expected one of: depth,")


def test_extends_is_only_a_file_key():
    """A resolved table, as a weights file embeds it, never holds ``extends``."""
    with pytest.raises(SpecError, match=r"<spec>: \(top level\): unknown key 'extends'"):
        spec_from_dict({"extends": "base.toml", "model": {"backbone": {"name": "base.resnet"}}})


def test_inspect_resolved_prints_toml_that_loads_back_equal(capsys):
    write("base/base.toml", BASE)
    write("child.toml", 'extends = "base/base.toml"\n[model.backbone]\ndepth = 18\n')
    assert main(["inspect", "child.toml", "--resolved"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    table = tomllib.loads(out)  # nothing but TOML is printed
    assert "extends" not in table and table["optimizer"] == {
        "name": "base.sgd", "backbone_lr_factor": 1.0, "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4,
        "nesterov": False}  # defaults in
    assert load_spec(write("resolved.toml", out)) == load_spec("child.toml")


def test_inspect_resolved_prints_a_weights_files_embedded_spec(capsys):
    spec = load_spec(write("spec.toml", BASE.replace("depth = 50", "depth = 18")))
    model = SegmentationModel(spec.model, 2, pretrained=False)
    save_weights("model.safetensors", model, spec.to_dict(), ["a", "b"], [(0, 0, 0), (255, 0, 0)])
    assert main(["inspect", "model.safetensors", "--resolved"]) == 0
    assert capsys.readouterr().out == spec.to_toml()


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_every_example_round_trips_through_its_resolved_toml(path, tmp_path):
    spec = load_spec(path)
    assert load_spec(write("resolved.toml", spec.to_toml())) == spec
