"""ADE20K, the SceneParsing benchmark (Zhou et al.; the ImageNet 2016 scene parsing challenge).

Read as distributed (``ADEChallengeData2016.zip``)::

    ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_<n>.jpg        20,210 / 2,000
    ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_<n>.png   0 other, 1-150 the classes

150 classes (objectInfo150's names, the first synonym of each). Label 0 ("other
objects") is not scored by the benchmark, so it is ignored (255) and 1-150 become
0-149, as in PSPNet's ADE20K experiments (Sec. 5.2). ``ctxseg predict --format
ade20k`` writes predictions as the benchmark's annotations are (grayscale PNGs, 1-150).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import torch
from PIL import Image
from torch import Tensor

from ctxseg.data import map_labels, read_index_png, voc_palette
from ctxseg.errors import DataError
from ctxseg_datasets._official import (
    OfficialConfig,
    OfficialDataset,
    find_dir,
    label_table,
    split_key,
)

__all__ = ["ADE20K", "CLASSES", "PALETTE", "annotation_png"]

CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)
# VOC's colour map from 1 (the devkit's color150.mat is not reproduced here)
PALETTE = tuple(voc_palette(len(CLASSES) + 1)[1:])
# PNG value -> class index: 0 -> ignore, 1..150 -> 0..149.
TABLE = label_table([(0, 255), *((k, k - 1) for k in range(1, len(CLASSES) + 1))], 256)


class ADE20K(OfficialDataset):
    """ADE20K SceneParsing, 150 classes; train = ``training``, val = ``validation``."""

    CLASSES, PALETTE = CLASSES, PALETTE

    @attrs.define(frozen=True, kw_only=True)
    class Config(OfficialConfig):
        """:param root: the ``ADEChallengeData2016`` folder."""

    def __init__(self, config: Config, split: str):
        super().__init__()
        root = find_dir(config.root, "ADEChallengeData2016 with images/ and annotations/")
        name = split_key("datasets.ade20k", split, {"train": "training", "val": "validation"})
        image_dir = find_dir(root / "images" / name, f"the {name} images, ADE_*.jpg")
        ids = sorted(p.stem for p in image_dir.glob("*.jpg"))
        if not ids:
            raise DataError(f"{image_dir}: no images (*.jpg) found")
        images = {i: image_dir / f"{i}.jpg" for i in ids}
        labels = {i: root / "annotations" / name / f"{i}.png" for i in ids}
        self.open_split(images, labels, config, where=f"{root} ({name})")

    @classmethod
    def write_example(cls, root: Path) -> dict[str, Any]:
        """ADEChallengeData2016's layout with two ``training`` images and one ``validation``."""
        from ctxseg_datasets.fixtures import write_ade20k  # it imports this module

        return {"root": str(write_ade20k(root, {"training": 2, "validation": 1}))}

    @classmethod
    def output_formats(cls) -> dict[str, Any]:
        return {"ade20k": annotation_png}

    def read_label(self, path: Path) -> Tensor:
        return map_labels(read_index_png(path), TABLE, path, "ADE20K labels 0-150")


def annotation_png(prediction: Tensor) -> Image.Image:
    """A prediction as the benchmark's annotations are stored: a grayscale PNG of labels 1-150."""
    return Image.fromarray((prediction.cpu() + 1).to(torch.uint8).numpy(), mode="L")
