"""PASCAL VOC 2012 segmentation (Everingham et al.), with SBD's extra annotations (Hariharan et al.).

Read as distributed::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png       palette PNG: 0 background, 1-20, 255 border/void
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt
    benchmark_RELEASE/dataset/img/<id>.jpg              SBD (optional)
    benchmark_RELEASE/dataset/cls/<id>.mat              MATLAB struct GTcls, field Segmentation (uint8, 0-20)
    benchmark_RELEASE/dataset/{train,val}.txt

The split ``train_aug`` is the 10,582-image training set of PSPNet (Sec. 5.3), FCRN
(Sec. 4.1), DeepLab and the dilation and GCN papers: SBD train + SBD val + VOC train,
minus VOC val (so no validation image is trained on). An image with a VOC
``SegmentationClass`` PNG uses it (it has the void border SBD lacks); the others use
SBD's ``.mat``. Its images come from ``JPEGImages``, or from SBD's ``img`` for the few
SBD images not in VOC 2012. With the real lists the set arithmetic gives 10,582; the
tests check it on small generated lists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
from torch import Tensor

from ctxseg.data import colorize, read_index_png, voc_palette
from ctxseg.errors import DataError
from ctxseg.spec import FolderPath
from ctxseg_datasets._official import (
    OfficialConfig,
    OfficialDataset,
    find_dir,
    load_mat_labels,
    read_list,
    split_key,
)

__all__ = ["CLASSES", "PALETTE", "VOC2012"]

CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
           "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
PALETTE = tuple(voc_palette(len(CLASSES)))
TRAIN_AUG = "train_aug"


def sbd_dir(path: str) -> Path:
    """SBD's ``dataset`` folder, given it or the ``benchmark_RELEASE`` folder above it."""
    folder = find_dir(path, "SBD's benchmark_RELEASE folder (dataset/cls/*.mat, dataset/img/*.jpg, dataset/train.txt)")
    return folder / "dataset" if (folder / "dataset").is_dir() else folder


def train_aug_ids(voc_train: list[str], voc_val: list[str], sbd_train: list[str], sbd_val: list[str]) -> list[str]:
    """(SBD train | SBD val | VOC train) - VOC val, sorted: 10,582 ids with the real lists."""
    return sorted((set(sbd_train) | set(sbd_val) | set(voc_train)) - set(voc_val))


class VOC2012(OfficialDataset):
    """PASCAL VOC 2012: 20 object classes and background; 255 (object borders, void) is ignored."""

    CLASSES, PALETTE = CLASSES, PALETTE

    @attrs.define(frozen=True, kw_only=True)
    class Config(OfficialConfig):
        """:param root: the ``VOCdevkit/VOC2012`` folder.
        :param sbd: SBD's ``benchmark_RELEASE`` folder (or its ``dataset`` folder); needed for ``train_aug``.
        :param train: the split trained on: ``train_aug`` (the papers') or an
            ``ImageSets/Segmentation`` list (``train``, ``trainval``).
        :param val: the split evaluated on (``val``).
        """

        sbd: FolderPath = ""
        train: str = TRAIN_AUG
        val: str = "val"

    def __init__(self, config: Config, split: str):
        super().__init__()
        root = find_dir(config.root, "VOCdevkit/VOC2012 with JPEGImages, SegmentationClass, ImageSets/Segmentation")
        lists = root / "ImageSets" / "Segmentation"
        named = {p.stem: p.stem for p in lists.glob("*.txt")} | {TRAIN_AUG: TRAIN_AUG}
        name = split_key("datasets.voc2012", split, {**named, "train": config.train, "val": config.val})
        if name == TRAIN_AUG:
            if not config.sbd:
                raise DataError(f"datasets.voc2012: split {TRAIN_AUG!r} needs SBD's annotations: "
                                "set sbd = \"path/to/benchmark_RELEASE\" in [data.dataset]")
            sbd = sbd_dir(config.sbd)
            ids = train_aug_ids(read_list(lists / "train.txt"), read_list(lists / "val.txt"),
                                read_list(sbd / "train.txt"), read_list(sbd / "val.txt"))
            labels = {i: _voc_or_sbd(root / "SegmentationClass" / f"{i}.png", sbd / "cls" / f"{i}.mat") for i in ids}
            images = {i: _voc_or_sbd(root / "JPEGImages" / f"{i}.jpg", sbd / "img" / f"{i}.jpg") for i in ids}
        else:
            ids = read_list(lists / f"{name}.txt")
            labels = {i: root / "SegmentationClass" / f"{i}.png" for i in ids}
            images = {i: root / "JPEGImages" / f"{i}.jpg" for i in ids}
        self.open_split(images, labels, config, where=f"{root} ({name})")

    @classmethod
    def write_example(cls, root: Path) -> dict[str, Any]:
        """VOC 2012's layout with two ``train`` images and one ``val``, read with ``train = "train"``
        (``train_aug`` needs SBD's too)."""
        from ctxseg_datasets.fixtures import write_voc2012  # it imports this module

        base = write_voc2012(root, {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]})
        return {"root": str(base), "train": "train"}

    @classmethod
    def output_formats(cls) -> dict[str, Any]:
        return {"voc": voc_png}

    def read_label(self, path: Path) -> Tensor:
        if path.suffix == ".mat":
            return load_mat_labels(path, "GTcls", "Segmentation")
        return read_index_png(path)


def _voc_or_sbd(voc: Path, sbd: Path) -> Path:
    return voc if voc.is_file() else sbd


def voc_png(prediction: Tensor) -> Any:
    """The VOC evaluation server's format: a palette PNG of class indices in VOC's colour map."""
    return colorize(prediction, voc_palette(256))

