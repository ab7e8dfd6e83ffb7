"""The folder dataset format: round trip, and a clear DataError for every kind of bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from ctxseg.data.folder import FolderDataset, write_classes, write_sample
from ctxseg.errors import DataError

CLASSES = ["sky", "sea", "boat"]
PALETTE = [(0, 0, 255), (0, 128, 255), (255, 128, 0)]


def _sample(h: int = 3, w: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8)
    mask = torch.randint(0, len(CLASSES), (h, w), generator=g)
    return image, mask


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A valid dataset: two training samples (one with ignore pixels), one validation sample."""
    write_classes(tmp_path, CLASSES, PALETTE)
    for split, stem, seed in (("train", "b", 0), ("train", "a", 1), ("val", "c", 2)):
        image, mask = _sample(seed=seed)
        if stem == "a":
            mask[0, :2] = 255
        write_sample(tmp_path, split, stem, image, mask, PALETTE)
    return tmp_path


def _e(path: Path) -> str:
    """``path`` as a regular expression."""
    return re.escape(str(path))


def _open(root: Path, split: str = "train") -> FolderDataset:
    return FolderDataset(FolderDataset.Config(root=str(root)), split)


def test_round_trip(tmp_path: Path) -> None:
    write_classes(tmp_path, CLASSES, PALETTE, ignore_index=200)
    samples = {stem: _sample(seed=i) for i, stem in enumerate(["z", "m", "a"])}
    samples["m"][1][1, 1] = 200
    for stem, (image, mask) in samples.items():
        write_sample(tmp_path, "train", stem, image, mask, PALETTE, ignore_index=200)
    dataset = _open(tmp_path)
    assert dataset.classes == CLASSES
    assert dataset.palette == PALETTE
    assert dataset.ignore_index == 200
    assert dataset.names == ["a", "m", "z"]
    assert len(dataset) == 3
    assert FolderDataset.class_names(FolderDataset.Config(root=str(tmp_path))) == CLASSES
    for index, stem in enumerate(dataset.names):
        image, mask = dataset[index]
        assert image.dtype == torch.uint8 and mask.dtype == torch.int64
        assert torch.equal(image, samples[stem][0])
        assert torch.equal(mask, samples[stem][1])


def test_jpeg_and_grey_images_are_read_as_rgb(root: Path) -> None:
    Image.new("L", (4, 3), 77).save(root / "val" / "images" / "c.png")
    (root / "train" / "images" / "a.png").unlink()
    Image.new("RGB", (4, 3), (10, 200, 30)).save(root / "train" / "images" / "a.JPG")
    assert _open(root, "val")[0][0].unique().tolist() == [77]
    image, _ = _open(root)[0]
    assert image.shape == (3, 3, 4)
    assert abs(image[1].float().mean().item() - 200) < 4


def test_mask_is_a_palette_png(root: Path) -> None:
    with Image.open(root / "train" / "masks" / "a.png") as mask:
        assert mask.format == "PNG" and mask.mode == "P"
        assert mask.getpalette()[: 3 * len(PALETTE)] == [c for color in PALETTE for c in color]
        assert mask.getpixel((0, 0)) == 255


def test_an_L_mode_mask_is_accepted(root: Path) -> None:
    Image.new("L", (4, 3), 2).save(root / "train" / "masks" / "a.png")
    assert _open(root)[0][1].unique().tolist() == [2]


def test_writes_leave_no_temporary_files(root: Path) -> None:
    assert not [p for p in root.rglob(".*")]


# --------------------------------------------------------------------------------------
# Errors found at construction: layout, classes.json, pairing


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=rf"^{_e(tmp_path / 'nowhere')}: dataset folder not found"):
        _open(tmp_path / "nowhere")


def test_missing_classes_json(root: Path) -> None:
    (root / "classes.json").unlink()
    with pytest.raises(DataError, match=rf"^{_e(root / 'classes.json')}: not found"):
        _open(root)
    with pytest.raises(DataError, match="classes.json: not found"):
        FolderDataset.class_names(FolderDataset.Config(root=str(root)))


def test_missing_split(root: Path) -> None:
    with pytest.raises(DataError, match=rf"^{_e(root / 'test')}: split folder not found "
                                        r"\(splits present: train, val\)"):
        _open(root, "test")


def test_missing_masks_folder(root: Path) -> None:
    for path in (root / "val" / "masks").iterdir():
        path.unlink()
    (root / "val" / "masks").rmdir()
    with pytest.raises(DataError, match=rf"^{_e(root / 'val' / 'masks')}: folder not found"):
        _open(root, "val")


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "cannot read JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"ignore_index": 255}', "'classes' must be a non-empty list"),
    ('{"classes": []}', "'classes' must be a non-empty list"),
    ('{"classes": [{"name": "sky", "color": [0, 0, 255]}, {"color": [1, 2, 3]}]}',
     r"'classes\[1\].name' must be a non-empty string, got None"),
    ('{"classes": [{"name": "sky", "color": [0, 0, 255]}, {"name": "sky", "color": [1, 2, 3]}]}',
     r"'classes\[1\].name' repeats the class name 'sky'"),
    ('{"classes": [{"name": "sky", "color": [0, 0]}]}', r"'classes\[0\].color' must be \[r, g, b\]"),
    ('{"classes": [{"name": "sky", "color": [0, 0, 256]}]}', r"'classes\[0\].color' must be \[r, g, b\]"),
    ('{"classes": [{"name": "sky", "color": [0, 0, 9]}, {"name": "sea", "color": [1, 2, 3]}], "ignore_index": 1}',
     r"'ignore_index' must be an integer in \[2, 255\] \(8-bit masks, not a class index\), got 1"),
    ('{"classes": [{"name": "sky", "color": [0, 0, 9]}], "ignore_index": "255"}',
     "'ignore_index' must be an integer"),
])
def test_malformed_classes_json(root: Path, content: str, message: str) -> None:
    (root / "classes.json").write_text(content)
    with pytest.raises(DataError, match=rf"^{_e(root / 'classes.json')}: {message}"):
        _open(root)


def test_ignore_index_defaults_to_255(root: Path) -> None:
    content = json.loads((root / "classes.json").read_text())
    del content["ignore_index"]
    (root / "classes.json").write_text(json.dumps(content))
    assert _open(root).ignore_index == 255


def test_image_without_mask(root: Path) -> None:
    (root / "train" / "masks" / "a.png").unlink()
    with pytest.raises(DataError, match=rf"^{_e(root / 'train')}: images without a mask: a "
                                        r"\(expected masks/<stem>.png"):
        _open(root)


def test_mask_without_image(root: Path) -> None:
    (root / "train" / "images" / "b.png").unlink()
    image, mask = _sample()
    write_sample(root, "spare", "x", image, mask, PALETTE)
    (root / "spare" / "masks" / "x.png").rename(root / "train" / "masks" / "x.png")
    with pytest.raises(DataError, match=rf"^{_e(root / 'train')}: masks without an image: b, x \(expected images/"):
        _open(root)


def test_two_images_with_one_stem(root: Path) -> None:
    Image.new("RGB", (4, 3)).save(root / "train" / "images" / "a.jpg")
    with pytest.raises(DataError, match=rf"^{_e(root / 'train' / 'images')}: two files for the sample 'a': "
                                        r"a.jpg and a.png"):
        _open(root)


def test_empty_split(root: Path) -> None:
    for folder in ("images", "masks"):
        (root / "val" / folder / "c.png").unlink()
    with pytest.raises(DataError, match=rf"^{_e(root / 'val' / 'images')}: no images \(.png, .jpg, .jpeg\) found"):
        _open(root, "val")


# --------------------------------------------------------------------------------------
# Errors found when a sample is loaded: content


def test_unreadable_image(root: Path) -> None:
    (root / "train" / "images" / "b.png").write_bytes(b"not a png")
    dataset = _open(root)
    dataset[0]
    with pytest.raises(DataError, match=rf"^{_e(root / 'train' / 'images' / 'b.png')}: not a readable image"):
        dataset[1]


def test_truncated_mask(root: Path) -> None:
    path = root / "train" / "masks" / "a.png"
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=rf"^{_e(path)}: cannot read mask"):
        _open(root)[0]


@pytest.mark.parametrize("mode", ["RGB", "I;16"])
def test_mask_that_is_not_8_bit_indices(root: Path, mode: str) -> None:
    path = root / "train" / "masks" / "a.png"
    Image.new(mode, (4, 3)).save(path)
    with pytest.raises(DataError, match=rf"^{_e(path)}: expected an 8-bit single-channel PNG of class indices "
                                        rf"\(mode 'P' or 'L'\), got a PNG image in mode '{mode}'"):
        _open(root)[0]


def test_size_mismatch(root: Path) -> None:
    image, mask = _sample(h=5, w=6)
    write_sample(root, "spare", "a", image, mask, PALETTE)
    (root / "spare" / "masks" / "a.png").replace(root / "train" / "masks" / "a.png")
    with pytest.raises(DataError, match=rf"^{_e(root / 'train' / 'masks' / 'a.png')}: mask is 6x5 \(width x height\) "
                                        rf"but its image {_e(root / 'train' / 'images' / 'a.png')} is 4x3"):
        _open(root)[0]


def test_labels_out_of_range(root: Path) -> None:
    image, mask = _sample()
    mask[0, 0], mask[1, 1], mask[2, 2] = 7, 9, 255
    write_sample(root, "train", "a", image, mask, PALETTE)
    with pytest.raises(DataError, match=rf"^{_e(root / 'train' / 'masks' / 'a.png')}: label values \[7, 9\] "
                                        r"are neither class indices in \[0, 3\) nor the ignore index 255"):
        _open(root)[0]


def test_write_sample_rejects_bad_tensors(tmp_path: Path) -> None:
    image, mask = _sample()
    with pytest.raises(ValueError, match="uint8"):
        write_sample(tmp_path, "train", "a", image.float(), mask, PALETTE)
    with pytest.raises(ValueError, match="does not match"):
        write_sample(tmp_path, "train", "a", image, mask[:2], PALETTE)
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        write_sample(tmp_path, "train", "a", image, mask - 1, PALETTE)


def test_files_are_written_by_the_atomic_writer_which_clears_an_interrupted_write(root: Path) -> None:
    stale = root / "train" / "masks" / ".a.png.x1y2.tmp"  # what a killed write of masks/a.png leaves
    stale.mkdir()
    with pytest.warns(UserWarning, match=f"removed {re.escape(str(stale))}, left by an interrupted write of a.png"):
        write_sample(root, "train", "a", *_sample(), PALETTE)
    assert not stale.exists() and not [p for p in root.rglob("*") if p.name.startswith(".")]


def test_skip_bad_leaves_out_and_counts_bad_samples(root: Path) -> None:
    (root / "train" / "images" / "b.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning, match=rf"^{_e(root / 'train')}: skipped 1 of 2 samples with bad data "
                                         rf"\(first: {_e(root / 'train' / 'images' / 'b.png')}: not a readable"):
        dataset = FolderDataset(FolderDataset.Config(root=str(root), skip_bad=True), "train")
    assert dataset.names == ["a"] and len(dataset.skipped) == 1
    dataset[0]


def test_skip_bad_with_nothing_left(root: Path) -> None:
    (root / "val" / "images" / "c.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=rf"^{_e(root / 'val')}: every one of the 1 samples has bad data"):
        FolderDataset(FolderDataset.Config(root=str(root), skip_bad=True), "val")
