"""SiftFlow (Liu et al.): 2,688 outdoor scenes of 256 x 256 from LabelMe, 33 semantic classes.

Read as distributed (``SiftFlowDataset.zip``)::

    SiftFlow/Images/spatial_envelope_256x256_static_8outdoorcategories/<name>.jpg
    SiftFlow/SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/<name>.mat
                                                   variable S: 1-33 the classes, 0 unlabelled

The standard split (Liu et al.; FCN, ParseNet) tests on 200 images and trains on the
other 2,488. The 200 names ship with this package (``lists/siftflow_test.txt``, the list
FCN published); ``test_list`` points at another list if needed. Unlabelled pixels (0)
are ignored. Three classes (cow, desert, moon) never occur in the test images; mean
IoU over the classes present (ctxseg's metric) leaves them out by itself.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import attrs
from torch import Tensor

from ctxseg.data import map_labels, voc_palette
from ctxseg.errors import DataError
from ctxseg.spec import FilePath
from ctxseg_datasets._official import (
    OfficialConfig,
    OfficialDataset,
    find_dir,
    label_table,
    load_mat_labels,
    read_list,
    split_key,
)

__all__ = ["CLASSES", "PALETTE", "SiftFlow", "standard_test_list"]

CLASSES = (
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk", "desert", "door",
    "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole", "river", "road", "rock", "sand",
    "sea", "sidewalk", "sign", "sky", "staircase", "streetlight", "sun", "tree", "window",
)
PALETTE = tuple(voc_palette(len(CLASSES) + 1)[1:])  # VOC's colours from 1, as the labels count from 1
FOLDER = "spatial_envelope_256x256_static_8outdoorcategories"
# S value -> class index: 0 (unlabelled) -> ignore, 1..33 -> 0..32.
TABLE = label_table([(0, 255), *((k, k - 1) for k in range(1, len(CLASSES) + 1))], len(CLASSES) + 1)


def standard_test_list() -> Path:
    """The 200 test images of the standard split, as shipped with this package."""
    return Path(str(resources.files("ctxseg_datasets") / "lists" / "siftflow_test.txt"))


class SiftFlow(OfficialDataset):
    """SiftFlow's 33 semantic classes; train = every image not in the test list, val = the test list."""

    CLASSES, PALETTE = CLASSES, PALETTE

    @attrs.define(frozen=True, kw_only=True)
    class Config(OfficialConfig):
        """:param root: the ``SiftFlow`` folder holding ``Images`` and ``SemanticLabels``.
        :param test_list: a file of test image names, one per line; empty means the
            standard 200 (shipped with ctxseg-datasets).
        """

        test_list: FilePath = ""

    def __init__(self, config: Config, split: str):
        super().__init__()
        root = find_dir(config.root, f"SiftFlow with Images/{FOLDER} and SemanticLabels/{FOLDER}")
        name = split_key("datasets.siftflow", split, {"train": "train", "val": "test"})
        image_dir = find_dir(root / "Images" / FOLDER, "the SiftFlow images, <name>.jpg")
        every = sorted(p.stem for p in image_dir.glob("*.jpg"))
        list_path = Path(config.test_list).expanduser() if config.test_list else standard_test_list()
        test = read_list(list_path)
        unknown = sorted(set(test) - set(every))
        if unknown:
            raise DataError(f"{list_path}: {len(unknown)} test images are not in {image_dir}: "
                            f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}")
        ids = sorted(test) if name == "test" else sorted(set(every) - set(test))
        images = {i: image_dir / f"{i}.jpg" for i in ids}
        labels = {i: root / "SemanticLabels" / FOLDER / f"{i}.mat" for i in ids}
        self.open_split(images, labels, config, where=f"{root} ({name})")

    @classmethod
    def write_example(cls, root: Path) -> dict[str, Any]:
        """SiftFlow's layout with three images, one of them in the test list ``root/test.txt`` (``val``)."""
        from ctxseg_datasets.fixtures import write_siftflow  # it imports this module

        base = write_siftflow(root, ["coast_arnat59", "coast_bea1", "street_par177"])
        (root / "test.txt").write_text("street_par177\n")
        return {"root": str(base), "test_list": str(root / "test.txt")}

    def read_label(self, path: Path) -> Tensor:
        return map_labels(load_mat_labels(path, "S"), TABLE, path, "SiftFlow labels 0-33")
