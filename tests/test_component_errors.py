"""A component is built one way (``Ref.build``): whatever goes wrong while building it is a
ComponentError naming the spec key, the component and its plugin distribution, which the CLI
prints on one line (the traceback only with ``ctxseg --debug``)."""

from __future__ import annotations

import tomllib
import types

import attrs
import pytest
import torch
from torch import Tensor

from ctxseg.cli import main
from ctxseg.engine.train import train
from ctxseg.errors import ComponentError, DataError
from ctxseg.interfaces import Loss, Metric, Passes, Schedule, SegmentationDataset
from ctxseg.registry import Component, default_registry, hookimpl, reset_default_registry
from ctxseg.spec import spec_from_dict


@attrs.frozen
class Empty:
    """No parameters."""


class Raising:
    """A constructor that raises, as a plugin's bug does."""

    Config = Empty

    def __init__(self, config: Empty, *args: object):
        raise ValueError("broken on purpose")


class RaisingLoss(Raising, Loss):
    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        return scores.sum()


class RaisingOptimizer(Raising, torch.optim.Optimizer):
    pass


class RaisingSchedule(Raising, Schedule):
    def __call__(self, step: int) -> float:
        return 1.0


class RaisingPasses(Raising, Passes):
    pass


class RaisingMetric(Raising, Metric):
    def update(self, prediction: Tensor, target: Tensor) -> None: ...

    def compute(self) -> dict[str, float]:
        return {}


class RaisingDataset(Raising, SegmentationDataset):
    @classmethod
    def class_names(cls, config: Empty) -> list[str]:
        return ["a", "b"]

    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        raise IndexError(index)


class Forgetful(Loss):
    """A loss that forgot ``forward``."""

    Config = Empty

    def __init__(self, config: Empty, ignore_index: int):
        super().__init__()


class NotALoss:
    """A loss that does not derive from ctxseg.interfaces.Loss."""

    Config = Empty

    def __init__(self, config: Empty, ignore_index: int):
        self.ignore_index = ignore_index


class MissingData(Loss):
    """A constructor raising a ctxseg error, which already says what to fix."""

    Config = Empty

    def __init__(self, config: Empty, ignore_index: int):
        raise DataError("class_weights.txt: no such file")

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        return scores.sum()


@pytest.fixture
def broken():
    components = [
        Component("dataset", "broken.dataset", RaisingDataset),
        Component("passes", "broken.passes", RaisingPasses),
        Component("loss", "broken.loss", RaisingLoss),
        Component("optimizer", "broken.optimizer", RaisingOptimizer),
        Component("schedule", "broken.schedule", RaisingSchedule),
        Component("metric", "broken.metric", RaisingMetric),
        Component("loss", "broken.forgetful", Forgetful),
        Component("loss", "broken.not_a_loss", NotALoss),
        Component("loss", "broken.missing_data", MissingData),
    ]
    plugin = types.SimpleNamespace(ctxseg_components=hookimpl(lambda: components))
    default_registry().register(plugin, "ctxseg-broken", "0.1", entry_point="broken")
    yield
    reset_default_registry()


def who(key: str, name: str) -> str:
    return f"spec.toml: {key} ({name}, plugin ctxseg-broken 0.1): "


def test_a_raising_constructor_is_named(broken):
    ref = spec_from_dict({"model": {"backbone": {"name": "base.resnet"}}, "loss": {"name": "broken.loss"}}).loss
    with pytest.raises(ComponentError) as raised:
        ref.build(255, key="loss", source="spec.toml")
    assert str(raised.value) == who("loss", "broken.loss") + "constructor raised ValueError: broken on purpose"
    assert isinstance(raised.value.__cause__, ValueError)


def test_an_abstract_class_is_named_with_what_it_lacks(broken):
    ref = spec_from_dict({"model": {"backbone": {"name": "base.resnet"}}, "loss": {"name": "broken.forgetful"}}).loss
    with pytest.raises(ComponentError) as raised:
        ref.build(255, key="loss", source="spec.toml")
    assert str(raised.value) == (who("loss", "broken.forgetful")
                                 + "class Forgetful is abstract: it does not implement forward")


def test_an_object_of_the_wrong_kind_is_named(broken):
    ref = spec_from_dict({"model": {"backbone": {"name": "base.resnet"}}, "loss": {"name": "broken.not_a_loss"}}).loss
    with pytest.raises(ComponentError) as raised:
        ref.build(255, key="loss", source="spec.toml")
    assert str(raised.value) == (who("loss", "broken.not_a_loss")
                                 + "built a NotALoss, expected an instance of ctxseg.interfaces.Loss")


def test_a_ctxseg_error_from_a_constructor_is_kept_as_it_is(broken):
    ref = spec_from_dict({"model": {"backbone": {"name": "base.resnet"}}, "loss": {"name": "broken.missing_data"}}).loss
    with pytest.raises(DataError, match=r"^class_weights.txt: no such file$"):
        ref.build(255, key="loss", source="spec.toml")


def test_a_sound_component_is_built_with_its_config_first(broken):
    ref = spec_from_dict({"model": {"backbone": {"name": "base.resnet"}}, "schedule": {"name": "base.poly"}}).schedule
    schedule = ref.build(10, key="schedule")
    assert isinstance(schedule, Schedule) and schedule.config == ref.config and schedule(10) < schedule(0)


@pytest.mark.parametrize(("key", "name"), [
    ("data.dataset", "broken.dataset"), ("run.passes", "broken.passes"), ("loss", "broken.loss"),
    ("optimizer", "broken.optimizer"), ("schedule", "broken.schedule"), ("metrics[0]", "broken.metric"),
])
def test_training_names_the_key_of_every_component_it_builds(broken, tiny_spec_text, tmp_path, key, name):
    data = tomllib.loads(tiny_spec_text)
    data["run"]["steps"] = 1
    if key == "metrics[0]":
        data["metrics"] = [{"name": name}]
    else:
        *tables, last = key.split(".")
        table = data
        for part in tables:
            table = table.setdefault(part, {})
        table[last] = {"name": name}
    with pytest.raises(ComponentError) as raised:
        train(spec_from_dict(data), tmp_path / "run", source="spec.toml", progress=False)
    assert str(raised.value) == who(key, name) + "constructor raised ValueError: broken on purpose"


@pytest.mark.parametrize(("loss", "message"), [
    ("broken.loss", "constructor raised ValueError: broken on purpose"),
    ("broken.forgetful", "class Forgetful is abstract: it does not implement forward"),
])
def test_ctxseg_train_prints_a_broken_loss_on_one_line(broken, tiny_spec_text, tmp_path, capsys, loss, message):
    spec = tmp_path / "spec.toml"
    spec.write_text(f'{tiny_spec_text}\n[loss]\nname = "{loss}"\n')
    out = tmp_path / "run"
    assert main(["train", str(spec), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == f"ctxseg: error: {spec}: loss ({loss}, plugin ctxseg-broken 0.1): {message}\n"
    assert not out.exists()  # named before anything is written
    assert main(["--debug", "train", str(spec), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith(f"{message}\n")
