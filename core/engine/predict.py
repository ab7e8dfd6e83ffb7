"""``ctxseg predict``: label images with a weights file alone (no spec needed).

For every image ``<stem>.<ext>`` it writes ``<stem>.png``, by default a palette PNG of
class indices (viewable, and readable as labels) and ``<stem>_overlay.png``; or the
prediction format of a benchmark's official evaluation that the weights' dataset
offers (``--format voc``, ``--format cityscapes`` with ctxseg-datasets).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from ctxseg.data.samples import read_image
from ctxseg.engine.inference import Inference
from ctxseg.errors import CtxsegError
from ctxseg.files.pictures import colorize, overlay, save_png

__all__ = ["predict"]


def predict(weights: Path, images: Sequence[Path], out: Path, *, format: str = "palette",
            progress: bool = True) -> list[Path]:
    """Write a mask per image into ``out`` in ``format``; return the mask paths.

    ``palette`` (always available) writes ``<stem>.png`` in the model's class colours and
    ``<stem>_overlay.png``; any other format is one the weights' dataset offers
    (:meth:`~ctxseg.interfaces.SegmentationDataset.output_formats`), written alone as
    ``<stem>.png`` so that a benchmark's evaluation finds exactly one file per image.
    """
    inference, info = Inference.from_weights(weights)
    spec = inference.spec
    formats = spec.data.dataset.load().output_formats()
    if format != "palette" and format not in formats:
        offered = ", ".join(["palette", *formats])
        raise CtxsegError(f"{weights}: unknown prediction format {format!r} for its dataset "
                          f"{spec.data.dataset.name!r} (offered: {offered})")
    _refuse_clobbering(images, out, format)
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


def _refuse_clobbering(images: Sequence[Path], out: Path, format: str) -> None:
    """Refuse, before anything is written, outputs that would replace an input or each other
    (``x.png`` and ``x.jpg`` both give ``x.png``)."""
    suffixes = ("", "_overlay") if format == "palette" else ("",)
    inputs = {path.resolve(): path for path in images}
    writers: dict[Path, Path] = {}
    for path in images:
        for suffix in suffixes:
            target = out / f"{path.stem}{suffix}.png"
            if target.resolve() in inputs:
                raise CtxsegError(f"{target}: would replace the input {inputs[target.resolve()]} with the "
                                  f"prediction for {path}; choose an --out folder that holds no input")
            other = writers.setdefault(target.resolve(), path)
            if other != path:
                raise CtxsegError(f"{other} and {path} would both be written to {target}; rename one, "
                                  "or predict them into separate --out folders")
