"""The contract of a callback: it watches training without changing it, and resumes exactly."""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from ctxseg.files.checkpoint import state_problem
from ctxseg.interfaces import Callback, TrainingRun
from ctxseg.metrics.confusion import ConfusionMatrix
from ctxseg.registry import Kind
from ctxseg.testing._harness import _construct, _fail, _make_config, _single_threaded, _who

__all__ = ["check_callback"]

_CLASSES = ("void", "road", "sky")
_SIDE = 8


@_single_threaded
def check_callback(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 8) -> None:
    """Watches a run of ``max_examples`` steps (at least 4), evaluated and checkpointed every second
    step, and the same run stopped after its first checkpoint and resumed by a new callback.

    Constructed as ``cls(config, run)`` before the run directory exists, it is a
    :class:`~ctxseg.interfaces.Callback`. Every hook returns, draws nothing from torch's
    random number generator (a run trains the same with the callback or without it) and
    leaves the metrics and examples it is given unchanged; ``state_dict`` can be stored in a
    checkpoint (:func:`~ctxseg.files.checkpoint.state_problem`); and the callback that is handed
    the first checkpoint's state, read back as a checkpoint reads it, ends the resumed run in
    the state of the callback that watched the run without a stop.
    """
    who = _who(Kind.CALLBACK, cls, name)
    config = _make_config(who, cls, config)
    steps = max(4, max_examples)
    with tempfile.TemporaryDirectory(prefix="ctxseg-callback-") as folder:
        straight, stopped = _run(Path(folder) / "straight", steps), _run(Path(folder) / "stopped", steps)
        final = _watch(who, _build(who, cls, config, straight), straight, range(1, steps + 1))
        first = _watch(who, _build(who, cls, config, stopped), stopped, range(1, 3))
        resumed = _build(who, cls, config, stopped)
        _observing(who, "load_state_dict", resumed.load_state_dict, _read_back(first))
        again = _watch(who, resumed, stopped, range(3, steps + 1))
    if not _equal(again, final):
        _fail(who, f"resumed at step 2, it ends in state {_show(again)}; without the stop, in {_show(final)}")


def _run(out: Path, steps: int) -> TrainingRun:
    return TrainingRun(out, steps, _CLASSES, ((0, 0, 0), (128, 64, 128), (70, 130, 180)), ("a", "b"))


def _build(who: str, cls: type, config: Any, run: TrainingRun) -> Callback:
    callback = _construct(who, lambda: cls(config, run), f"run directory {run.out}")
    if not isinstance(callback, Callback):
        _fail(who, f"is a {type(callback).__qualname__}, not a ctxseg.interfaces.Callback")
    run.out.mkdir(exist_ok=True)  # training creates it after building its callbacks
    return callback


def _watch(who: str, callback: Callback, run: TrainingRun, steps: Iterable[int]) -> dict[str, Any]:
    """Call the hooks as training does over ``steps``, ending the run; the last checkpoint's state."""
    state: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    for step in steps:
        _observing(who, "on_step_end", callback.on_step_end, step, 1.0 / step, 0.01 * (1 - step / (run.steps + 1)))
        if step % 2 and step != run.steps:
            continue
        metrics, examples = _evaluation(step)
        given = copy.deepcopy((metrics, examples))
        _observing(who, "on_evaluation", callback.on_evaluation, step, metrics, examples)
        if not _equal(given, (metrics, examples)):
            _fail(who, f"on_evaluation changed the metrics or examples it was given (step {step})")
        state = _observing(who, "state_dict", callback.state_dict)
        if (problem := state_problem(state)) is not None:
            _fail(who, f"state_dict at step {step} cannot be stored in a checkpoint: {problem}")
        path = run.out / "checkpoint.safetensors"
        safetensors.torch.save_file({"step": torch.tensor(step)}, str(path), metadata={"ctxseg.step": str(step)})
        _observing(who, "on_checkpoint", callback.on_checkpoint, step, path)
    _observing(who, "on_train_end", callback.on_train_end, metrics)
    return state


def _evaluation(step: int) -> tuple[dict[str, Any], list[tuple[int, Tensor, Tensor, Tensor]]]:
    """Metrics as an evaluation reports them, and its ``(index, image, mask, prediction)`` examples."""
    generator = torch.Generator().manual_seed(step)  # not torch's global one, which the check watches
    confusion = ConfusionMatrix(len(_CLASSES), 255)
    examples = []
    for index in range(2):
        image = torch.randint(0, 256, (3, _SIDE, _SIDE), dtype=torch.uint8, generator=generator)
        mask = torch.randint(0, len(_CLASSES), (_SIDE, _SIDE), generator=generator)
        mask[0, 0] = 255
        prediction = torch.randint(0, len(_CLASSES), (_SIDE, _SIDE), generator=generator)
        confusion.update(prediction, mask)
        examples.append((index, image, mask, prediction))
    metrics = {**confusion.compute(list(_CLASSES)), "inference": {"mode": "whole", "precision": "fp32"}}
    return metrics, examples


def _observing(who: str, hook: str, method: Callable[..., Any], *args: Any) -> Any:
    """``method(*args)``; an AssertionError if it raises or draws from torch's generator."""
    before = torch.get_rng_state()
    try:
        result = method(*args)
    except Exception as error:  # noqa: BLE001 - whatever a hook raises is the callback's
        raise AssertionError(f"{who}: {hook} raised {type(error).__name__}: {error}") from error
    if not torch.equal(torch.get_rng_state(), before):
        _fail(who, f"{hook} draws from torch's random number generator, which would change the training")
    return result


def _read_back(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as a checkpoint gives it back: tensors on the CPU, the rest through JSON."""
    values = json.loads(json.dumps({k: v for k, v in state.items() if not isinstance(v, Tensor)}))
    return {**values, **{k: v.detach().cpu().clone() for k, v in state.items() if isinstance(v, Tensor)}}


def _equal(a: Any, b: Any) -> bool:
    """Equal values, tensors equal in dtype, shape and every element (NaN where NaN)."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype == b.dtype
                and torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))
    return a == b or (a != a and b != b)  # NaN (a per-class IoU of a class absent) equals itself here


def _show(state: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in state.items()) + "}"


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor{tuple(value.shape)} {value.flatten()[:4].tolist()}"
    return repr(value)[:60]
