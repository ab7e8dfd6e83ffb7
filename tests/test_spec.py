"""Spec loading: strict structuring and errors that name file, TOML path and expectation."""

from __future__ import annotations

import pytest

from ctxseg.errors import SpecError
from ctxseg.spec import load_spec

MINIMAL = '[model.backbone]\nname = "base.resnet"\ndepth = 18\n'


def write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def error(tmp_path, text) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    return str(info.value)


def test_defaults_are_filled_in_and_round_trip(tmp_path):
    spec = load_spec(write(tmp_path, MINIMAL))
    assert spec.model.backbone.config.depth == 18
    assert spec.loss.name == "base.cross_entropy" and spec.schedule.config.power == 0.9
    table = spec.to_dict()
    assert table["optimizer"] == {"name": "base.sgd", "backbone_lr_factor": 1.0, "lr": 0.01, "momentum": 0.9,
                                  "weight_decay": 1e-4, "nesterov": False}
    from ctxseg.spec import spec_from_dict

    assert spec_from_dict(table) == spec


@pytest.mark.parametrize(("text", "expected"), [
    (MINIMAL.replace("base.resnet", "base.resnt"),
     "spec.toml: model.backbone: unknown backbone 'base.resnt'; did you mean 'base.resnet'?"),
    (MINIMAL + "dept = 3\n",
     "spec.toml: model.backbone: unknown key 'dept' (did you mean 'depth'?); expected one of: depth,"),
    (MINIMAL.replace("18", '"18"'), "spec.toml: model.backbone.depth: expected an integer, got '18'"),
    (MINIMAL.replace("18", "18.0"), "spec.toml: model.backbone.depth: expected an integer, got 18.0"),
    (MINIMAL + "[run]\nchannels_last = 1\n", "spec.toml: run.channels_last: expected true or false, got 1"),
    (MINIMAL + "[run]\ndevice = 'gpu'\n", "spec.toml: run.device: expected one of 'cpu', 'cuda', 'auto'"),
    (MINIMAL + "[[model.context]]\nname = 'base.fcn'\ndropout = 1.5\n",
     "spec.toml: model.context[0]: 'dropout' must be < 1.0: 1.5"),
    (MINIMAL + "[[model.aux]]\nname = 'base.fcn'\nweight = 'big'\n",
     "spec.toml: model.aux[0].weight: expected a number, got 'big'"),
    ("[model]\n", "spec.toml: model.backbone: required key missing"),
    (MINIMAL + "[model.backbone.extra]\n", "unknown key 'extra'"),
    ("model = [", "spec.toml: invalid TOML"),
    # values that parse but mean nothing (issue 15, point 7)
    (MINIMAL + "[optimizer]\nname = 'base.sgd'\nlr = -0.01\n", "spec.toml: optimizer: 'lr' must be > 0.0: -0.01"),
    (MINIMAL + "[optimizer]\nname = 'base.sgd'\nlr = nan\n",
     "spec.toml: optimizer.lr: expected a finite number, got nan"),
    (MINIMAL + "[optimizer]\nname = 'base.sgd'\nlr = inf\n",
     "spec.toml: optimizer.lr: expected a finite number, got inf"),
    (MINIMAL + "[data]\nmean = [0.5, -inf, 0.5]\n", "spec.toml: data.mean[1]: expected a finite number, got -inf"),
    (MINIMAL + "[data.dataset]\nname = 'base.folder'\nroot = ''\n",
     "spec.toml: data.dataset: Length of 'root' must be >= 1: 0"),
    (MINIMAL + "[run]\nsteps = 0\n", "spec.toml: run: 'steps' must be >= 1: 0"),
])
def test_bad_spec_gives_one_clear_error(tmp_path, text, expected):
    assert expected in error(tmp_path, text)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nope.toml")
