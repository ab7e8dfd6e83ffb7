"""The training loop's clock and its reads of the device: steps timed apart from evaluation and
checkpoints, losses read every ``LOG_EVERY`` steps rather than at each step, divergence still caught."""

from __future__ import annotations

import collections
import contextlib
import json
import time
from collections.abc import Callable, Iterator

import pytest
import torch

from ctxseg.engine import train as train_module
from ctxseg.errors import CtxsegError
from ctxseg.spec import load_spec

HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")
"""The tensor methods that bring a value to the host: on a GPU each waits for the device to finish."""


def _variant(path, text: str, *replacements: tuple[str, str]):
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    return load_spec(path)


@contextlib.contextmanager
def _counting_host_reads(monkeypatch) -> Iterator[collections.Counter]:
    """Counts ``HOST_READS`` and ``torch.cuda.synchronize`` made by the training loop, from its first
    batch to the closing report: not those of the loader (CPU work in the data pipeline), nor of the
    evaluations and checkpoints, which run between the steps."""
    counts: collections.Counter = collections.Counter()
    looping, paused = [False], [0]

    def counted(name: str, real: Callable) -> Callable:
        def read(*args, **kwargs):
            if looping[0] and not paused[0]:
                counts[name] += 1
            return real(*args, **kwargs)
        return read

    def outside(real: Callable) -> Callable:
        def call(*args, **kwargs):
            paused[0] += 1
            try:
                return real(*args, **kwargs)
            finally:
                paused[0] -= 1
        return call

    real_batches, real_report = train_module.batches, train_module._Clock.report

    def batches(*args, **kwargs):
        loader = outside(real_batches)(*args, **kwargs)
        while True:
            batch = outside(next)(loader)
            looping[0] = True
            yield batch

    def report(*args, **kwargs):
        looping[0] = False
        return real_report(*args, **kwargs)

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch.cuda, "synchronize", counted("synchronize", torch.cuda.synchronize))
    monkeypatch.setattr(train_module, "batches", batches)
    for name in ("evaluate", "save_checkpoint", "_random_states"):
        monkeypatch.setattr(train_module, name, outside(getattr(train_module, name)))
    monkeypatch.setattr(train_module._Clock, "report", report)
    yield counts


@pytest.mark.parametrize(("steps", "accumulate"), [(2, 1), (8, 1), (8, 2)])
def test_the_loop_reads_the_device_at_its_reading_points_only(steps, accumulate, tmp_path, tiny_spec_text,
                                                              monkeypatch):
    """With one reading point (the last step; no other evaluation, the history's interval beyond
    the run), 2 and 8 steps, of one micro-batch or two, read the device the same number of times:
    one read of the losses."""
    spec = _variant(tmp_path / "spec.toml", tiny_spec_text,
                    ("steps = 4", f"steps = {steps}\naccumulate = {accumulate}"),
                    ("eval_every = 2", "eval_every = 0"))
    monkeypatch.setattr(train_module, "LOG_EVERY", 100)
    with _counting_host_reads(monkeypatch) as counts:
        train_module.train(spec, tmp_path / "run", progress=False)
    assert dict(counts) == {"tolist": 1}
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert [entry["step"] for entry in history] == [steps, steps]  # the loss of all steps, then the evaluation


def test_divergence_stops_training_at_the_next_reading_point(tmp_path, tiny_spec_text, monkeypatch):
    """A loss that is not finite at step 3 stops training when the losses are read, at step 4,
    naming both steps, before any evaluation or checkpoint."""
    spec = _variant(tmp_path / "spec.toml", tiny_spec_text, ("steps = 4", "steps = 6"),
                    ("eval_every = 2", "eval_every = 0"))
    monkeypatch.setattr(train_module, "LOG_EVERY", 4)
    objective, calls = train_module._objective, []

    def poisoned(*args):
        calls.append(None)
        scaled = objective(*args)
        return (lambda outputs, labels: scaled(outputs, labels) * float("nan")) if len(calls) == 3 else scaled

    monkeypatch.setattr(train_module, "_objective", poisoned)
    with pytest.raises(CtxsegError, match=r"training diverged at step 3 \(loss nan; found at step 4, losses are "
                                          r"read every 4 steps\); lower optimizer.lr"):
        train_module.train(spec, tmp_path / "run", progress=False)
    assert len(calls) == 4 and not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_training_seconds_leave_out_evaluations_and_checkpoints(tmp_path, tiny_spec_file, monkeypatch):
    """Evaluations and checkpoints made half a second slower each add to their own figures, not to
    the training steps' seconds; images/s counts the steps after the first (batch 2, 3 steps)."""
    def slower(real: Callable) -> Callable:
        def call(*args, **kwargs):
            time.sleep(0.5)
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(train_module, "evaluate", slower(train_module.evaluate))
    monkeypatch.setattr(train_module, "save_checkpoint", slower(train_module.save_checkpoint))
    start = time.perf_counter()
    train_module.train(load_spec(tiny_spec_file), tmp_path / "run", progress=False)  # 4 steps, 2 evaluations
    wall = time.perf_counter() - start
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["eval_seconds"] >= 1.0 and metrics["checkpoint_seconds"] >= 1.0
    assert metrics["train_seconds"] + metrics["eval_seconds"] + metrics["checkpoint_seconds"] < wall
    assert 0 < metrics["first_step_seconds"] < metrics["train_seconds"]
    assert metrics["images_per_second"] == pytest.approx(
        2 * 3 / (metrics["train_seconds"] - metrics["first_step_seconds"]), rel=1e-9)


def test_on_cuda_the_clock_marks_steps_with_events_and_reads_them_at_the_end(monkeypatch):
    """The clock's CUDA branch, on fake events whose device time is set by hand: stepping records an
    event and never synchronizes; the report reads the events: two steps of 2 s, an evaluation of
    5 s (left out), then a step of 1 s counted from the evaluation's end."""
    now, synchronized = [0.0], []

    class Event:
        def __init__(self, enable_timing: bool = False):
            assert enable_timing
            self.time = None

        def record(self, stream=None) -> None:
            self.time = now[0]

        def elapsed_time(self, end: Event) -> float:
            return 1000 * (end.time - self.time)  # milliseconds

    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synchronized.append(now[0]))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 2**30)
    clock = train_module._Clock(torch.device("cuda", 0))
    for _ in range(2):
        now[0] += 2
        clock.stepped()
    with clock.apart("eval_seconds"):
        now[0] += 5
    now[0] += 1
    clock.stepped()
    assert synchronized == [4, 9]  # before and after the evaluation only
    speed = clock.report(images_per_step=4)
    assert speed["train_seconds"] == 2 + 2 + 1
    assert speed["first_step_seconds"] == 2 and speed["images_per_second"] == 4 * 2 / 3
    assert speed["peak_memory_mib"] == 1024 and speed["peak_memory"] == "cuda allocated"
