"""The plugin's registration contract, and what every dataset declares without reading data."""

from __future__ import annotations

import pytest

from ctxseg.data import voc_palette
from ctxseg.testing import check_plugin
from ctxseg_datasets import ade20k, cityscapes, pascal_context, siftflow, voc
from ctxseg_datasets.fixtures import write_pascal_context

# Written out here, not read from the code: PASCAL-Context's 59 classes of the 60-class
# benchmark (ParseNet, PSPNet), as "<id>: <name>" in the dataset's labels.txt.
PASCAL_CONTEXT_59 = {
    2: "aeroplane", 9: "bag", 18: "bed", 19: "bedclothes", 22: "bench", 23: "bicycle", 25: "bird", 31: "boat",
    33: "book", 34: "bottle", 44: "building", 45: "bus", 46: "cabinet", 59: "car", 65: "cat", 68: "ceiling",
    72: "chair", 80: "cloth", 85: "computer", 98: "cow", 104: "cup", 105: "curtain", 113: "dog", 115: "door",
    144: "fence", 158: "floor", 159: "flower", 162: "food", 187: "grass", 189: "ground", 207: "horse",
    220: "keyboard", 232: "light", 258: "motorbike", 259: "mountain", 260: "mouse", 284: "person", 295: "plate",
    296: "platform", 308: "pottedplant", 324: "road", 326: "rock", 347: "sheep", 349: "shelves", 354: "sidewalk",
    355: "sign", 360: "sky", 366: "snow", 368: "sofa", 397: "table", 415: "track", 416: "train", 420: "tree",
    424: "truck", 427: "tvmonitor", 440: "wall", 445: "water", 454: "window", 458: "wood",
}

# Cityscapes' labelId -> (name, trainId) for the 19 evaluated classes (cityscapesScripts'
# helpers/labels.py); the other 15 labelIds (0-6, 9, 10, 14-16, 18, 29, 30) are not scored.
CITYSCAPES_19 = {
    7: ("road", 0), 8: ("sidewalk", 1), 11: ("building", 2), 12: ("wall", 3), 13: ("fence", 4), 17: ("pole", 5),
    19: ("traffic light", 6), 20: ("traffic sign", 7), 21: ("vegetation", 8), 22: ("terrain", 9), 23: ("sky", 10),
    24: ("person", 11), 25: ("rider", 12), 26: ("car", 13), 27: ("truck", 14), 28: ("bus", 15), 31: ("train", 16),
    32: ("motorcycle", 17), 33: ("bicycle", 18),
}

MODULES = {"datasets.voc2012": (voc, voc.VOC2012), "datasets.pascal_context": (pascal_context, pascal_context.PascalContext),
           "datasets.siftflow": (siftflow, siftflow.SiftFlow), "datasets.ade20k": (ade20k, ade20k.ADE20K),
           "datasets.cityscapes": (cityscapes, cityscapes.Cityscapes)}


def test_plugin_contract() -> None:
    check_plugin("ctxseg_datasets.plugin", "ctxseg-datasets",
                 {("dataset", name): cls for name, (_, cls) in MODULES.items()})


@pytest.mark.parametrize(("name", "count"), [("datasets.voc2012", 21), ("datasets.pascal_context", 60),
                                             ("datasets.siftflow", 33), ("datasets.ade20k", 150),
                                             ("datasets.cityscapes", 19)])
def test_class_tables(name: str, count: int) -> None:
    module, cls = MODULES[name]
    assert len(module.CLASSES) == len(set(module.CLASSES)) == len(module.PALETTE) == count
    assert cls.class_names(None) == list(module.CLASSES)  # known without any data
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in module.PALETTE)


def test_voc_palette_is_the_devkits() -> None:
    colours = voc_palette(256)
    assert colours[:3] == [(0, 0, 0), (128, 0, 0), (0, 128, 0)]
    assert colours[15] == (192, 128, 128)  # person
    assert colours[255] == (224, 224, 192)  # void
    assert list(voc.PALETTE) == colours[:21]


def test_cityscapes_table_matches_cityscapesscripts() -> None:
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    scored = sorted((label.trainId, label.name, label.id, label.color) for label in labels.labels
                    if 0 <= label.trainId < 255)
    assert [(name, i, tuple(color)) for _, name, i, color in scored] == [
        (name, i, color) for name, i, color in zip(cityscapes.CLASSES, cityscapes.LABEL_IDS, cityscapes.PALETTE)]
    table = cityscapes.TABLE
    for label in labels.labels:
        if label.id >= 0:
            assert int(table[label.id]) == (label.trainId if 0 <= label.trainId < 255 else 255), label.name


def test_siftflow_standard_test_list() -> None:
    names = siftflow.standard_test_list().read_text().split()
    assert len(names) == len(set(names)) == 200
    categories = {"coast", "forest", "highway", "insidecity", "mountain", "opencountry", "street", "tallbuilding"}
    assert {n.split("_")[0] for n in names} == categories  # the 8 outdoor categories


def test_context_classes_are_the_published_59() -> None:
    assert len(PASCAL_CONTEXT_59) == 59
    assert pascal_context.CLASSES == ("background", *PASCAL_CONTEXT_59.values())


def test_context_mapping_of_the_published_ids() -> None:
    labels = {key: f"other-{key}" for key in range(1, 460)}
    labels.update(PASCAL_CONTEXT_59)
    table = pascal_context.context_table(labels, None)
    assert len(table) == 460 and int((table > 0).sum()) == 59
    assert [int(table[key]) for key in PASCAL_CONTEXT_59] == list(range(1, 60))
    assert int(table[0]) == 0 and int(table[1]) == 0  # unlabelled and the 400 others: background


def test_the_tests_labels_txt_has_the_published_ids(tmp_path) -> None:
    """The datasets tests read a labels.txt whose 59 benchmark classes carry their published ids."""
    _, annotations = write_pascal_context(tmp_path, {"train": ["x"], "val": ["y"]})
    labels = pascal_context.read_labels_txt(annotations / "labels.txt")
    assert len(labels) == 459 and {key: labels[key] for key in PASCAL_CONTEXT_59} == PASCAL_CONTEXT_59


def test_cityscapes_table_is_the_published_19() -> None:
    assert cityscapes.CLASSES == tuple(name for name, _ in CITYSCAPES_19.values())
    assert cityscapes.LABEL_IDS == tuple(CITYSCAPES_19)
    assert [int(cityscapes.TABLE[label_id]) for label_id in range(34)] == [
        CITYSCAPES_19[label_id][1] if label_id in CITYSCAPES_19 else 255 for label_id in range(34)]
