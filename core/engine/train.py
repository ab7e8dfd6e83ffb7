"""``ctxseg train``: train a spec's model, evaluate it, and fill a run directory.

A run directory holds::

    checkpoint.safetensors   resumable state (written at every evaluation)
    model.safetensors        final weights, rebuildable without the spec
    metrics.json             final validation metrics, speed, peak memory and the whole history
    curves.png               training loss and validation mIoU against step
    predictions/*.png        image | ground truth | prediction, for a few validation images
"""

from __future__ import annotations

import contextlib
import json
import math
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from ctxseg.data.pipeline import batches, train_loader
from ctxseg.engine import distributed
from ctxseg.engine.callbacks import Callbacks
from ctxseg.engine.evaluate import evaluate
from ctxseg.engine.inference import Inference
from ctxseg.engine.runtime import Runtime
from ctxseg.errors import CtxsegError, DataError, SpecError, WriteError
from ctxseg.files.atomic import atomic_path, check_writable, file_in_the_way
from ctxseg.files.checkpoint import TrainingState, checkpoint_step, load_checkpoint, rng_key, save_checkpoint
from ctxseg.files.pictures import panel, plot_curves, save_png
from ctxseg.files.weights import load_state, read_weights, save_weights
from ctxseg.interfaces import Passes, TrainingRun
from ctxseg.model import SegmentationModel
from ctxseg.model.check import check_model
from ctxseg.spec import Spec, spec_from_dict

__all__ = ["train"]

PICTURES = 6
"""Validation images drawn into predictions/."""

LOG_EVERY = 10
"""Steps between the history's loss entries, and between the loop's reads of the device: the
losses stay there until then (and until each evaluation and the last step), so that the host never
waits for the accelerator within a step. The divergence check, the progress bar's loss and the
callbacks' ``on_step_end`` come at these reading points."""


def _build_data(spec: Spec, source: str):
    ref = spec.data.dataset
    return ref.build("train", key="data.dataset", source=source), ref.build("val", key="data.dataset", source=source)


def _parameter_groups(model: nn.Module, backbone_lr_factor: float) -> list[dict[str, Any]]:
    """The trained parameters: one group, or with ``backbone_lr_factor`` the new layers' and the
    backbone's, the latter's ``lr_factor`` scaling the optimizer's learning rate."""
    trained = [p for p in model.parameters() if p.requires_grad]
    if backbone_lr_factor == 1.0:
        return [{"params": trained}]
    backbone = {id(p) for p in model.backbone.parameters()}
    groups = [{"params": [p for p in trained if id(p) not in backbone]},
              {"params": [p for p in trained if id(p) in backbone], "lr_factor": backbone_lr_factor}]
    return [group for group in groups if group["params"]]


def _objective(aux_weights: dict[str, float], criterion: nn.Module,
               scale: Tensor) -> Callable[[dict[str, Tensor], Tensor], Tensor]:
    """The loss of one pass, times ``scale`` (a scalar on the device): the main output's plus the
    auxiliary heads' times their weights, all against the same labels."""
    def objective(outputs: dict[str, Tensor], labels: Tensor) -> Tensor:
        parts = {name: criterion(scores, labels) for name, scores in outputs.items()}
        value = parts["out"] + sum(aux_weights[n] * v for n, v in parts.items() if n != "out")
        return scale.to(value.dtype) * value
    return objective


def _check_run_directory(out: Path, *, resume: bool, overwrite: bool) -> None:
    """CtxsegError, before anything is built, unless ``out`` can take this run as asked."""
    if (blocking := file_in_the_way(out)) is not None:
        raise CtxsegError(f"{out}: --out: {blocking} is an existing file; expected a run directory (existing or new)")
    found = [name for name in ("checkpoint.safetensors", "model.safetensors") if (out / name).exists()]
    if resume and "checkpoint.safetensors" not in found:
        raise CtxsegError(f"{out}: --resume: there is no checkpoint.safetensors to resume from; "
                          "train without --resume to start a new run there")
    if found and not resume and not overwrite:
        raise CtxsegError(f"{out}: already holds a run ({', '.join(found)}); pass --resume to continue it, "
                          "--overwrite to replace it, or choose another --out")
    check_writable(out / "checkpoint.safetensors")


def train(spec: Spec, out: Path, *, source: str = "<spec>", resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train ``spec`` into the run directory ``out``; return the final validation metrics.

    With ``resume``, training continues from ``out/checkpoint.safetensors``, which must
    exist. A directory that already holds a run (its checkpoint or weights) is replaced
    only with ``overwrite``: a finished run is never lost to a repeated command.

    Started by torchrun, each process trains its part of every global batch
    (:mod:`ctxseg.engine.distributed`); only the first writes files and draws progress.
    """
    _check_run_directory(out, resume=resume, overwrite=overwrite)
    runtime = Runtime(spec.run, source)
    with distributed.session(runtime.device), _saying_what_is_intact(out / "checkpoint.safetensors"):
        return _train(spec, out, runtime, source=source, resume=resume,
                      progress=progress and distributed.rank() == 0)


@contextlib.contextmanager
def _saying_what_is_intact(checkpoint: Path) -> Iterator[None]:
    """A run stopped by a file it could not write, by data it could no longer read (once it has a
    checkpoint) or by Ctrl-C says what of it is intact, the last checkpoint on disk (written whole
    or not at all), and how to go on."""
    try:
        yield
    except (WriteError, DataError, KeyboardInterrupt) as stop:
        step = checkpoint_step(checkpoint)
        if step is None and isinstance(stop, DataError):
            raise  # nothing to resume: the data's error alone says what to fix
        intact, rerun = (("no checkpoint was written yet", "run again") if step is None else
                         (f"the last checkpoint, step {step}, is intact", "run again with --resume"))
        if isinstance(stop, WriteError):
            raise stop.saying(intact, rerun) from None
        if isinstance(stop, DataError):
            raise DataError(f"{stop}; {intact}; {rerun}") from None
        raise KeyboardInterrupt(*stop.args, intact, rerun) from None


def _train(spec: Spec, out: Path, runtime: Runtime, *, source: str, resume: bool, progress: bool) -> dict[str, Any]:
    run, ranks, me = spec.run, distributed.world_size(), distributed.rank()
    if spec.data.batch_size % ranks:
        raise SpecError(f"{source}: data.batch_size: {spec.data.batch_size} is the global batch, split across "
                        f"the {ranks} processes of this run; it must divide by {ranks}")
    torch.manual_seed(run.seed)
    train_set, val_set = _build_data(spec, source)
    classes = train_set.classes
    if val_set.classes != classes:
        raise CtxsegError(f"{source}: the train and val splits disagree on the classes")

    model = SegmentationModel(spec.model, len(classes), source=source)  # the same on every process: one seed
    check_model(model, spec.model, source)
    if 0 < spec.data.crop_size < model.output_stride:
        raise SpecError(f"{source}: data.crop_size: {spec.data.crop_size} is smaller than the model's output "
                        f"stride {model.output_stride}; a crop must cover at least one output pixel")
    if spec.model.init:
        load_state(model, read_weights(spec.model.init)[0], spec.model.init, partial=True)
    model = runtime.model(model)
    if ranks > 1 and run.sync_batch_norm and spec.model.batch_norm == "batch":
        distributed.synchronize_batch_norm(model, runtime.device)
    passes = run.passes.build(model, source, key="run.passes", source=source)  # a model it cannot run is named here
    inference = Inference(model, spec, source=source, runtime=runtime, passes=passes)  # training's set-up
    replica = _replicate(model, runtime, compile=run.compile)
    criterion = spec.loss.build(train_set.ignore_index, key="loss", source=source)
    optimizer = spec.optimizer.build(_parameter_groups(model, spec.optimizer.backbone_lr_factor), key="optimizer",
                                     source=source)
    schedule = spec.schedule.build(run.steps, key="schedule", source=source)
    watched = TrainingRun(out, run.steps, tuple(classes), tuple(map(tuple, train_set.palette)), tuple(val_set.names))
    callbacks = Callbacks(run.all_callbacks if me == 0 else (), watched, source)  # where the run directory is written
    base_lrs = [group["lr"] * group.get("lr_factor", 1.0) for group in optimizer.param_groups]
    resolved = spec.to_dict()

    if me == 0:
        out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.safetensors"
    state = TrainingState(step=0, history=[], world_size=ranks)
    if resume:
        state = load_checkpoint(checkpoint, model, optimizer, resolved, rank=me, world_size=ranks,
                                resolve=lambda saved: spec_from_dict(saved, source=str(checkpoint)).to_dict())
        callbacks.load_state_dicts(state.callbacks)
    elif me:
        torch.manual_seed(run.seed + 1_000_003 * me)  # dropout draws its own masks in each process
    eval_every = run.eval_every or run.steps

    model.train()
    loader = batches(train_loader(train_set, spec.data, run.seed, start_step=state.step * run.accumulate,
                                  shard=me, shards=ranks))
    bar = tqdm(total=run.steps, initial=state.step, desc="train", disable=not progress, dynamic_ncols=True)
    clock = _Clock(runtime.device)
    unread: list[tuple[int, Tensor, float]] = []  # (step, its loss on the device, its lr) since the last read
    running: list[float] = []
    trains = state.step < run.steps
    while state.step < run.steps:
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * schedule(state.step)
        optimizer.zero_grad(set_to_none=True)
        loss = _step(replica, passes, criterion, model.aux_weights, runtime,
                     [next(loader) for _ in range(run.accumulate)], train_set.ignore_index)
        optimizer.step()
        clock.stepped()
        state.step += 1
        unread.append((state.step, loss, optimizer.param_groups[0]["lr"]))
        bar.update()
        evaluates = state.step % eval_every == 0 or state.step == run.steps
        if state.step % LOG_EVERY == 0 or evaluates:  # a reading point: the losses come to the host
            for step, value, lr in _read(unread, state.step, source):
                running.append(value)
                callbacks.call("on_step_end", step, value, lr)
                if step % LOG_EVERY == 0 or step == run.steps:
                    state.history.append({"step": step, "loss": sum(running) / len(running)})
                    running = []
            bar.set_postfix(loss=f"{value:.3f}", lr=f"{lr:.2g}")
            unread = []
        if evaluates:
            last = state.step == run.steps
            with clock.apart("eval_seconds"):
                metrics, examples = evaluate(inference, val_set, spec.metrics,
                                             keep=PICTURES * (last or bool(callbacks)), progress=progress,
                                             source=source)
            callbacks.call("on_evaluation", state.step, metrics, examples)
            state.history.append({"step": state.step, **{k: v for k, v in metrics.items()
                                                          if k not in ("per_class_iou", "confusion")}})
            if progress:
                bar.write(f"step {state.step}: val mIoU {100 * metrics['mean_iou']:.1f}%")
            with clock.apart("checkpoint_seconds"):
                rng = _random_states(runtime.device)  # every process takes part; the first writes
                if me == 0:
                    state.callbacks = callbacks.state_dicts()
                    save_checkpoint(checkpoint, model, optimizer, state, resolved, rng)
            if me == 0:
                callbacks.call("on_checkpoint", state.step, checkpoint)
    bar.close()
    if not trains:  # resumed a finished run: nothing was trained, evaluate once
        with clock.apart("eval_seconds"):
            metrics, examples = evaluate(inference, val_set, spec.metrics, keep=PICTURES, progress=progress,
                                         source=source)
    callbacks.call("on_train_end", metrics)
    speed = clock.report(spec.data.batch_size * run.accumulate)
    if me:
        return metrics
    save_weights(out / "model.safetensors", model, resolved, classes, train_set.palette, metrics)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps({"final": metrics, "steps": run.steps, "processes": ranks, **speed,
                                   "history": state.history}, indent=2))
    plot_curves(state.history, out / "curves.png")
    for index, image, mask, prediction in examples:
        save_png(panel(image, mask, prediction, train_set.palette), out / "predictions" / f"{val_set.names[index]}.png")
    if progress and trains:
        tqdm.write(_describe(speed, ranks, runtime, compiled=run.compile))
    return metrics


def _replicate(model: SegmentationModel, runtime: Runtime, *, compile: bool) -> nn.Module:
    """What training calls: ``model``, replicated across processes by DistributedDataParallel
    when there are several, and compiled by ``torch.compile`` when the spec asks."""
    replica = model
    if distributed.world_size() > 1:
        replica = distributed.replicate(model, runtime.device, side=4 * max(model.backbone.strides.values()))
    return torch.compile(replica) if compile else replica


def _read(unread: list[tuple[int, Tensor, float]], now: int, source: str) -> list[tuple[int, float, float]]:
    """The steps' ``(step, loss, lr)`` with their losses read from the device at once (the loop's
    one wait for it), or the CtxsegError of the first that diverged (a loss not finite)."""
    if not unread:
        return []
    losses = torch.stack([loss for _, loss, _ in unread]).tolist()
    for (step, _, _), loss in zip(unread, losses, strict=True):
        if not math.isfinite(loss):
            raise CtxsegError(f"{source}: training diverged at step {step} (loss {loss}; found at step {now}, "
                              f"losses are read every {LOG_EVERY} steps); lower optimizer.lr or check the data")
    return [(step, loss, lr) for (step, _, lr), loss in zip(unread, losses, strict=True)]


def _step(replica: nn.Module, passes: Passes, criterion: nn.Module, aux_weights: dict[str, float],
          runtime: Runtime, micro_batches: list[tuple[Tensor, Tensor]], ignore_index: int) -> Tensor:
    """Accumulate one update's gradients; return its loss, the same in every process, as a float64
    scalar on the device: nothing here waits for the device to finish.

    The loss is the mean over all labelled pixels of the global batch (every micro-batch of
    every process), as one big batch would give: each micro-batch's loss, a mean over its
    own labelled pixels, is weighted by its share of them. DistributedDataParallel averages
    the processes' gradients, hence the number of processes in the weight; it synchronizes
    them after the last micro-batch only (``no_sync`` before).
    """
    ranks, device = distributed.world_size(), runtime.device
    masks = [masks.to(device, non_blocking=True) for _, masks in micro_batches]
    labelled = torch.stack([(m != ignore_index).sum() for m in masks]).double()
    shares = ranks * labelled / distributed.all_sum(labelled.sum()).clamp(min=1.0)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    for i, ((images, _), labels) in enumerate(zip(micro_batches, masks, strict=True)):
        objective = _objective(aux_weights, criterion, shares[i])
        last = i == len(micro_batches) - 1
        with contextlib.nullcontext() if last or ranks == 1 else replica.no_sync():
            value = passes.backward(replica, runtime.images(images), labels, objective, runtime.autocast)
        loss = loss + torch.as_tensor(value, dtype=torch.float64, device=device).detach()  # a float is accepted
    return distributed.all_sum(loss) / ranks


def _random_states(device: torch.device) -> dict[str, Tensor]:
    """Every process's random number generator states, named by :func:`rng_key`."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return {rng_key(kind, rank): part for kind, state in states.items()
            for rank, part in enumerate(distributed.gather(state))}


class _Clock:
    """Times the training steps apart from what runs between them, and reads peak memory.

    Each run of steps (from the loop's start, or from the end of an evaluation and its checkpoint,
    to the next) is timed from its start to the end of its last step, the first step of the run
    apart (warm-up: allocation, cuDNN's choices, ``torch.compile``). On CUDA, events recorded on the
    device's stream mark those points and are read only by :meth:`report`, so that the host never
    waits for the device to time a step; on the CPU, where a step is over when it returns,
    ``perf_counter`` marks them. Evaluations and checkpoints are timed apart (:meth:`apart`).
    """

    def __init__(self, device: torch.device):
        self.device, self.cuda = device, device.type == "cuda"
        self.runs: list[list[Any]] = []  # [start, end of its last step, steps] for each run of steps
        self.first: Any = None  # the end of the first step
        self.seconds = {"eval_seconds": 0.0, "checkpoint_seconds": 0.0}
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
        self.runs.append([self._mark(), None, 0])

    def _mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def _seconds(self, start: Any, end: Any) -> float:
        return start.elapsed_time(end) / 1000 if self.cuda else end - start

    def stepped(self) -> None:
        """A step's work has been queued: its end is marked, without waiting for it."""
        run = self.runs[-1]
        run[1], run[2] = self._mark(), run[2] + 1
        if self.first is None:
            self.first = run[1]

    @contextlib.contextmanager
    def apart(self, name: str) -> Iterator[None]:
        """Add the block's seconds to ``name`` (evaluation, checkpoints): the device is synchronized
        before and after it, so that it counts neither the steps queued before nor its own
        work left after it; a new run of steps starts after it."""
        self._synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._synchronize()
            self.seconds[name] += time.perf_counter() - start
            self.runs.append([self._mark(), None, 0])

    def _synchronize(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def report(self, images_per_step: int) -> dict[str, Any]:
        """Seconds of the training steps (``train_seconds``, the first step's among them and also
        ``first_step_seconds``), images per second over the steps after the first (over the first
        where there is no other), the evaluations' and checkpoints' seconds, and peak memory in MiB
        (the most any process used: CUDA's allocated tensors, or the CPU process's resident set)."""
        self._synchronize()
        runs = [(start, end, steps) for start, end, steps in self.runs if steps]
        train = sum(self._seconds(start, end) for start, end, _ in runs)
        steps = sum(steps for _, _, steps in runs)
        first = self._seconds(runs[0][0], self.first) if runs else 0.0
        timed, counted = (train - first, steps - 1) if steps > 1 else (train, steps)
        if self.cuda:
            peak, kind = torch.cuda.max_memory_allocated(self.device), "cuda allocated"
        else:
            peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu resident set"  # KiB on Linux
        peak = distributed.all_max(torch.tensor(float(peak), dtype=torch.float64)).item()
        return {"train_seconds": train, "first_step_seconds": first,
                "images_per_second": images_per_step * counted / timed if timed > 0 else 0.0,
                **self.seconds, "peak_memory_mib": peak / 2**20, "peak_memory": kind}


def _describe(speed: dict[str, Any], ranks: int, runtime: Runtime, *, compiled: bool) -> str:
    """The end-of-run line, e.g. "trained in 41.2 s (first step 1.3 s): 12.3 images/s on 2 processes
    (fp32 on cpu), evaluation 5.1 s, checkpoints 0.4 s, peak memory ..."."""
    where = f" on {ranks} processes" if ranks > 1 else ""
    compiling = ", compiling" if compiled else ""
    return (f"trained in {speed['train_seconds']:.1f} s (first step {speed['first_step_seconds']:.1f} s{compiling}): "
            f"{speed['images_per_second']:.1f} images/s{where} ({runtime.describe()}), evaluation "
            f"{speed['eval_seconds']:.1f} s, checkpoints {speed['checkpoint_seconds']:.1f} s, peak memory "
            f"{speed['peak_memory_mib']:.0f} MiB ({speed['peak_memory']})")
