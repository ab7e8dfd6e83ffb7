"""PASCAL-Context (Mottaghi et al.): whole-scene labels for PASCAL VOC 2010, 59 classes + background.

Read as distributed::

    VOCdevkit/VOC2010/JPEGImages/<id>.jpg
    VOCdevkit/VOC2010/ImageSets/Main/{train,val}.txt     4,998 / 5,105 images
    <annotations>/trainval/<id>.mat                      LabelMap: uint16, ids of labels.txt (0 = unlabelled)
    <annotations>/labels.txt                             "<id>: <name>", the 459 full-label classes

ParseNet (Table 4) and PSPNet report the standard 60-class setting: the 59 most
frequent classes plus background. Labels are mapped by name through ``labels.txt``;
every other class and the unlabelled pixels (0) become **background (0)**, not
ignore, because that is how the 60-class benchmark is defined and scored (the
``Detail`` API's 59-class masks and later reimplementations do the same): the
background class stands for "none of the 59", so a model is trained and evaluated on
every pixel. ``ignore_index`` 255 never occurs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from torch import Tensor

from ctxseg.data import map_labels, voc_palette
from ctxseg.errors import DataError
from ctxseg.spec import FolderPath
from ctxseg_datasets._official import (
    OfficialConfig,
    OfficialDataset,
    find_dir,
    label_table,
    load_mat_labels,
    read_list,
    split_key,
)

__all__ = ["CLASSES", "PALETTE", "PascalContext", "read_labels_txt"]

# The 59 classes, alphabetically (as their ids in labels.txt), after background.
CLASSES = (
    "background", "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain",
    "dog", "door", "fence", "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light",
    "motorbike", "mountain", "mouse", "person", "plate", "platform", "pottedplant", "road", "rock", "sheep",
    "shelves", "sidewalk", "sign", "sky", "snow", "sofa", "table", "track", "train", "tree", "truck",
    "tvmonitor", "wall", "water", "window", "wood",
)
PALETTE = tuple(voc_palette(len(CLASSES)))


def read_labels_txt(path: Path) -> dict[int, str]:
    """``labels.txt``: full-label id -> class name."""
    labels: dict[int, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: not found (expected PASCAL-Context's 459 classes, '<id>: <name>' per line)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, _, name = line.partition(":")
        if not key.strip().isdigit() or not name.strip():
            raise DataError(f"{path}: line {number}: expected '<id>: <name>', got {line!r}")
        labels[int(key)] = name.strip()
    return labels


def context_table(labels: dict[int, str], path: Path) -> Tensor:
    """Full-label id -> index of the 60 classes (background for the 400 others and for 0)."""
    ids = {name: key for key, name in labels.items()}
    missing = [name for name in CLASSES[1:] if name not in ids]
    if missing:
        raise DataError(f"{path}: lacks the classes {', '.join(missing)} of the 59-class benchmark")
    index = {ids[name]: i for i, name in enumerate(CLASSES) if i}
    return label_table([(key, index.get(key, 0)) for key in (0, *labels)], max(labels) + 1)


class PascalContext(OfficialDataset):
    """PASCAL-Context, 59 classes + background (60), on the VOC 2010 train/val split."""

    CLASSES, PALETTE = CLASSES, PALETTE

    @attrs.define(frozen=True, kw_only=True)
    class Config(OfficialConfig):
        """:param root: the ``VOCdevkit/VOC2010`` folder (JPEGImages, ImageSets/Main).
        :param annotations: the folder of the extracted annotations: ``trainval/*.mat`` and ``labels.txt``.
        """

        annotations: FolderPath = attrs.field(validator=attrs.validators.instance_of(str))

    def __init__(self, config: Config, split: str):
        super().__init__()
        root = find_dir(config.root, "VOCdevkit/VOC2010 with JPEGImages and ImageSets/Main")
        annotations = find_dir(config.annotations, "PASCAL-Context's trainval/*.mat and labels.txt")
        name = split_key("datasets.pascal_context", split, {"train": "train", "val": "val"})
        self.table = context_table(read_labels_txt(annotations / "labels.txt"), annotations / "labels.txt")
        ids = read_list(root / "ImageSets" / "Main" / f"{name}.txt")
        images = {i: root / "JPEGImages" / f"{i}.jpg" for i in ids}
        labels = {i: annotations / "trainval" / f"{i}.mat" for i in ids}
        self.open_split(images, labels, config, where=f"{root} ({name})")

    @classmethod
    def write_example(cls, root: Path) -> dict[str, Any]:
        """VOC 2010's and PASCAL-Context's layouts with two ``train`` images and one ``val``."""
        from ctxseg_datasets.fixtures import write_pascal_context  # it imports this module

        voc2010, annotations = write_pascal_context(root, {"train": ["2008_000002", "2008_000003"],
                                                           "val": ["2008_000007"]})
        return {"root": str(voc2010), "annotations": str(annotations)}

    def read_label(self, path: Path) -> Tensor:
        return map_labels(load_mat_labels(path, "LabelMap"), self.table, path,
                          f"PASCAL-Context label ids (0-{len(self.table) - 1} of labels.txt)")
