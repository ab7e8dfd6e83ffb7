"""Reading dataset samples from files, with errors that name the file.

Shared by every on-disk dataset (the folder format here, the benchmarks' official
layouts in ctxseg-datasets): decoding an image or an 8-bit index PNG, translating a
benchmark's raw label values into class indices, and checking a decoded sample (image
and mask of one size, every label a class index or the ignore index).

:class:`FileDataset` is the base of a dataset whose samples are (image file, label
file) pairs. Samples are decoded when accessed, so opening a large dataset stays
cheap, and bad data stops training with a :class:`~ctxseg.errors.DataError` naming the
file. With ``skip_bad`` every sample is decoded once up front instead, and the bad ones
are left out and counted: one broken file among 10,000 then costs a warning, not a run.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from ctxseg.errors import DataError
from ctxseg.interfaces import SegmentationDataset

__all__ = [
    "IMAGE_SUFFIXES", "FileDataset", "check_sample", "image_tensor", "map_labels", "read_image", "read_index_png",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_UNREADABLE = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def read_image(path: Path) -> Tensor:
    """An image file as a ``(3, H, W)`` uint8 RGB tensor; DataError naming the file if unreadable."""
    if not Path(path).is_file():
        raise DataError(f"{path}: no such image")
    try:
        with Image.open(path) as im:
            return image_tensor(im, path)
    except _UNREADABLE as e:
        raise DataError(f"{path}: not a readable image ({e})") from None


def image_tensor(im: Image.Image, source: object = "image") -> Tensor:
    """A PIL image as a ``(3, H, W)`` uint8 RGB tensor (16-bit grey scaled to 8 bit);
    errors name ``source``."""
    rgb = _gray16_to_rgb(im, source) if im.mode in _GRAY16 else np.array(im.convert("RGB"))
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


_GRAY16 = ("I;16", "I;16B", "I;16L", "I")


def _gray16_to_rgb(im: Image.Image, path: object) -> np.ndarray:
    """A 16-bit grayscale image as ``(H, W, 3)`` uint8, each value scaled by 255/65535.

    Scaled rather than refused: a 16-bit PNG is the same picture at a finer grey
    scale, and the models see 8-bit images, so rounding ``v / 257`` keeps everything
    they can use. Pillow's own ``convert("RGB")`` clips at 255 instead, which turns
    nearly every pixel of a 16-bit image white.
    """
    values = np.array(im)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise DataError(f"{path}: grey values from {values.min()} to {values.max()}; "
                        "expected an 8- or 16-bit image (0-255 or 0-65535)")
    gray = np.rint(values.astype(np.float64) / 257).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def read_index_png(path: Path) -> Tensor:
    """An 8-bit single-channel PNG ("P" or "L") as an ``(H, W)`` int64 tensor of its values."""
    try:
        with Image.open(path) as im:
            if im.format != "PNG" or im.mode not in ("P", "L"):
                raise DataError(f"{path}: expected an 8-bit single-channel PNG of class indices "
                                f"(mode 'P' or 'L'), got a {im.format} image in mode {im.mode!r}")
            indices = np.array(im)
    except _UNREADABLE as e:
        raise DataError(f"{path}: cannot read mask ({e})") from None
    return torch.from_numpy(indices).long()


def map_labels(raw: Tensor, table: Tensor, path: Path, expected: str) -> Tensor:
    """Raw label values -> class indices through ``table`` (``-1`` marks a value that must not occur).

    :param raw: ``(H, W)`` integer label values as stored in ``path``.
    :param table: int64 lookup table indexed by raw value.
    :param expected: what the values should be, for the error (e.g. "Cityscapes labelIds 0-33").
    """
    raw = raw.long()
    outside = (raw < 0) | (raw >= len(table))
    mapped = table[raw.clamp(0, len(table) - 1)]
    bad = outside | (mapped < 0)
    if bad.any():
        values = raw[bad].unique().tolist()
        raise DataError(f"{path}: label values {values[:10]}{' ...' if len(values) > 10 else ''} "
                        f"are not {expected}")
    return mapped


def check_sample(image: Tensor, mask: Tensor, num_classes: int, ignore_index: int,
                 image_path: Path, mask_path: Path) -> None:
    """DataError naming the files unless image and mask agree in size and every label is valid."""
    if image.shape[1:] != mask.shape:
        raise DataError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} (width x height) "
                        f"but its image {image_path} is {image.shape[2]}x{image.shape[1]}")
    if mask.numel() and (int(mask.max()) >= num_classes or int(mask.min()) < 0):
        bad = [v for v in mask.unique().tolist() if not 0 <= v < num_classes and v != ignore_index]
        if bad:
            raise DataError(f"{mask_path}: label values {bad} are neither class indices in "
                            f"[0, {num_classes}) nor the ignore index {ignore_index}")


class FileDataset(SegmentationDataset):
    """Samples that are (image file, label file) pairs, decoded on access.

    A subclass sets ``classes``, ``palette`` (and ``ignore_index`` if not 255), calls
    :meth:`set_samples` with its file lists, and overrides :meth:`read_label` when its
    label files are not index PNGs of class indices.
    """

    skipped: list[str]
    """One message per sample left out by ``skip_bad``."""

    def set_samples(self, names: Sequence[str], images: Sequence[Path], labels: Sequence[Path], *,
                    skip_bad: bool = False, where: str = "") -> None:
        """Record the samples; with ``skip_bad``, decode each once and leave out the bad ones.

        :param where: the dataset and split, for the warning that counts skipped samples.
        """
        if not names:
            raise DataError(f"{where}: no samples found")
        self.names, self._images, self._labels = list(names), list(images), list(labels)
        self.skipped = []
        if not skip_bad:
            return
        keep = []
        for index in tqdm(range(len(self.names)), desc=f"checking {where}", leave=False,
                          disable=len(self.names) < 100):
            try:
                self[index]
                keep.append(index)
            except DataError as error:
                self.skipped.append(str(error))
        if not keep:
            raise DataError(f"{where}: every one of the {len(self.names)} samples has bad data "
                            f"(first: {self.skipped[0]})")
        if self.skipped:
            warnings.warn(f"{where}: skipped {len(self.skipped)} of {len(self.names)} samples with bad "
                          f"data (first: {self.skipped[0]})", stacklevel=2)
        self.names = [self.names[i] for i in keep]
        self._images = [self._images[i] for i in keep]
        self._labels = [self._labels[i] for i in keep]

    def read_label(self, path: Path) -> Tensor:
        """The label file at ``path`` as ``(H, W)`` int64 class indices (or ``ignore_index``)."""
        return read_index_png(path)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, label_path = self._images[index], self._labels[index]
        image = read_image(image_path)  # (3, H, W) uint8
        mask = self.read_label(label_path)  # (H, W) int64
        check_sample(image, mask, len(self.classes), self.ignore_index, image_path, label_path)
        return image, mask
