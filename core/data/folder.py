"""The generic on-disk dataset format: one folder per split, images and PNG masks side by side.

::

    ROOT/classes.json               {"classes": [{"name": "sky", "color": [r, g, b]}, ...],
                                     "ignore_index": 255}
    ROOT/<split>/images/<stem>.png|.jpg|.jpeg
    ROOT/<split>/masks/<stem>.png   8-bit class indices ("P" with the class palette, or "L")

Why this format: it is what people already have (VOC, ADE20K and most labelling tools
export index PNGs), it needs no code to inspect (a "P" mask opens in any viewer in the
class colours), and a new dataset is a folder, not a plugin. ``ignore_index`` is
optional (default 255) and must not be a class index.

Errors are :class:`~ctxseg.errors.DataError` naming the file: the folder layout,
``classes.json`` and the image/mask pairing are checked when the dataset is
constructed (fail before training starts); the content of a sample (readable, sizes
match, labels in range) when it is loaded, so opening a large dataset stays cheap;
with ``skip_bad`` the content is checked up front and bad samples are left out and
counted (:class:`~ctxseg.data.samples.FileDataset`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from PIL import Image
from torch import Tensor

from ctxseg.data.samples import IMAGE_SUFFIXES, FileDataset
from ctxseg.errors import DataError
from ctxseg.files.atomic import atomic_path
from ctxseg.spec import FolderPath

__all__ = ["IMAGE_SUFFIXES", "FolderDataset", "write_classes", "write_sample"]

# Colour of the ignore index in written masks (as in PASCAL VOC), so it stands out.
_IGNORE_COLOR = (224, 224, 192)


class FolderDataset(FileDataset):
    """A dataset in the folder format above; samples are read from disk on access."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        """:param root: the folder holding ``classes.json`` and one folder per split.
        :param skip_bad: check every sample when opening the split and leave out (and
            count) those with bad data instead of stopping at the first one.
        """

        root: FolderPath = attrs.field(validator=[attrs.validators.instance_of(str), attrs.validators.min_len(1)])
        skip_bad: bool = False

    def __init__(self, config: Config, split: str):
        self.root = Path(config.root).expanduser()
        self.split = split
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found (expected classes.json "
                            f"and one folder per split, e.g. {split}/images and {split}/masks)")
        self.classes, self.palette, self.ignore_index = _read_classes(self.root / "classes.json")
        split_dir = self.root / split
        if not split_dir.is_dir():
            splits = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            raise DataError(f"{split_dir}: split folder not found "
                            f"(splits present: {', '.join(splits) or 'none'})")
        images = _list_files(split_dir / "images", IMAGE_SUFFIXES)
        masks = _list_files(split_dir / "masks", (".png",))
        _check_pairing(split_dir, images, masks)
        names = sorted(images)
        self.set_samples(names, [images[n] for n in names], [masks[n] for n in names],
                         skip_bad=config.skip_bad, where=str(split_dir))

    @classmethod
    def class_names(cls, config: Config) -> list[str]:
        """The class names in ``ROOT/classes.json``."""
        return _read_classes(Path(config.root).expanduser() / "classes.json")[0]

    @classmethod
    def write_example(cls, root: Path) -> dict[str, Any]:
        """Two classes, two ``train`` samples and one ``val`` of 6 x 8 pixels, a few of them ignored."""
        palette = [(0, 0, 0), (0, 128, 0)]
        write_classes(root, ["background", "grass"], palette)
        generator = torch.Generator().manual_seed(0)
        for split, stem in (("train", "a"), ("train", "b"), ("val", "c")):
            image = torch.randint(0, 256, (3, 6, 8), dtype=torch.uint8, generator=generator)
            mask = torch.randint(0, 2, (6, 8), generator=generator)
            mask[0, :2] = 255
            write_sample(root, split, stem, image, mask, palette)
        return {"root": str(root)}


def write_classes(root: str | os.PathLike[str], classes: Sequence[str],
                  palette: Sequence[Sequence[int]], ignore_index: int = 255) -> None:
    """Write ``ROOT/classes.json`` atomically, creating ROOT if needed."""
    if len(classes) != len(palette):
        raise ValueError(f"{len(classes)} classes but {len(palette)} palette colours")
    content = {"classes": [{"name": name, "color": [int(c) for c in color]}
                           for name, color in zip(classes, palette)],
               "ignore_index": ignore_index}
    with atomic_path(Path(root) / "classes.json") as tmp:
        tmp.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def write_sample(root: str | os.PathLike[str], split: str, stem: str, image: Tensor, mask: Tensor,
                 palette: Sequence[Sequence[int]], ignore_index: int = 255) -> None:
    """Write ``image`` ``(3, H, W)`` uint8 and ``mask`` ``(H, W)`` of class indices as PNGs.

    The mask is a palette ("P") PNG coloured with ``palette`` (the ignore index in
    VOC's cream), so it can be looked at as is. Each file is written atomically.
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be a (3, H, W) uint8 tensor, got {tuple(image.shape)} {image.dtype}")
    if mask.shape != image.shape[1:]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match image {tuple(image.shape)}")
    if mask.dtype.is_floating_point or int(mask.min()) < 0 or int(mask.max()) > 255:
        raise ValueError("mask must hold integer class indices in [0, 255]")
    split_dir = Path(root) / split
    rgb = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    indices = Image.frombytes("P", (mask.shape[1], mask.shape[0]),
                              mask.to(torch.uint8).contiguous().numpy().tobytes())
    colors = [(0, 0, 0)] * 256
    colors[: len(palette)] = [tuple(c) for c in palette]
    colors[ignore_index] = _IGNORE_COLOR
    indices.putpalette([int(v) for color in colors for v in color])
    for picture, folder in ((rgb, "images"), (indices, "masks")):
        with atomic_path(split_dir / folder / f"{stem}.png") as tmp:
            picture.save(tmp, format="PNG")


def _read_classes(path: Path) -> tuple[list[str], list[tuple[int, int, int]], int]:
    """Parse and check ``classes.json``: class names, palette and ignore index."""
    if not path.is_file():
        raise DataError(f"{path}: not found (expected the class list: "
                        '{"classes": [{"name": ..., "color": [r, g, b]}, ...], "ignore_index": 255})')
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read JSON ({e})") from None
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a JSON object with keys 'classes' and 'ignore_index'")
    entries = content.get("classes")
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: 'classes' must be a non-empty list of "
                        f'{{"name": ..., "color": [r, g, b]}}, got {entries!r}')
    classes: list[str] = []
    palette: list[tuple[int, int, int]] = []
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise DataError(f"{path}: 'classes[{i}].name' must be a non-empty string, got {name!r}")
        if name in classes:
            raise DataError(f"{path}: 'classes[{i}].name' repeats the class name {name!r}")
        color = entry.get("color")
        if not (isinstance(color, list) and len(color) == 3
                and all(type(c) is int and 0 <= c <= 255 for c in color)):
            raise DataError(f"{path}: 'classes[{i}].color' must be [r, g, b] with integers "
                            f"in [0, 255], got {color!r}")
        classes.append(name)
        palette.append((color[0], color[1], color[2]))
    if len(classes) > 255:
        raise DataError(f"{path}: 'classes' has {len(classes)} entries; 8-bit masks hold at most 255")
    ignore_index = content.get("ignore_index", 255)
    if type(ignore_index) is not int or not len(classes) <= ignore_index <= 255:
        raise DataError(f"{path}: 'ignore_index' must be an integer in [{len(classes)}, 255] "
                        f"(8-bit masks, not a class index), got {ignore_index!r}")
    return classes, palette, ignore_index


def _list_files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Files of ``folder`` with one of ``suffixes`` (any case), by stem; hidden files skipped."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found (expected files {'|'.join(suffixes)})")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if path.stem in files:
            raise DataError(f"{folder}: two files for the sample {path.stem!r}: "
                            f"{files[path.stem].name} and {path.name}")
        files[path.stem] = path
    return files


def _check_pairing(split_dir: Path, images: dict[str, Path], masks: dict[str, Path]) -> None:
    """Every image has a mask and every mask an image; the split is not empty."""
    if not images:
        raise DataError(f"{split_dir / 'images'}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    for stems, what, where in ((images.keys() - masks.keys(), "images without a mask", "masks/<stem>.png"),
                               (masks.keys() - images.keys(), "masks without an image",
                                "images/<stem>.png|.jpg|.jpeg")):
        if stems:
            shown = sorted(stems)
            more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
            raise DataError(f"{split_dir}: {what}: {', '.join(shown[:10])}{more} "
                            f"(expected {where} for each)")
