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
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ctxseg.data.pipeline import train_loader
from ctxseg.engine.evaluate import evaluate
from ctxseg.engine.runtime import Runtime
from ctxseg.errors import CtxsegError
from ctxseg.files.atomic import atomic_path
from ctxseg.files.checkpoint import TrainingState, load_checkpoint, save_checkpoint
from ctxseg.files.pictures import panel, plot_curves, save_png
from ctxseg.files.weights import load_state, read_weights, save_weights
from ctxseg.model import SegmentationModel
from ctxseg.simulate import SHIFTS, for_inference, label_phase, shifted
from ctxseg.spec import Spec

__all__ = ["train"]

PICTURES = 6
"""Validation images drawn into predictions/."""


def _build_data(spec: Spec):
    ref = spec.data.dataset
    cls = ref.load()
    return cls(ref.config, "train"), cls(ref.config, "val")


def _weighted(model: SegmentationModel, criterion: torch.nn.Module, outputs: dict[str, torch.Tensor],
              labels: torch.Tensor) -> torch.Tensor:
    """The main loss plus the auxiliary heads' losses times their weights, all against ``labels``."""
    parts = {name: criterion(scores, labels) for name, scores in outputs.items()}
    return parts["out"] + sum(model.aux_weights[n] * v for n, v in parts.items() if n != "out")


def _backward(model: SegmentationModel, criterion: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor,
              runtime: Runtime, simulate: str, scale: float) -> float:
    """Forward and backward one batch, its loss times ``scale``; return the unscaled loss.

    With ``simulate`` (a layer's path), the batch runs in FCRN's four shifted passes,
    each scored against the labels at its own pixels (:mod:`ctxseg.simulate`).
    """
    if not simulate:
        with runtime.autocast():
            outputs = model(images)
        loss = _weighted(model, criterion, outputs, masks)
        (loss * scale).backward()
        return loss.item()
    total = 0.0
    for dy, dx in SHIFTS:
        with shifted(model, simulate, dy, dx), runtime.autocast():
            outputs = model.scores(images)
        size = outputs["out"].shape[-2:]
        if any(scores.shape[-2:] != size for scores in outputs.values()):
            raise CtxsegError(f"run.simulate.layer: an auxiliary head reads a feature from before "
                              f"{simulate!r}; simulation needs every scored map after it")
        labels = label_phase(masks, model.output_stride // 2, dy, dx, size)
        loss = _weighted(model, criterion, outputs, labels) / len(SHIFTS)
        (loss * scale).backward()
        total += loss.item()
    return total


def train(spec: Spec, out: Path, *, source: str = "<spec>", resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train ``spec`` into the run directory ``out``; return the final validation metrics.

    With ``resume``, training continues from ``out/checkpoint.safetensors`` if present.
    """
    run = spec.run
    torch.manual_seed(run.seed)
    runtime = Runtime(run, source)
    train_set, val_set = _build_data(spec)
    classes = train_set.classes
    if val_set.classes != classes:
        raise CtxsegError(f"{source}: the train and val splits disagree on the classes")

    model = SegmentationModel(spec.model, len(classes), source=source)
    if spec.model.init:
        load_state(model, read_weights(spec.model.init)[0], spec.model.init, partial=True)
    model = runtime.model(model)
    criterion = spec.loss.load()(spec.loss.config, train_set.ignore_index)
    optimizer = spec.optimizer.load()(spec.optimizer.config, [p for p in model.parameters() if p.requires_grad])
    schedule = spec.schedule.load()(spec.schedule.config, run.steps)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    resolved = spec.to_dict()

    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.safetensors"
    state = TrainingState(step=0, history=[])
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint, model, optimizer, resolved)
    eval_every = run.eval_every or run.steps

    model.train()
    inference = for_inference(model, run, source)  # names a layer that cannot be simulated, before training
    simulate = run.simulate.layer if run.simulate.train else ""
    batches = iter(train_loader(train_set, spec.data, run.seed, start_step=state.step * run.accumulate))
    bar = tqdm(total=run.steps, initial=state.step, desc="train", disable=not progress, dynamic_ncols=True)
    started, running = time.perf_counter(), []
    trains = state.step < run.steps
    while state.step < run.steps:
        for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base * schedule(state.step)
        optimizer.zero_grad(set_to_none=True)
        loss = 0.0
        for _ in range(run.accumulate):
            images, masks = next(batches)
            images, masks = runtime.images(images), masks.to(runtime.device)
            loss += _backward(model, criterion, images, masks, runtime, simulate, 1 / run.accumulate) / run.accumulate
            if not math.isfinite(loss):
                raise CtxsegError(f"{source}: training diverged at step {state.step} (loss {loss}); "
                                  "lower optimizer.lr or check the data")
        optimizer.step()
        state.step += 1
        running.append(loss)
        bar.update()
        bar.set_postfix(loss=f"{running[-1]:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2g}")
        if state.step % 10 == 0 or state.step == run.steps:
            state.history.append({"step": state.step, "loss": sum(running) / len(running)})
            running = []
        if state.step % eval_every == 0 or state.step == run.steps:
            last = state.step == run.steps
            metrics, examples = evaluate(inference, val_set, spec.data, runtime, keep=PICTURES * last,
                                         progress=progress)
            state.history.append({"step": state.step, **{k: v for k, v in metrics.items() if k != "per_class_iou"}})
            bar.write(f"step {state.step}: val mIoU {100 * metrics['mean_iou']:.1f}%")
            save_checkpoint(checkpoint, model, optimizer, state, resolved)
    bar.close()
    elapsed = time.perf_counter() - started
    if not trains:  # resumed a finished run: nothing was trained, evaluate once
        metrics, examples = evaluate(inference, val_set, spec.data, runtime, keep=PICTURES, progress=progress)
    save_weights(out / "model.safetensors", model, resolved, classes, train_set.palette, metrics)
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps({"final": metrics, "train_seconds": elapsed, "steps": run.steps,
                                   "history": state.history}, indent=2))
    plot_curves(state.history, out / "curves.png")
    for index, image, mask, prediction in examples:
        save_png(panel(image, mask, prediction, train_set.palette), out / "predictions" / f"{val_set.names[index]}.png")
    return metrics
