"""Each dataset read from a tiny copy of its official layout: contract, splits, label mapping, bad data."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import attrs
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from ctxseg.data import voc_palette
from ctxseg.errors import DataError
from ctxseg.testing import check_dataset
from ctxseg_datasets import ade20k, cityscapes, fixtures, pascal_context, siftflow, voc


@attrs.frozen
class Layout:
    """A generated dataset: its class, config, and how to find and rewrite a sample's files."""

    cls: type
    config: object
    image: Callable[[str], Path]
    label: Callable[[str], Path]
    write_label: Callable[[Path, np.ndarray], None]
    bad_value: int
    bad_message: str


def _png(mode: str = "L"):
    def write(path: Path, values: np.ndarray) -> None:
        image = Image.fromarray(values.astype(np.uint8), mode=mode)
        if mode == "P":  # without a full palette PNG would drop the values it has no colour for
            image.putpalette([c for colour in voc_palette(256) for c in colour])
        image.save(path)
    return write


def _mat(variable: str, field: str | None = None, dtype=np.uint16):
    def write(path: Path, values: np.ndarray) -> None:
        content = {field: values.astype(dtype)} if field else values.astype(dtype)
        scipy.io.savemat(path, {variable: content})
    return write


def _example(cls: type, tmp: Path) -> tuple[object, Path]:
    """The config of the dataset ``cls.write_example`` writes (what the contract kit checks), and its root."""
    config = cls.Config(**cls.write_example(tmp))
    return config, Path(config.root)


def voc_layout(tmp: Path) -> Layout:
    config, root = _example(voc.VOC2012, tmp)
    return Layout(voc.VOC2012, config,
                  lambda i: root / "JPEGImages" / f"{i}.jpg", lambda i: root / "SegmentationClass" / f"{i}.png",
                  _png("P"), 21, r"label values \[21\] are neither class indices in \[0, 21\) nor the ignore index 255")


def context_layout(tmp: Path) -> Layout:
    config, root = _example(pascal_context.PascalContext, tmp)
    annotations = Path(config.annotations)
    return Layout(pascal_context.PascalContext, config,
                  lambda i: root / "JPEGImages" / f"{i}.jpg", lambda i: annotations / "trainval" / f"{i}.mat",
                  _mat("LabelMap"), 999, r"label values \[999\] are not PASCAL-Context label ids \(0-459 of labels.txt\)")


def siftflow_layout(tmp: Path) -> Layout:
    config, root = _example(siftflow.SiftFlow, tmp)
    folder = siftflow.FOLDER
    return Layout(siftflow.SiftFlow, config,
                  lambda i: root / "Images" / folder / f"{i}.jpg", lambda i: root / "SemanticLabels" / folder / f"{i}.mat",
                  _mat("S", dtype=np.int16), 34, r"label values \[34\] are not SiftFlow labels 0-33")


def ade_layout(tmp: Path) -> Layout:
    config, root = _example(ade20k.ADE20K, tmp)
    split = {"ADE_train_00000001": "training", "ADE_train_00000002": "training", "ADE_val_00000001": "validation"}
    return Layout(ade20k.ADE20K, config,
                  lambda i: root / "images" / split[i] / f"{i}.jpg", lambda i: root / "annotations" / split[i] / f"{i}.png",
                  _png(), 151, r"label values \[151\] are not ADE20K labels 0-150")


def cityscapes_layout(tmp: Path) -> Layout:
    config, root = _example(cityscapes.Cityscapes, tmp)
    city = lambda i: i.split("_")[0]  # noqa: E731
    split = lambda i: "val" if city(i) == "frankfurt" else "train"  # noqa: E731
    return Layout(cityscapes.Cityscapes, config,
                  lambda i: root / "leftImg8bit" / split(i) / city(i) / f"{i}_leftImg8bit.png",
                  lambda i: root / "gtFine" / split(i) / city(i) / f"{i}_gtFine_labelIds.png",
                  _png(), 34, r"label values \[34\] are not Cityscapes labelIds 0-33")


LAYOUTS = {"voc2012": voc_layout, "pascal_context": context_layout, "siftflow": siftflow_layout,
           "ade20k": ade_layout, "cityscapes": cityscapes_layout}


@pytest.fixture(params=LAYOUTS)
def layout(request, tmp_path: Path) -> Layout:
    return LAYOUTS[request.param](tmp_path)


def test_contract(layout: Layout) -> None:
    check_dataset(layout.cls, layout.config)


def test_splits_and_names(layout: Layout) -> None:
    train, val = layout.cls(layout.config, "train"), layout.cls(layout.config, "val")
    assert len(train) == 2 and len(val) == 1
    assert not set(train.names) & set(val.names)
    for dataset in (train, val):
        for name in dataset.names:
            assert layout.image(name).is_file() and layout.label(name).is_file()


def test_unknown_split(layout: Layout) -> None:
    with pytest.raises(DataError, match=r"unknown split 'nope' \(expected one of"):
        layout.cls(layout.config, "nope")


def test_missing_root(layout: Layout, tmp_path: Path) -> None:
    config = attrs.evolve(layout.config, root=str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match=rf"^{re.escape(str(tmp_path / 'nowhere'))}: folder not found \(expected "):
        layout.cls(config, "train")


def test_unreadable_image(layout: Layout) -> None:
    dataset = layout.cls(layout.config, "train")
    path = layout.image(dataset.names[0])
    path.write_bytes(b"not an image")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: not a readable image"):
        dataset[0]


def test_size_mismatch(layout: Layout) -> None:
    dataset = layout.cls(layout.config, "train")
    path = layout.label(dataset.names[0])
    layout.write_label(path, np.ones((5, 7)))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: mask is 7x5 \(width x height\) but its image "):
        dataset[0]


def test_labels_out_of_range(layout: Layout) -> None:
    dataset = layout.cls(layout.config, "train")
    image, mask = dataset[0]
    values = np.ones(tuple(mask.shape))
    values[0, 0] = layout.bad_value
    path = layout.label(dataset.names[0])
    layout.write_label(path, values)
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: {layout.bad_message}"):
        dataset[0]


def test_skip_bad(layout: Layout) -> None:
    names = layout.cls(layout.config, "train").names
    layout.image(names[1]).write_bytes(b"not an image")
    with pytest.warns(UserWarning, match=r"skipped 1 of 2 samples with bad data \(first: .*not a readable image"):
        dataset = layout.cls(attrs.evolve(layout.config, skip_bad=True), "train")
    assert dataset.names == names[:1] and len(dataset.skipped) == 1


# --------------------------------------------------------------------------------------
# What each benchmark's labels become


def test_voc_train_aug_set_arithmetic(tmp_path: Path) -> None:
    """(SBD train | SBD val | VOC train) - VOC val; VOC's PNG wins where both have a label."""
    root = fixtures.write_voc2012(tmp_path, {"train": ["a", "b"], "val": ["c", "d"]})
    sbd = fixtures.write_sbd(tmp_path, {"train": ["b", "c", "e"], "val": ["f", "d"]})
    config = voc.VOC2012.Config(root=str(root), sbd=str(sbd))
    train = voc.VOC2012(config, "train")
    assert train.names == ["a", "b", "e", "f"]  # c, d are VOC val
    assert voc.train_aug_ids(["a", "b"], ["c", "d"], ["b", "c", "e"], ["f", "d"]) == ["a", "b", "e", "f"]
    assert train._labels[1] == root / "SegmentationClass" / "b.png"  # in both: VOC's PNG (with void borders)
    assert train._labels[2] == sbd / "dataset" / "cls" / "e.mat" and train._images[2] == sbd / "dataset" / "img" / "e.jpg"
    for index in range(len(train)):
        image, mask = train[index]
        assert mask.shape == image.shape[1:]
    assert 255 in train[1][1] and 255 not in train[2][1]  # SBD has no void border
    expected = torch.from_numpy(scipy.io.loadmat(sbd / "dataset" / "cls" / "e.mat")["GTcls"][0, 0]["Segmentation"]).long()
    assert torch.equal(train[2][1], expected)
    assert voc.VOC2012(config, "val").names == ["c", "d"]
    assert voc.VOC2012(config, "trainval").names == ["a", "b", "c", "d"]


def test_voc_train_aug_needs_sbd(tmp_path: Path) -> None:
    root = fixtures.write_voc2012(tmp_path, {"train": ["a"], "val": ["c"]})
    with pytest.raises(DataError, match="split 'train_aug' needs SBD's annotations: set sbd = "):
        voc.VOC2012(voc.VOC2012.Config(root=str(root)), "train")


def test_voc_missing_label(tmp_path: Path) -> None:
    root = fixtures.write_voc2012(tmp_path, {"train": ["a", "b"], "val": ["c"]})
    (root / "SegmentationClass" / "b.png").unlink()
    with pytest.raises(DataError, match=rf"^{re.escape(str(root / 'SegmentationClass'))}: no label file for 1 samples: b"):
        voc.VOC2012(voc.VOC2012.Config(root=str(root), train="train"), "train")


def test_context_maps_by_name_to_59_plus_background(tmp_path: Path) -> None:
    root, annotations = fixtures.write_pascal_context(tmp_path, {"train": ["x"], "val": ["y"]})
    dataset = pascal_context.PascalContext(pascal_context.PascalContext.Config(root=str(root), annotations=str(annotations)), "train")
    raw = torch.from_numpy(scipy.io.loadmat(annotations / "trainval" / "x.mat")["LabelMap"].astype(np.int64))
    mask = dataset[0][1]
    ids = {key: i + 1 for i, key in enumerate(fixtures.CONTEXT_IDS)}
    expected = raw.apply_(lambda v: ids.get(v, 0))
    assert torch.equal(mask, expected) and 255 not in mask
    assert int(mask.max()) <= 59


def test_context_labels_txt_without_a_benchmark_class(tmp_path: Path) -> None:
    root, annotations = fixtures.write_pascal_context(tmp_path, {"train": ["x"], "val": ["y"]})
    text = (annotations / "labels.txt").read_text().replace(": tvmonitor\n", ": tv\n")
    (annotations / "labels.txt").write_text(text)
    with pytest.raises(DataError, match=r"labels.txt: lacks the classes tvmonitor of the 59-class benchmark"):
        pascal_context.PascalContext(pascal_context.PascalContext.Config(root=str(root), annotations=str(annotations)), "val")


def test_siftflow_unlabelled_is_ignored(tmp_path: Path) -> None:
    layout = siftflow_layout(tmp_path)
    dataset = siftflow.SiftFlow(layout.config, "val")
    raw = torch.from_numpy(scipy.io.loadmat(layout.label("street_par177"))["S"].astype(np.int64))
    assert torch.equal(dataset[0][1], torch.where(raw == 0, 255, raw - 1))


def test_siftflow_test_list_must_match_the_images(tmp_path: Path) -> None:
    layout = siftflow_layout(tmp_path)
    with pytest.raises(DataError, match=r"siftflow_test.txt: 198 test images are not in .*: coast_bea3, "):
        siftflow.SiftFlow(attrs.evolve(layout.config, test_list=""), "val")  # the standard list, on a 4-image fixture


def test_ade_zero_is_ignored(tmp_path: Path) -> None:
    layout = ade_layout(tmp_path)
    dataset = ade20k.ADE20K(layout.config, "val")
    raw = torch.from_numpy(np.array(Image.open(layout.label("ADE_val_00000001")))).long()
    assert torch.equal(dataset[0][1], torch.where(raw == 0, 255, raw - 1))


def test_cityscapes_label_ids_to_train_ids(tmp_path: Path) -> None:
    layout = cityscapes_layout(tmp_path)
    dataset = cityscapes.Cityscapes(layout.config, "val")
    assert dataset.names == ["frankfurt_000003_000000"]
    raw = torch.from_numpy(np.array(Image.open(layout.label(dataset.names[0])))).long()
    mask = dataset[0][1]
    for train_id, label_id in enumerate(cityscapes.LABEL_IDS):
        assert (mask[raw == label_id] == train_id).all()
    unscored = ~torch.isin(raw, torch.tensor(cityscapes.LABEL_IDS))
    assert unscored.any() and (mask[unscored] == 255).all()


def test_siftflow_standard_split(tmp_path: Path) -> None:
    """With the shipped list, val is its 200 images and train every other image (2,488 of the real 2,688)."""
    standard = siftflow.standard_test_list().read_text().split()
    root = fixtures.write_siftflow(tmp_path, [*standard, "coast_arnat1", "street_a1"], size=(4, 4))
    config = siftflow.SiftFlow.Config(root=str(root))
    assert siftflow.SiftFlow(config, "val").names == sorted(standard)
    assert siftflow.SiftFlow(config, "train").names == ["coast_arnat1", "street_a1"]
