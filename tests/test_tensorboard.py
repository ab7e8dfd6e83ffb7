"""The built-in callback base.tensorboard ([[run.callbacks]], or [run] tensorboard = true): event
files in the run directory that TensorBoard reads back, continued exactly by a resumed run."""

from __future__ import annotations

import sys

import pytest

from ctxseg.cli import main
from ctxseg.engine.train import train
from ctxseg.errors import CtxsegError
from ctxseg.interfaces import TrainingRun
from ctxseg.spec import load_spec, spec_from_dict

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

SHORTHAND = "tensorboard = true"
TABLE = '[[run.callbacks]]\nname = "base.tensorboard"'


def _with_tensorboard(text: str, form: str = SHORTHAND) -> str:
    if form == TABLE:
        return f"{text}\n{TABLE}\n"
    return text.replace('device = "cpu"', f'device = "cpu"\n{form}')


def _scalars(run) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve of the run directory's event files, as TensorBoard reads them (purges applied)."""
    board = EventAccumulator(str(run), size_guidance={"scalars": 0}).Reload()
    return {tag: [(e.step, e.value) for e in board.Scalars(tag)] for tag in board.Tags()["scalars"]}


@pytest.mark.parametrize("form", [SHORTHAND, TABLE])
def test_training_writes_loss_lr_metrics_per_class_and_panels(tmp_path, tiny_spec_text, capsys, form):
    spec = tmp_path / "tiny.toml"
    spec.write_text(_with_tensorboard(tiny_spec_text, form))
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    events = list((tmp_path / "run").glob("events.out.tfevents.*"))
    assert len(events) == 1
    board = EventAccumulator(str(events[0]), size_guidance={"scalars": 0, "images": 0}).Reload()
    tags = board.Tags()
    steps = {tag: [e.step for e in board.Scalars(tag)] for tag in tags["scalars"]}
    assert steps["train/loss"] == steps["train/lr"] == [1, 2, 3, 4]  # run.steps = 4
    assert steps["val/mean_iou"] == [2, 4]  # eval_every = 2
    per_class = [tag for tag in steps if tag.startswith("val/per_class_iou/")]
    assert len(per_class) == 8 and "val/per_class_iou/boat" in per_class  # context scenes' 8 classes
    assert board.Scalars("train/lr")[0].value > board.Scalars("train/lr")[-1].value  # the poly schedule
    assert len(tags["images"]) == 3  # val_size = 3 panels
    image = board.Images(tags["images"][0])[-1]
    assert image.width == 3 * image.height + 4  # image | ground truth | prediction


def test_a_killed_run_resumes_the_curves_exactly(tmp_path, tiny_spec_text, kill_after_first_checkpoint):
    path = tmp_path / "tiny.toml"
    path.write_text(_with_tensorboard(tiny_spec_text))
    spec = load_spec(path)
    train(spec, tmp_path / "straight", progress=False)
    kill_after_first_checkpoint(spec, tmp_path / "killed")  # after the checkpoint of step 2
    train(spec, tmp_path / "killed", resume=True, progress=False)
    assert len(list((tmp_path / "killed").glob("events.out.tfevents.*"))) == 2
    straight, resumed = _scalars(tmp_path / "straight"), _scalars(tmp_path / "killed")
    assert [step for step, _ in straight["train/loss"]] == [1, 2, 3, 4]
    assert resumed == straight


def test_the_shorthand_and_a_table_together_are_refused(tmp_path, tiny_spec_text, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(_with_tensorboard(_with_tensorboard(tiny_spec_text), TABLE))
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "run.callbacks" in err and "remove 'tensorboard'" in err
    assert not (tmp_path / "run").exists()


def test_off_by_default_and_a_bad_value_is_named(tmp_path, tiny_spec_text, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(_with_tensorboard(tiny_spec_text, 'tensorboard = "yes"'))
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "run.tensorboard" in capsys.readouterr().err
    spec.write_text(tiny_spec_text)
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    spec = spec_from_dict({"model": {"backbone": {"name": "base.resnet"}}, "run": {"tensorboard": True}})
    ((key, ref),) = spec.run.all_callbacks
    assert (key, ref.name) == ("run.tensorboard", "base.tensorboard")
    with pytest.raises(CtxsegError, match=r"pip install 'ctxseg\[tensorboard\]'"):
        ref.build(TrainingRun(tmp_path, 4, ("a",), ((0, 0, 0),), ("v",)), key=key)
    assert not list(tmp_path.iterdir())
