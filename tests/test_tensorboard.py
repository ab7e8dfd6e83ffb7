"""[run] tensorboard = true: event files in the run directory that TensorBoard reads back."""

from __future__ import annotations

import sys

import pytest

from ctxseg.cli import main
from ctxseg.errors import CtxsegError

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _with_tensorboard(text: str, value: str = "true") -> str:
    return text.replace('device = "cpu"', f'device = "cpu"\ntensorboard = {value}')


def test_training_writes_loss_lr_metrics_per_class_and_panels(tmp_path, tiny_spec_text, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(_with_tensorboard(tiny_spec_text))
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


def test_off_by_default_and_a_bad_value_is_named(tmp_path, tiny_spec_text, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(_with_tensorboard(tiny_spec_text, '"yes"'))
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "run.tensorboard" in capsys.readouterr().err
    spec.write_text(tiny_spec_text)
    assert main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))


def test_missing_package_names_the_extra(tmp_path, monkeypatch):
    from ctxseg.engine.tensorboard import TensorBoard

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(CtxsegError, match=r"pip install 'ctxseg\[tensorboard\]'"):
        TensorBoard(tmp_path, ["a"], [(0, 0, 0)])
    TensorBoard(None, ["a"], [(0, 0, 0)]).train(1, 0.5, 0.1)  # off: needs nothing, writes nothing
    assert not list(tmp_path.iterdir())
