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


def _build_data(spec: Spec, source: str):
    ref = spec.data.dataset
    return ref.build("train", key="data.dataset", source=source), ref.build("val", key="data.dataset", source=source)


def _objective(aux_weights: dict[str, float], criterion: nn.Module,
               scale: float) -> Callable[[dict[str, Tensor], Tensor], Tensor]:
    """The loss of one pass, times ``scale``: the main output's plus the auxiliary heads'
    times their weights, all against the same labels."""
    def objective(outputs: dict[str, Tensor], labels: Tensor) -> Tensor:
        parts = {name: criterion(scores, labels) for name, scores in outputs.items()}
        return scale * (parts["out"] + sum(aux_weights[n] * v for n, v in parts.items() if n != "out"))
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
    optimizer = spec.optimizer.build([p for p in model.parameters() if p.requires_grad], key="optimizer",
                                     source=source)
    schedule = spec.schedule.build(run.steps, key="schedule", source=source)
    watched = TrainingRun(out, run.steps, tuple(classes), tuple(map(tuple, train_set.palette)), tuple(val_set.names))
    callbacks = Callbacks(run.all_callbacks if me == 0 else (), watched, source)  # where the run directory is written
    base_lrs = [group["lr"] for group in optimizer.param_groups]
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
    running: list[float] = []
    trains = state.step < run.steps
    while state.step < run.steps:
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * schedule(state.step)
        optimizer.zero_grad(set_to_none=True)
        loss = _step(replica, passes, criterion, model.aux_weights, runtime,
                     [next(loader) for _ in range(run.accumulate)], train_set.ignore_index)
        if not math.isfinite(loss):
            raise CtxsegError(f"{source}: training diverged at step {state.step} (loss {loss}); "
                              "lower optimizer.lr or check the data")
        optimizer.step()
        clock.stepped()
        state.step += 1
        running.append(loss)
        callbacks.call("on_step_end", state.step, loss, optimizer.param_groups[0]["lr"])
        bar.update()
        bar.set_postfix(loss=f"{running[-1]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2g}")
        if state.step % 10 == 0 or state.step == run.steps:
            state.history.append({"step": state.step, "loss": sum(running) / len(running)})
            running = []
        if state.step % eval_every == 0 or state.step == run.steps:
            last = state.step == run.steps
            metrics, examples = evaluate(inference, val_set, spec.metrics, keep=PICTURES * (last or bool(callbacks)),
                                         progress=progress, source=source)
            callbacks.call("on_evaluation", state.step, metrics, examples)
            state.history.append({"step": state.step, **{k: v for k, v in metrics.items()
                                                          if k not in ("per_class_iou", "confusion")}})
            if progress:
                bar.write(f"step {state.step}: val mIoU {100 * metrics['mean_iou']:.1f}%")
            rng = _random_states(runtime.device)  # every process takes part; the first writes
            if me == 0:
                state.callbacks = callbacks.state_dicts()
                save_checkpoint(checkpoint, model, optimizer, state, resolved, rng)
                callbacks.call("on_checkpoint", state.step, checkpoint)
    bar.close()
    if not trains:  # resumed a finished run: nothing was trained, evaluate once
        metrics, examples = evaluate(inference, val_set, spec.metrics, keep=PICTURES, progress=progress, source=source)
    callbacks.call("on_train_end", metrics)
    speed = clock.report(spec.data.batch_size * run.accumulate, compiled=run.compile)
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


def _step(replica: nn.Module, passes: Passes, criterion: nn.Module, aux_weights: dict[str, float],
          runtime: Runtime, micro_batches: list[tuple[Tensor, Tensor]], ignore_index: int) -> float:
    """Accumulate one update's gradients; return its loss, the same in every process.

    The loss is the mean over all labelled pixels of the global batch (every micro-batch of
    every process), as one big batch would give: each micro-batch's loss, a mean over its
    own labelled pixels, is weighted by its share of them. DistributedDataParallel averages
    the processes' gradients, hence the number of processes in the weight; it synchronizes
    them after the last micro-batch only (``no_sync`` before).
    """
    ranks = distributed.world_size()
    labelled = [(masks != ignore_index).sum().item() for _, masks in micro_batches]
    total = max(1.0, distributed.all_sum(torch.tensor(float(sum(labelled)), dtype=torch.float64)).item())
    loss = 0.0
    for i, (images, masks) in enumerate(micro_batches):
        images, masks = runtime.images(images), masks.to(runtime.device)
        objective = _objective(aux_weights, criterion, ranks * labelled[i] / total)
        last = i == len(micro_batches) - 1
        with contextlib.nullcontext() if last or ranks == 1 else replica.no_sync():
            loss += passes.backward(replica, images, masks, objective, runtime.autocast)
    return distributed.all_sum(torch.tensor(loss, dtype=torch.float64)).item() / ranks


def _random_states(device: torch.device) -> dict[str, Tensor]:
    """Every process's random number generator states, named by :func:`rng_key`."""
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return {rng_key(kind, rank): part for kind, state in states.items()
            for rank, part in enumerate(distributed.gather(state))}


class _Clock:
    """Times training steps, the first (where ``torch.compile`` compiles) apart, and reads peak memory."""

    def __init__(self, device: torch.device):
        self.device, self.times = device, []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.last = time.perf_counter()

    def stepped(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.times.append(now - self.last)
        self.last = now

    def report(self, images_per_step: int, *, compiled: bool) -> dict[str, Any]:
        """Seconds, images per second (after the first step when compiled), peak memory in MiB
        (the most any process used: CUDA's allocated tensors, or the CPU process's resident set)."""
        if self.device.type == "cuda":
            peak, kind = torch.cuda.max_memory_allocated(self.device), "cuda allocated"
        else:
            peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu resident set"  # KiB on Linux
        peak = distributed.all_max(torch.tensor(float(peak), dtype=torch.float64)).item()
        timed = self.times[1:] if compiled and len(self.times) > 1 else self.times
        return {"train_seconds": sum(self.times), "first_step_seconds": self.times[0] if self.times else 0.0,
                "images_per_second": images_per_step * len(timed) / sum(timed) if timed else 0.0,
                "peak_memory_mib": peak / 2**20, "peak_memory": kind}


def _describe(speed: dict[str, Any], ranks: int, runtime: Runtime, *, compiled: bool) -> str:
    """The end-of-run line, e.g. "trained in 41.2 s: 12.3 images/s on 2 processes (fp32 on cpu), peak memory ..."."""
    where = f" on {ranks} processes" if ranks > 1 else ""
    first = f", first step {speed['first_step_seconds']:.1f} s (compiling)" if compiled else ""
    return (f"trained in {speed['train_seconds']:.1f} s{first}: {speed['images_per_second']:.1f} images/s{where} "
            f"({runtime.describe()}), peak memory {speed['peak_memory_mib']:.0f} MiB ({speed['peak_memory']})")
