"""``ctxseg predict``: label images with a weights file alone (no spec needed).

Inputs are image files and folders (their images, sorted; with ``recursive`` their
sub-folders' too). An image file ``<stem>.<ext>`` gets ``<stem>.png`` in the output
folder; an image found in a folder keeps its path relative to that folder
(``<sub>/<stem>.png``). By default the output is a palette PNG of class indices
(viewable, and readable as labels) and ``<stem>_overlay.png``; or the prediction
format of a benchmark's official evaluation that the weights' dataset offers
(``--format voc``, ``--format cityscapes`` with ctxseg-datasets).

Every output name is planned before anything is written: two inputs that would write
the same file, or an output that would replace an input, are refused, naming both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from PIL import Image
from tqdm import tqdm

from ctxseg.data.samples import IMAGE_SUFFIXES, read_image
from ctxseg.engine import distributed
from ctxseg.engine.inference import Inference
from ctxseg.errors import CtxsegError, DataError, WriteError
from ctxseg.files.atomic import check_writable, file_in_the_way
from ctxseg.files.pictures import colorize, overlay, save_png

__all__ = ["Predictions", "list_images", "predict"]


@attrs.frozen
class Predictions:
    """What a predict run did: the masks written, and one error per image that could not be labelled."""

    written: list[Path]
    failed: list[CtxsegError]


def _size(path: Path) -> tuple[int, int] | None:
    """An image's (height, width), from its header alone; None if unreadable (reported when it is read)."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, ValueError):
        return None


def list_images(inputs: Sequence[Path], *, recursive: bool = False) -> list[tuple[Path, Path]]:
    """``(image, output stem)`` pairs of image files and folders' images (sorted, hidden files skipped).

    The stem is relative to the output folder: ``<stem>`` for a file given by name,
    the image's path inside the folder (without suffix) for a folder's image.
    """
    found = []
    for path in inputs:
        if path.is_dir():
            images = sorted(p for p in (path.rglob("*") if recursive else path.iterdir())
                            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not images:
                raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder"
                                + ("" if recursive else " (sub-folders are read with --recursive)"))
            found += [(p, p.relative_to(path).with_suffix("")) for p in images]
        elif path.exists():
            found.append((path, Path(path.stem)))
        else:
            raise DataError(f"{path}: no such image or folder")
    return found


def _plan(images: list[tuple[Path, Path]], out: Path, names: Sequence[str]) -> list[tuple[Path, list[Path]]]:
    """Each image with its output files (``<stem><name>.png`` for each of ``names``); a
    CtxsegError naming both files if two inputs would write one file or an output is an input,
    a WriteError if no file can be made in ``out``."""
    if (blocking := file_in_the_way(out)) is not None:
        raise CtxsegError(f"{out}: --out: {blocking} is an existing file; expected a folder for the masks "
                          "(existing or new)")
    inputs = {image.resolve(): image for image, _ in images}
    writer: dict[Path, Path] = {}
    plan = []
    for image, stem in images:
        outputs = [out / stem.with_name(f"{stem.name}{name}.png") for name in names]
        for output in outputs:
            key = output.resolve()
            if key in inputs:
                raise CtxsegError(f"{output}: the output for {image} would replace the input image "
                                  f"{inputs[key]}; choose another --out")
            if key in writer:
                raise CtxsegError(f"{output}: both {writer[key]} and {image} would be written to this file; "
                                  "rename one, or predict them into different --out folders")
            writer[key] = image
        plan.append((image, outputs))
    if plan:
        check_writable(plan[0][1][0])
    return plan


def _written(written: list[Path], total: int) -> str:
    """What a predict run stopped by a write it could not make leaves: the images labelled before it."""
    if not written:
        return f"none of the {total} images' masks was written"
    return f"{len(written)} of the {total} images' masks were written whole (up to {written[-1]}), the rest were not"


def predict(weights: Path, inputs: Sequence[Path], out: Path, *, format: str = "palette",
            recursive: bool = False, test: Mapping[str, Any] | None = None, progress: bool = True) -> Predictions:
    """Write a mask per image into ``out`` in ``format``; go on past images that cannot be read.

    ``palette`` (always available) writes ``<stem>.png`` in the model's class colours and
    ``<stem>_overlay.png``; any other format is one the weights' dataset offers
    (:meth:`~ctxseg.interfaces.SegmentationDataset.output_formats`), written alone as
    ``<stem>.png`` so that a benchmark's evaluation finds exactly one file per image.
    Inputs, output names and the format are checked before anything is written; ``test``
    keys override the weights' ``[test]`` protocol.

    Under torchrun every process plans (and checks) every output name, then labels and
    writes its contiguous share of the images; each returns the whole run's written files
    and errors, in the order of the images. Only the first process draws progress.
    """
    progress = progress and distributed.rank() == 0
    images = list_images(inputs, recursive=recursive)
    plan = _plan(images, out, ["", "_overlay"] if format == "palette" else [""])
    inference, info = Inference.from_weights(weights, test=test)
    spec = inference.spec
    formats = spec.data.dataset.load().output_formats()
    if format != "palette" and format not in formats:
        offered = ", ".join(["palette", *formats])
        raise CtxsegError(f"{weights}: unknown prediction format {format!r} for its dataset "
                          f"{spec.data.dataset.name!r} (offered: {offered})")
    with distributed.session(inference.runtime.device):
        if plan and (size := _size(plan[0][0])):
            inference.prepare(size)  # under torchrun every process runs as the first chose
        if progress:
            print(f"predict: {inference.describe()}")
        done = Predictions(written=[], failed=[])
        mine = [plan[i] for i in distributed.shard(len(plan))]
        for path, outputs in tqdm(mine, desc="predict", disable=not progress):
            try:
                image = read_image(path)
            except CtxsegError as error:  # one bad file costs its own mask, not the batch's
                done.failed.append(error)
                continue
            prediction = inference.predict(image)
            try:
                if format == "palette":
                    save_png(colorize(prediction, info.palette), outputs[0])
                    save_png(overlay(image, prediction, info.palette), outputs[1])
                else:
                    save_png(formats[format](prediction), outputs[0])
            except WriteError as error:
                raise error.saying(_written(done.written, len(mine))) from None
            done.written.append(outputs[0])
        parts = distributed.gather_objects(done)  # contiguous shards: in rank order, in the images' order
    return Predictions(written=[path for part in parts for path in part.written],
                       failed=[error for part in parts for error in part.failed])
