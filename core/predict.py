"""``ctxseg predict``: label images with a weights file alone (no spec needed).

For every image ``<stem>.<ext>`` it writes ``<stem>.png``, a palette PNG of class
indices (viewable, and readable as labels), and ``<stem>_overlay.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from ctxseg.data.pipeline import EvalTransform
from ctxseg.data.samples import read_image
from ctxseg.evaluate import predict_scores
from ctxseg.runtime import Runtime
from ctxseg.visualize import colorize, overlay, save_png
from ctxseg.weights import load_model

__all__ = ["predict"]


def predict(weights: Path, images: Sequence[Path], out: Path, *, progress: bool = True) -> list[Path]:
    """Write a palette mask and an overlay per image into ``out``; return the mask paths."""
    model, spec, info = load_model(weights)
    runtime = Runtime(spec.run, f"{weights} (embedded spec)")
    model = runtime.model(model)
    transform = EvalTransform(spec.data)
    written = []
    for path in tqdm(images, desc="predict", disable=not progress):
        image = read_image(path)
        prediction = predict_scores(model, transform(image, None)[0], runtime).argmax(0).cpu()
        save_png(colorize(prediction, info.palette), out / f"{path.stem}.png")
        save_png(overlay(image, prediction, info.palette), out / f"{path.stem}_overlay.png")
        written.append(out / f"{path.stem}.png")
    return written
