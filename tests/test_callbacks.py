"""Callbacks ([[run.callbacks]]): called at the right steps with the right values, their state
resumed exactly after a kill, their faults named, and held to their contract by the kit."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
import torch

from ctxseg.engine.train import train
from ctxseg.errors import ComponentError
from ctxseg.files.checkpoint import checkpoint_step
from ctxseg.files.weights import save_weights
from ctxseg.interfaces import Callback, TrainingRun
from ctxseg.model import SegmentationModel
from ctxseg.model.load import load_model
from ctxseg.registry import Component, default_registry, hookimpl, reset_default_registry
from ctxseg.spec import load_spec, spec_from_dict
from ctxseg.testing import check_component


@attrs.frozen
class Empty:
    """No parameters."""


class Recorder(Callback):
    """Records its construction and every hook call into ``log``; its state is the steps it saw,
    their losses' sum (a float) and the losses themselves (a tensor)."""

    Config = Empty
    log: ClassVar[list[tuple[Any, ...]]] = []

    def __init__(self, config: Empty, run: TrainingRun):
        super().__init__(config, run)
        self.seen, self.total, self.losses = 0, 0.0, torch.zeros(0, dtype=torch.float64)
        self.log.append(("init", run))

    def on_step_end(self, step: int, loss: float, lr: float) -> None:
        self.log.append(("on_step_end", step, loss, lr))
        self.seen, self.total = self.seen + 1, self.total + loss
        self.losses = torch.cat([self.losses, torch.tensor([loss], dtype=torch.float64)])

    def on_evaluation(self, step, metrics, examples) -> None:
        self.log.append(("on_evaluation", step, metrics, [index for index, *_ in examples]))

    def on_checkpoint(self, step: int, path: Path) -> None:
        self.log.append(("on_checkpoint", step, path, checkpoint_step(path)))

    def on_train_end(self, metrics) -> None:
        self.log.append(("on_train_end", metrics, self.state_dict()))

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "total": self.total, "losses": self.losses.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log.append(("load_state_dict", dict(state)))
        self.seen, self.total, self.losses = state["seen"], state["total"], state["losses"]


class RaisingInHook(Recorder):
    def on_evaluation(self, step, metrics, examples) -> None:
        raise ValueError("no dashboard to send to")


class TupleState(Recorder):
    def state_dict(self) -> dict[str, Any]:
        return {"seen": (self.seen,)}


class DrawsRandomNumbers(Recorder):
    def on_step_end(self, step: int, loss: float, lr: float) -> None:
        torch.rand(1)


class Forgets(Recorder):
    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class ChangesMetrics(Recorder):
    def on_evaluation(self, step, metrics, examples) -> None:
        metrics["mean_iou"] = 1.0


@pytest.fixture
def recorder():
    """The callbacks above, registered by a plugin "ctxseg-record"; the recorder's log, cleared."""
    classes = {"recorder": Recorder, "raising": RaisingInHook, "tuple_state": TupleState,
               "draws": DrawsRandomNumbers, "forgets": Forgets, "changes_metrics": ChangesMetrics}
    plugin = types.SimpleNamespace(ctxseg_components=hookimpl(
        lambda: [Component("callback", f"record.{name}", cls) for name, cls in classes.items()]))
    default_registry().register(plugin, "ctxseg-record", "0.1", entry_point="record")
    Recorder.log.clear()
    yield Recorder.log
    reset_default_registry()


def _spec(tiny_spec_file: Path, name: str = "record.recorder"):
    tiny_spec_file.write_text(f'{tiny_spec_file.read_text()}\n[[run.callbacks]]\nname = "{name}"\n')
    return load_spec(tiny_spec_file)


def test_hooks_are_called_at_their_steps_with_the_runs_values(recorder, tiny_spec_file, tmp_path):
    spec = _spec(tiny_spec_file)
    out = tmp_path / "run"
    final = train(spec, out, progress=False)
    (init, run), *calls = recorder
    val = spec.data.dataset.build("val", key="data.dataset")
    assert init == "init" and run == TrainingRun(out, 4, tuple(val.classes), tuple(map(tuple, val.palette)),
                                                 tuple(val.names))
    assert [call[:2] for call in calls] == [
        ("on_step_end", 1), ("on_step_end", 2), ("on_evaluation", 2), ("on_checkpoint", 2),
        ("on_step_end", 3), ("on_step_end", 4), ("on_evaluation", 4), ("on_checkpoint", 4), ("on_train_end", final)]
    history = json.loads((out / "metrics.json").read_text())["history"]
    losses = [call[2] for call in calls if call[0] == "on_step_end"]
    assert sum(losses) / 4 == history[1]["loss"]  # the history keeps the mean loss of steps 1-4
    schedule = spec.schedule.build(4, key="schedule")
    assert [call[3] for call in calls if call[0] == "on_step_end"] == \
        [spec.optimizer.config.lr * schedule(step) for step in range(4)]  # update n runs at the lr of step n - 1
    evaluations = [call for call in calls if call[0] == "on_evaluation"]
    assert [e[2]["mean_iou"] for e in evaluations] == [h["mean_iou"] for h in history if "mean_iou" in h]
    assert evaluations[-1][2] is final and all(e[3] == [0, 1, 2] for e in evaluations)  # every validation example
    assert [call[2:] for call in calls if call[0] == "on_checkpoint"] == [
        (out / "checkpoint.safetensors", 2), (out / "checkpoint.safetensors", 4)]  # already written at that step


def test_a_killed_run_resumes_its_callbacks_state_exactly(recorder, tiny_spec_file, tmp_path,
                                                          kill_after_first_checkpoint):
    spec = _spec(tiny_spec_file)
    train(spec, tmp_path / "straight", progress=False)
    straight = recorder[-1][2]
    kill_after_first_checkpoint(spec, tmp_path / "killed")  # after the checkpoint of step 2
    recorder.clear()
    train(spec, tmp_path / "killed", resume=True, progress=False)
    assert [call[0] for call in recorder[:3]] == ["init", "load_state_dict", "on_step_end"]  # before any hook
    assert recorder[1][1]["seen"] == 2 and recorder[2][1] == 3
    resumed = recorder[-1][2]
    assert resumed["seen"] == straight["seen"] == 4 and resumed["total"] == straight["total"]
    assert resumed["losses"].dtype == torch.float64 and resumed["losses"].equal(straight["losses"])


@pytest.mark.parametrize(("name", "message"), [
    ("record.raising", "on_evaluation raised ValueError: no dashboard to send to"),
    ("record.tuple_state", "its state_dict cannot be stored in a checkpoint: its values do not read back equal "
                           r"from JSON \(a tuple becomes a list: use lists\)"),
])
def test_a_broken_callback_is_named(recorder, tiny_spec_file, tmp_path, name, message):
    spec = _spec(tiny_spec_file, name)
    with pytest.raises(ComponentError, match=rf"^spec.toml: run.callbacks\[0\] \({name}, plugin ctxseg-record "
                                             rf"0.1\): {message}$"):
        train(spec, tmp_path / "run", source="spec.toml", progress=False)


def test_the_kit_passes_a_sound_callback(recorder):
    check_component(default_registry().get("callback", "record.recorder"))
    check_component(default_registry().get("callback", "base.tensorboard"))


@pytest.mark.parametrize(("name", "message"), [
    ("record.raising", "on_evaluation raised ValueError: no dashboard to send to"),
    ("record.tuple_state", "state_dict at step 2 cannot be stored in a checkpoint: its values do not read back"),
    ("record.draws", "on_step_end draws from torch's random number generator"),
    ("record.forgets", r"resumed at step 2, it ends in state \{'seen': 6, .*; without the stop, in \{'seen': 8, "),
    ("record.changes_metrics", "on_evaluation changed the metrics or examples it was given"),
])
def test_the_kit_names_what_a_callback_breaks(recorder, name, message):
    with pytest.raises(AssertionError, match=rf"^callback '{name}': {message}"):
        check_component(default_registry().get("callback", name))


def test_a_weights_file_runs_without_its_callbacks_plugin(tmp_path):
    spec = spec_from_dict({"model": {"backbone": {"name": "base.resnet", "depth": 18}}})
    table = spec.to_dict()
    table["run"]["callbacks"] = [{"name": "gone.logger"}]
    model = SegmentationModel(spec.model, 2, pretrained=False)
    save_weights(tmp_path / "model.safetensors", model, table, ["a", "b"], [(0, 0, 0), (255, 0, 0)])
    with pytest.warns(UserWarning, match=r"run.callbacks\[0\] is callback 'gone.logger', which is not installed; "
                                         "it is left out"):
        _, loaded, _ = load_model(tmp_path / "model.safetensors")
    assert loaded.run.callbacks == ()
