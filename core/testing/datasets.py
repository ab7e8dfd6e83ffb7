"""The dataset contract: samples of the declared shapes, dtypes and label range."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ctxseg.registry import Kind
from ctxseg.testing._harness import (
    _construct,
    _describe,
    _fail,
    _make_config,
    _single_threaded,
    _who,
)

__all__ = ["check_dataset"]


@_single_threaded
def check_dataset(cls: type, config: Any = None, *, name: str | None = None, max_examples: int = 8) -> None:
    """Both splits hold samples of the documented types, with consistent class metadata.

    For ``"train"`` and ``"val"``: at least one sample; ``classes`` non-empty strings,
    the same as ``class_names(config)`` (which sizes models without reading data),
    with one ``(r, g, b)`` palette colour (0-255) each; ``ignore_index`` an integer that
    is not a class index; ``names`` unique, one per sample. Up to ``max_examples``
    samples spread over the split (first and last included) are an image ``(3, H, W)``
    uint8 and a mask ``(H, W)`` int64 of the same size whose values are class indices
    or ``ignore_index``.

    With no ``config``, the dataset is the one ``cls.write_example`` writes in a temporary
    folder (removed after), or, if it writes none, the one its ``Config`` defaults read.
    """
    who = _who(Kind.DATASET, cls, name)
    if config is not None:
        _check_splits(who, cls, _make_config(who, cls, config), max_examples)
        return
    with tempfile.TemporaryDirectory(prefix="ctxseg-example-") as root:
        table = _write_example(who, cls, Path(root))
        try:
            config = _make_config(who, cls, table)
        except AssertionError as error:
            if table is None:
                raise AssertionError(f"{error}\n(a dataset read from files writes an example of its layout: "
                                     "SegmentationDataset.write_example)") from None
            raise
        _check_splits(who, cls, config, max_examples)


def _write_example(who: str, cls: type, root: Path) -> dict[str, Any] | None:
    """The parameter table of the dataset ``cls.write_example`` writes under ``root``; None if it writes none."""
    write = getattr(cls, "write_example", None)
    if write is None:
        return None
    try:
        return write(root)
    except Exception as error:  # noqa: BLE001 - whatever the writer raised is the plugin's
        raise AssertionError(f"{who}: write_example raised {type(error).__name__}: {error}") from error


def _check_splits(who: str, cls: type, config: Any, max_examples: int) -> None:
    for split in ("train", "val"):
        where = f"split {split!r}"
        dataset = _construct(who, lambda: cls(config, split), where)
        size = len(dataset)
        if size <= 0:
            _fail(who, f"is empty ({where})")
        classes, palette = list(dataset.classes), list(dataset.palette)
        if not classes or not all(isinstance(c, str) and c for c in classes):
            _fail(who, f"classes must be non-empty strings, got {classes!r} ({where})")
        if len(palette) != len(classes):
            _fail(who, f"has {len(palette)} palette colours for {len(classes)} classes ({where})")
        for colour in palette:
            if len(colour) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in colour):
                _fail(who, f"palette colour {colour!r} is not an (r, g, b) of integers 0-255 ({where})")
        ignore = dataset.ignore_index
        if not isinstance(ignore, int) or 0 <= ignore < len(classes):
            _fail(who, f"ignore_index={ignore!r} must be an integer that is not a class index ({where})")
        declared = getattr(cls, "class_names", None)
        if declared is not None and list(declared(config)) != classes:
            _fail(who, f"class_names(config) gives {list(declared(config))!r}, the dataset has {classes!r} ({where})")
        names = list(dataset.names)
        if len(names) != size:
            _fail(who, f"has {len(names)} names for {size} samples ({where})")
        if len(set(names)) != size:
            _fail(who, f"sample names are not unique; predictions would overwrite each other ({where})")

        count = min(max_examples, size)
        indices = sorted({round(i * (size - 1) / max(count - 1, 1)) for i in range(count)})
        for index in indices:
            _check_sample(who, dataset, index, len(classes), ignore, f"{where}, sample {index} {names[index]!r}")


def _check_sample(who: str, dataset: Any, index: int, num_classes: int, ignore: int, where: str) -> None:
    try:
        image, mask = dataset[index]
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"{who}: loading raised {type(error).__name__}: {error} ({where})") from error
    if not (isinstance(image, Tensor) and image.dtype == torch.uint8 and image.dim() == 3 and image.shape[0] == 3):
        _fail(who, f"image is {_describe(image)}, expected a (3, H, W) uint8 tensor ({where})")
    if not (isinstance(mask, Tensor) and mask.dtype == torch.int64 and mask.dim() == 2):
        _fail(who, f"mask is {_describe(mask)}, expected an (H, W) int64 tensor ({where})")
    if tuple(mask.shape) != tuple(image.shape[1:]):
        _fail(who, f"mask {tuple(mask.shape)} and image {tuple(image.shape)} differ in size ({where})")
    bad = mask[((mask < 0) | (mask >= num_classes)) & (mask != ignore)].unique().tolist()
    if bad:
        _fail(who, f"mask values {bad} are neither class indices in [0, {num_classes}) "
                   f"nor ignore_index={ignore} ({where})")
