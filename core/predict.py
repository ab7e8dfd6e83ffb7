"""``ctxseg predict``: label images with a weights file alone (no spec needed).

For every image ``<stem>.<ext>`` it writes ``<stem>.png``, a palette PNG of class
indices (viewable, and readable as labels), and ``<stem>_overlay.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2.functional import pil_to_tensor
from tqdm import tqdm

from ctxseg.data.pipeline import EvalTransform
from ctxseg.errors import DataError
from ctxseg.evaluate import predict_scores
from ctxseg.runtime import Runtime
from ctxseg.simulate import for_inference
from ctxseg.visualize import colorize, overlay, save_png
from ctxseg.weights import load_model

__all__ = ["predict", "read_image"]


def read_image(path: Path) -> torch.Tensor:
    """An image file as ``(3, H, W)`` uint8 RGB; DataError naming the file if unreadable."""
    try:
        with Image.open(path) as image:
            return pil_to_tensor(image.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such image") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"{path}: not a readable image ({error})") from None


def predict(weights: Path, images: Sequence[Path], out: Path, *, progress: bool = True) -> list[Path]:
    """Write a palette mask and an overlay per image into ``out``; return the mask paths."""
    model, spec, info = load_model(weights)
    runtime = Runtime(spec.run, f"{weights} (embedded spec)")
    model = for_inference(runtime.model(model), spec.run, f"{weights} (embedded spec)")
    transform = EvalTransform(spec.data)
    written = []
    for path in tqdm(images, desc="predict", disable=not progress):
        image = read_image(path)
        prediction = predict_scores(model, transform(image, None)[0], runtime).argmax(0).cpu()
        save_png(colorize(prediction, info.palette), out / f"{path.stem}.png")
        save_png(overlay(image, prediction, info.palette), out / f"{path.stem}_overlay.png")
        written.append(out / f"{path.stem}.png")
    return written
