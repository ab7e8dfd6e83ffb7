"""``ctxseg train``: train a spec's model, evaluate it, and fill a run directory.

A run directory holds::

    checkpoint.safetensors   resumable state (written at every evaluation)
    model.safetensors        final weights, rebuildable without the spec
    metrics.json             final validation metrics and the whole history
    curves.png               training loss and validation mIoU against step
    predictions/*.png        image | ground truth | prediction, for a few validation images
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ctxseg.data.pipeline import batches, train_loader
from ctxseg.engine.evaluate import evaluate
from ctxseg.engine.inference import Inference
from ctxseg.engine.runtime import Runtime
from ctxseg.engine.tensorboard import TensorBoard
from ctxseg.errors import CtxsegError, SpecError
from ctxseg.files.atomic import atomic_path, file_in_the_way
from ctxseg.files.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from ctxseg.files.pictures import panel, plot_curves, save_png
from ctxseg.files.weights import load_state, read_weights, save_weights
from ctxseg.model import SegmentationModel
from ctxseg.model.check import check_model
from ctxseg.spec import Spec

__all__ = ["train"]

PICTURES = 6
"""Validation images drawn into predictions/."""


def _build_data(spec: Spec):
    ref = spec.data.dataset
    cls = ref.load()
    return cls(ref.config, "train"), cls(ref.config, "val")


def _objective(model: SegmentationModel, criterion: torch.nn.Module,
               scale: float) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
    """The loss of one pass, times ``scale``: the main output's plus the auxiliary heads'
    times their weights, all against the same labels."""
    def objective(outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        parts = {name: criterion(scores, labels) for name, scores in outputs.items()}
        return scale * (parts["out"] + sum(model.aux_weights[n] * v for n, v in parts.items() if n != "out"))
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


def train(spec: Spec, out: Path, *, source: str = "<spec>", resume: bool = False, overwrite: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train ``spec`` into the run directory ``out``; return the final validation metrics.

    With ``resume``, training continues from ``out/checkpoint.safetensors``, which must
    exist. A directory that already holds a run (its checkpoint or weights) is replaced
    only with ``overwrite``: a finished run is never lost to a repeated command.
    """
    _check_run_directory(out, resume=resume, overwrite=overwrite)
    run = spec.run
    torch.manual_seed(run.seed)
    runtime = Runtime(run, source)
    train_set, val_set = _build_data(spec)
    classes = train_set.classes
    if val_set.classes != classes:
        raise CtxsegError(f"{source}: the train and val splits disagree on the classes")

    model = SegmentationModel(spec.model, len(classes), source=source)
    check_model(model, spec.model, source)
    if 0 < spec.data.crop_size < model.output_stride:
        raise SpecError(f"{source}: data.crop_size: {spec.data.crop_size} is smaller than the model's output "
                        f"stride {model.output_stride}; a crop must cover at least one output pixel")
    if spec.model.init:
        load_state(model, read_weights(spec.model.init)[0], spec.model.init, partial=True)
    model = runtime.model(model)
    passes = run.passes.load()(run.passes.config, model, source)  # a model it cannot run is named before training
    inference = Inference(model, spec, source=source, channels_last=None, passes=passes)  # training's format
    criterion = spec.loss.load()(spec.loss.config, train_set.ignore_index)
    optimizer = spec.optimizer.load()(spec.optimizer.config, [p for p in model.parameters() if p.requires_grad])
    schedule = spec.schedule.load()(spec.schedule.config, run.steps)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    resolved = spec.to_dict()

    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.safetensors"
    state = TrainingState(step=0, history=[])
    if resume:
        state = load_checkpoint(checkpoint, model, optimizer, resolved)
    eval_every = run.eval_every or run.steps
    board = TensorBoard(out if run.tensorboard else None, val_set.names, train_set.palette, start=state.step)

    model.train()
    objective = _objective(model, criterion, 1 / run.accumulate)
    loader = batches(train_loader(train_set, spec.data, run.seed, start_step=state.step * run.accumulate))
    bar = tqdm(total=run.steps, initial=state.step, desc="train", disable=not progress, dynamic_ncols=True)
    started, running = time.perf_counter(), []
    trains = state.step < run.steps
    while state.step < run.steps:
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * schedule(state.step)
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for _ in range(run.accumulate):
            images, masks = next(loader)
            images, masks = runtime.images(images), masks.to(runtime.device)
            loss += passes.backward(model, images, masks, objective, runtime.autocast)
            if not math.isfinite(loss):
                raise CtxsegError(f"{source}: training diverged at step {state.step} (loss {loss}); "
                                  "lower optimizer.lr or check the data")
        optimizer.step()
        state.step += 1
        running.append(loss)
        board.train(state.step, loss, optimizer.param_groups[0]["lr"])
        bar.update()
        bar.set_postfix(loss=f"{running[-1]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2g}")
        if state.step % 10 == 0 or state.step == run.steps:
            state.history.append({"step": state.step, "loss": sum(running) / len(running)})
            running = []
        if state.step % eval_every == 0 or state.step == run.steps:
            last = state.step == run.steps
            metrics, examples = evaluate(inference, val_set, spec.metrics, keep=PICTURES * (last or run.tensorboard),
                                         progress=progress)
            board.evaluation(state.step, metrics, examples)
            state.history.append({"step": state.step, **{k: v for k, v in metrics.items() if k != "per_class_iou"}})
            bar.write(f"step {state.step}: val mIoU {100 * metrics['mean_iou']:.1f}%")
            save_checkpoint(checkpoint, model, optimizer, state, resolved)
    bar.close()
    board.close()
    elapsed = time.perf_counter() - started
    if not trains:  # resumed a finished run: nothing was trained, evaluate once
        metrics, examples = evaluate(inference, val_set, spec.metrics, keep=PICTURES, progress=progress)
    save_weights(out / "model.safetensors", model, resolved, classes, train_set.palette, metrics)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps({"final": metrics, "train_seconds": elapsed, "steps": run.steps,
                                   "history": state.history}, indent=2))
    plot_curves(state.history, out / "curves.png")
    for index, image, mask, prediction in examples:
        save_png(panel(image, mask, prediction, train_set.palette), out / "predictions" / f"{val_set.names[index]}.png")
    return metrics
