"""The plugin's registration contract, and what every dataset declares without reading data."""

from __future__ import annotations

import pytest

from ctxseg.testing import check_plugin
from ctxseg_datasets import ade20k, cityscapes, pascal_context, siftflow, voc
from ctxseg_datasets._official import voc_colormap

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


def test_voc_colormap_is_the_devkits() -> None:
    colours = voc_colormap(256)
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


def test_context_mapping_of_the_published_ids() -> None:
    from ctxseg_datasets.fixtures import CONTEXT_IDS

    labels = {key: f"other-{key}" for key in range(1, 460)}
    labels.update(zip(CONTEXT_IDS, pascal_context.CLASSES[1:]))
    table = pascal_context.context_table(labels, None)
    assert len(table) == 460 and int((table > 0).sum()) == 59
    assert [int(table[key]) for key in CONTEXT_IDS] == list(range(1, 60))
    assert int(table[0]) == 0 and int(table[1]) == 0  # unlabelled and the 400 others: background
