"""Small datasets written in each benchmark's official layout and file formats.

Nothing can be downloaded where ctxseg is tested, so its tests (and the data-pipeline
benchmark, at realistic sizes) generate datasets laid out exactly as distributed:
the same folders, names, image formats, PNG modes and MATLAB structs. Content is
learnable on purpose: each class has its own colour, so a model trained for a few
steps makes predictions worth evaluating.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image
from torch import Tensor

from ctxseg.data import voc_palette
from ctxseg_datasets import ade20k, cityscapes, pascal_context, siftflow, voc

__all__ = ["CONTEXT_IDS", "scene", "write_ade20k", "write_cityscapes", "write_pascal_context", "write_sbd",
           "write_siftflow", "write_voc2012"]

# PASCAL-Context's full-label ids of the 59 classes (the published 59-class mapping),
# in the order of pascal_context.CLASSES[1:].
CONTEXT_IDS = (2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115,
               144, 158, 159, 162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349,
               354, 355, 360, 366, 368, 397, 415, 416, 420, 424, 427, 440, 445, 454, 458)
CONTEXT_FULL_CLASSES = 459


def scene(seed: int, size: tuple[int, int], num_classes: int, block: int = 4) -> tuple[Tensor, Tensor]:
    """An image ``(3, H, W)`` uint8 and its labels ``(H, W)`` int64: blocks of classes, one colour each.

    Colours are a fixed function of the class (the same in every image), plus noise.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = size
    grid = torch.randint(0, num_classes, (-(-h // block), -(-w // block)), generator=g)
    labels = grid.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w].contiguous()
    colours = torch.randint(30, 226, (num_classes, 3), generator=torch.Generator().manual_seed(12345))
    image = colours[labels].permute(2, 0, 1).float() + 8 * torch.randn(3, h, w, generator=g)
    return image.round().clamp(0, 255).to(torch.uint8), labels


def _save(image: Image.Image, path: Path, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)


def _rgb(image: Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def _palette_png(values: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> Image.Image:
    image = Image.fromarray(values.astype(np.uint8), mode="P")
    image.putpalette([c for color in palette for c in color])
    return image


def write_voc2012(root: Path, splits: Mapping[str, Sequence[str]], size: tuple[int, int] = (24, 32),
                  seed: int = 0, block: int = 4) -> Path:
    """``root/VOCdevkit/VOC2012``: JPEGImages, SegmentationClass (palette PNG, 255 borders), ImageSets.

    ``splits`` maps list names (train, val) to image ids; trainval is their union.
    """
    base = Path(root) / "VOCdevkit" / "VOC2012"
    ids = sorted({i for names in splits.values() for i in names})
    for n, image_id in enumerate(ids):
        image, labels = scene(seed * 100_003 + n, size, len(voc.CLASSES), block)
        borders = torch.zeros_like(labels, dtype=torch.bool)  # VOC's void outline around objects
        borders[:, 1:] |= labels[:, 1:] != labels[:, :-1]
        _save(_rgb(image), base / "JPEGImages" / f"{image_id}.jpg", quality=95)
        values = torch.where(borders, 255, labels).numpy()
        _save(_palette_png(values, voc_palette(256)), base / "SegmentationClass" / f"{image_id}.png")
    lists = base / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    for name, names in {**splits, "trainval": sorted(set().union(*splits.values()))}.items():
        (lists / f"{name}.txt").write_text("".join(f"{i}\n" for i in names))
    return base


def write_sbd(root: Path, splits: Mapping[str, Sequence[str]], size: tuple[int, int] = (24, 32),
              seed: int = 1) -> Path:
    """``root/benchmark_RELEASE``: dataset/img/*.jpg, dataset/cls/*.mat (struct GTcls), train/val lists."""
    base = Path(root) / "benchmark_RELEASE"
    dataset = base / "dataset"
    ids = sorted({i for names in splits.values() for i in names})
    for n, image_id in enumerate(ids):
        image, labels = scene(seed * 100_003 + n, size, len(voc.CLASSES))
        _save(_rgb(image), dataset / "img" / f"{image_id}.jpg", quality=95)
        segmentation = labels.numpy().astype(np.uint8)
        present = np.unique(segmentation[segmentation > 0]).astype(np.uint8)
        (dataset / "cls").mkdir(parents=True, exist_ok=True)
        boundaries = np.empty((20, 1), dtype=object)  # a cell of per-class boundary maps (left empty)
        boundaries[:, 0] = [np.zeros((0, 0), dtype=np.uint8)] * 20
        scipy.io.savemat(dataset / "cls" / f"{image_id}.mat", {"GTcls": {
            "Segmentation": segmentation, "Boundaries": boundaries, "CategoriesPresent": present}})
    for name, names in splits.items():
        (dataset / f"{name}.txt").write_text("".join(f"{i}\n" for i in names))
    return base


def write_pascal_context(root: Path, splits: Mapping[str, Sequence[str]], size: tuple[int, int] = (24, 32),
                         seed: int = 0) -> tuple[Path, Path]:
    """``root/VOCdevkit/VOC2010`` (JPEGImages, ImageSets/Main) and ``root/context`` (trainval/*.mat, labels.txt).

    ``labels.txt`` lists 459 ids; the 59 benchmark classes carry their real ids and
    names, the 400 others placeholder names. Background pixels are labelled 0 or
    one of the 400 others, which the loader must both map to background.
    """
    voc2010 = Path(root) / "VOCdevkit" / "VOC2010"
    context = Path(root) / "context"
    names = {key: f"other-{key}" for key in range(1, CONTEXT_FULL_CLASSES + 1)}
    names.update(zip(CONTEXT_IDS, pascal_context.CLASSES[1:]))
    context.mkdir(parents=True, exist_ok=True)
    (context / "labels.txt").write_text("".join(f"{key}: {name}\n" for key, name in names.items()))
    full_ids = torch.tensor((0, *CONTEXT_IDS))
    others = torch.tensor([0, 1, 3, 100, 459])
    ids = sorted({i for names in splits.values() for i in names})
    for n, image_id in enumerate(ids):
        image, labels = scene(seed * 100_003 + n, size, len(pascal_context.CLASSES))
        label_map = full_ids[labels]
        background = labels == 0
        label_map[background] = others[torch.arange(int(background.sum())) % len(others)]
        _save(_rgb(image), voc2010 / "JPEGImages" / f"{image_id}.jpg", quality=95)
        (context / "trainval").mkdir(exist_ok=True)
        scipy.io.savemat(context / "trainval" / f"{image_id}.mat", {"LabelMap": label_map.numpy().astype(np.uint16)})
    lists = voc2010 / "ImageSets" / "Main"
    lists.mkdir(parents=True, exist_ok=True)
    for name, names_ in splits.items():
        (lists / f"{name}.txt").write_text("".join(f"{i}\n" for i in names_))
    return voc2010, context


def write_siftflow(root: Path, names: Sequence[str], size: tuple[int, int] = (16, 16), seed: int = 0) -> Path:
    """``root/SiftFlow``: Images/<folder>/*.jpg and SemanticLabels/<folder>/*.mat (S: 0 unlabelled, 1-33)."""
    base = Path(root) / "SiftFlow"
    for n, name in enumerate(names):
        image, labels = scene(seed * 100_003 + n, size, len(siftflow.CLASSES) + 1)  # class 0: unlabelled
        _save(_rgb(image), base / "Images" / siftflow.FOLDER / f"{name}.jpg", quality=95)
        (base / "SemanticLabels" / siftflow.FOLDER).mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(base / "SemanticLabels" / siftflow.FOLDER / f"{name}.mat",
                         {"S": labels.numpy().astype(np.int16)})
    return base


def write_ade20k(root: Path, counts: Mapping[str, int], size: tuple[int, int] = (24, 32), seed: int = 0) -> Path:
    """``root/ADEChallengeData2016``: images/<split>/ADE_*.jpg, annotations/<split>/ADE_*.png (L, 0-150).

    ``counts`` maps ``training`` / ``validation`` to a number of images.
    """
    base = Path(root) / "ADEChallengeData2016"
    for split, count in counts.items():
        short = {"training": "train", "validation": "val"}[split]
        for n in range(count):
            image, labels = scene(seed * 100_003 + n + (0 if split == "training" else 50_000), size,
                                  len(ade20k.CLASSES) + 1)  # class 0: "other", not scored
            stem = f"ADE_{short}_{n + 1:08d}"
            _save(_rgb(image), base / "images" / split / f"{stem}.jpg", quality=95)
            _save(Image.fromarray(labels.numpy().astype(np.uint8), mode="L"),
                  base / "annotations" / split / f"{stem}.png")
    return base


def write_cityscapes(root: Path, cities: Mapping[str, Mapping[str, int]], size: tuple[int, int] = (16, 32),
                     seed: int = 0, block: int = 4) -> Path:
    """``root``: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
    ``gtFine/<split>/<city>/*_gtFine_{labelIds,instanceIds,color}.png``.

    ``cities`` maps a split to ``{city: number of images}``. Labels use the 19 scored
    labelIds and, for about one block in 20, labelIds the benchmark ignores.
    """
    base = Path(root)
    label_ids = torch.tensor(cityscapes.LABEL_IDS)
    ignored = torch.tensor([i for i in range(cityscapes.NUM_LABEL_IDS) if i not in cityscapes.LABEL_IDS])
    n = 0
    for split, counts in cities.items():
        for city, count in counts.items():
            for frame in range(count):
                image, labels = scene(seed * 100_003 + n, size, len(cityscapes.CLASSES) + 1, block)
                n += 1
                ids = label_ids[labels.clamp(max=len(label_ids) - 1)]
                unscored = labels == len(label_ids)  # the extra class: an ignored labelId
                ids[unscored] = ignored[torch.arange(int(unscored.sum())) % len(ignored)]
                stem = f"{city}_{n:06d}_{frame * 19:06d}"
                _save(_rgb(image), base / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
                gt = base / "gtFine" / split / city
                _save(Image.fromarray(ids.numpy().astype(np.uint8), mode="L"), gt / f"{stem}_gtFine_labelIds.png")
                # 16-bit instanceIds, stuff only: equal to labelIds where no instance is marked.
                _save(Image.fromarray(ids.numpy().astype(np.uint16)), gt / f"{stem}_gtFine_instanceIds.png")
                colours = torch.zeros(256, 3, dtype=torch.uint8)
                colours[label_ids] = torch.tensor(cityscapes.PALETTE, dtype=torch.uint8)
                _save(_rgb(colours[ids].permute(2, 0, 1)), gt / f"{stem}_gtFine_color.png")
    return base
