"""``ctxseg predict``: label images with a weights file alone (no spec needed).

For every image ``<stem>.<ext>`` it writes ``<stem>.png``, by default a palette PNG of
class indices (viewable, and readable as labels) and ``<stem>_overlay.png``; or the
prediction format of a benchmark's official evaluation that the weights' dataset
offers (``--format voc``, ``--format cityscapes`` with ctxseg-datasets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ctxseg.data.samples import read_image
from ctxseg.engine.inference import Inference
from ctxseg.errors import CtxsegError
from ctxseg.files.pictures import colorize, overlay, save_png

__all__ = ["predict"]


def predict(weights: Path, images: Sequence[Path], out: Path, *, format: str = "palette",
            test: Mapping[str, Any] | None = None, progress: bool = True) -> list[Path]:
    """Write a mask per image into ``out`` in ``format``; return the mask paths.

    ``palette`` (always available) writes ``<stem>.png`` in the model's class colours and
    ``<stem>_overlay.png``; any other format is one the weights' dataset offers
    (:meth:`~ctxseg.interfaces.SegmentationDataset.output_formats`), written alone as
    ``<stem>.png`` so that a benchmark's evaluation finds exactly one file per image.
    ``test`` keys override the weights' ``[test]`` protocol.
    """
    inference, info = Inference.from_weights(weights, test=test)
    if progress:
        print(f"predict: {inference.describe()}")
    spec = inference.spec
    formats = spec.data.dataset.load().output_formats()
    if format != "palette" and format not in formats:
        offered = ", ".join(["palette", *formats])
        raise CtxsegError(f"{weights}: unknown prediction format {format!r} for its dataset "
                          f"{spec.data.dataset.name!r} (offered: {offered})")
    written = []
    for path in tqdm(images, desc="predict", disable=not progress):
        image = read_image(path)
        prediction = inference.predict(image)
        if format == "palette":
            save_png(colorize(prediction, info.palette), out / f"{path.stem}.png")
            save_png(overlay(image, prediction, info.palette), out / f"{path.stem}_overlay.png")
        else:
            save_png(formats[format](prediction), out / f"{path.stem}.png")
        written.append(out / f"{path.stem}.png")
    return written
