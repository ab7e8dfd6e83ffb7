"""Cityscapes (Cordts et al.): urban street scenes, 1024 x 2048, fine annotations, 19 classes.

Read as distributed (``leftImg8bit_trainvaltest.zip``, ``gtFine_trainvaltest.zip``)::

    leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png       2,975 / 500 / 1,525
    gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png       labelIds 0-33

The benchmark trains and scores 19 of the 34 labelIds (their "trainIds" in
cityscapesScripts' ``labels.py``, reproduced below); the others are ignored (255).
Predictions for the official evaluation (``evalPixelLevelSemanticLabeling``) are
grayscale PNGs of labelIds named after the image: ``ctxseg predict --format cityscapes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
from PIL import Image
from torch import Tensor

from ctxseg.data import map_labels, read_index_png
from ctxseg.errors import DataError
from ctxseg_datasets._official import (
    OfficialConfig,
    OfficialDataset,
    find_dir,
    label_table,
    split_key,
)

__all__ = ["CLASSES", "LABEL_IDS", "PALETTE", "Cityscapes", "labelid_png"]

# (trainId order) name, labelId, colour: cityscapesScripts' helpers/labels.py.
_TRAIN = (
    ("road", 7, (128, 64, 128)), ("sidewalk", 8, (244, 35, 232)), ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)), ("fence", 13, (190, 153, 153)), ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)), ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)), ("terrain", 22, (152, 251, 152)), ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)), ("rider", 25, (255, 0, 0)), ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)), ("bus", 28, (0, 60, 100)), ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)), ("bicycle", 33, (119, 11, 32)),
)
CLASSES = tuple(name for name, _, _ in _TRAIN)
LABEL_IDS = tuple(label_id for _, label_id, _ in _TRAIN)
"""labelId of each trainId."""
PALETTE = tuple(color for _, _, color in _TRAIN)
NUM_LABEL_IDS = 34
# labelId -> trainId, 255 for the 15 labelIds the benchmark does not score.
TABLE = label_table([(i, LABEL_IDS.index(i) if i in LABEL_IDS else 255) for i in range(NUM_LABEL_IDS)], 256)
_SUFFIX = "_leftImg8bit"


class Cityscapes(OfficialDataset):
    """Cityscapes fine annotations, the 19 evaluated classes; splits train, val (and test)."""

    CLASSES, PALETTE = CLASSES, PALETTE

    @attrs.define(frozen=True, kw_only=True)
    class Config(OfficialConfig):
        """:param root: the folder holding ``leftImg8bit`` and ``gtFine`` (``$CITYSCAPES_DATASET``)."""

    def __init__(self, config: Config, split: str):
        super().__init__()
        root = find_dir(config.root, "the Cityscapes folder with leftImg8bit/ and gtFine/")
        name = split_key("datasets.cityscapes", split, {"train": "train", "val": "val", "test": "test"})
        image_dir = find_dir(root / "leftImg8bit" / name, f"leftImg8bit/{name}/<city>/*{_SUFFIX}.png")
        images = {p.name[: -len(_SUFFIX + ".png")]: p for p in sorted(image_dir.glob(f"*/*{_SUFFIX}.png"))}
        if not images:
            raise DataError(f"{image_dir}: no images (<city>/<city>_<seq>_<frame>{_SUFFIX}.png) found")
        labels = {stem: root / "gtFine" / name / path.parent.name / f"{stem}_gtFine_labelIds.png"
                  for stem, path in images.items()}
        self.open_split(images, labels, config, where=f"{root} ({name})")

    @classmethod
    def write_example(cls, root: Path) -> dict[str, Any]:
        """Cityscapes' layout with one ``train`` image in each of two cities and one ``val``."""
        from ctxseg_datasets.fixtures import write_cityscapes  # it imports this module

        write_cityscapes(root, {"train": {"aachen": 1, "bochum": 1}, "val": {"frankfurt": 1}})
        return {"root": str(root)}

    @classmethod
    def output_formats(cls) -> dict[str, Any]:
        return {"cityscapes": labelid_png}

    def read_label(self, path: Path) -> Tensor:
        return map_labels(read_index_png(path), TABLE, path, f"Cityscapes labelIds 0-{NUM_LABEL_IDS - 1}")


def labelid_png(prediction: Tensor) -> Image.Image:
    """What cityscapesScripts evaluates: a grayscale PNG of labelIds (trainIds mapped back)."""
    label_ids = torch.tensor(LABEL_IDS, dtype=torch.uint8)[prediction.cpu()]
    return Image.fromarray(label_ids.numpy(), mode="L")
