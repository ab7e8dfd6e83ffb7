"""Context scenes: the embedded default dataset, procedurally generated, where context decides.

Boats and cars are drawn from one and the same appearance distribution (shape, size,
colours, texture), so nothing inside an object tells them apart: only context does
(:data:`CONTEXT_PAIRS`). Two versions exist; ``version`` picks one.

* Version 2 (the default, :mod:`ctxseg.data.scenes_v2`): each image is a harbour or a
  city, and the only evidence of which lies in one band, up to most of the image away
  from the objects and from the plank deck they stand on (itself labelled water or
  road). Image-level context (ParseNet, PSPNet) and larger windows (the dilation
  module, GCN) pay here; birds and a rare kite are the small and rare classes.
* Version 1 (:mod:`ctxseg.data.scenes_v1`): water and road in every image, a neutral
  ring around each vehicle. Kept so that runs on it stay reproducible.

The dataset is written on first use in the folder format of :mod:`ctxseg.data.folder`
and then read from disk. Generation is seeded per image (:func:`sample_seed`), so an
image does not depend on the split sizes, and is bit-identical for a seed on a given
torch version. It is written to a temporary folder that is renamed into place when
complete, so an interrupted generation never leaves a half dataset behind.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import attrs

from ctxseg.data import scenes_v1, scenes_v2
from ctxseg.data.folder import FolderDataset, write_classes, write_sample
from ctxseg.data.scene_art import CLASSES, PALETTE
from ctxseg.errors import DataError
from ctxseg.spec import FolderPath
from ctxseg.threads import one_thread

__all__ = ["CLASSES", "CONTEXT_PAIRS", "PALETTE", "VERSIONS",
           "ContextScenes", "dataset_dir", "ensure_generated", "sample_seed"]

log = logging.getLogger(__name__)

VERSIONS = (1, 2)
CONTEXT_PAIRS = (("water", "road"), ("boat", "car"))
"""The classes that look alike where only context tells them apart (version 2: the deck
is water or road, a vehicle a boat or a car, by the scene of the image)."""
MAX_SPLIT_SIZE = 500_000
_SPLIT_OFFSET = {"train": 0, "val": MAX_SPLIT_SIZE + 1}


def sample_seed(seed: int, split: str, index: int) -> int:
    """The generator seed of image ``index`` of ``split``: independent of the split sizes."""
    return seed * 1_000_003 + _SPLIT_OFFSET[split] + index


def _cache_dir() -> Path:
    return Path(os.environ.get("CTXSEG_DATA_DIR") or Path.home() / ".cache" / "ctxseg")


def _check_margin(instance: Any, attribute: attrs.Attribute, value: int | None) -> None:
    if value is None:
        return
    if instance.version != 1:
        raise ValueError(f"'margin' is a parameter of version 1 only (its ring around boats and cars), "
                         f"this is version {instance.version}")
    limit = scenes_v1.max_margin(instance.image_size)
    if not isinstance(value, int) or not 0 <= value <= limit:
        raise ValueError(f"'margin' must be an integer in [0, {limit}] for image_size {instance.image_size} "
                         f"(the water and road bands must hold a vehicle and its ring), got {value!r}")


def _check_image_size(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 48 or value % 16:
        raise ValueError(f"'image_size' must be a multiple of 16 and >= 48, got {value}")


_split_size = [attrs.validators.instance_of(int), attrs.validators.ge(1),
               attrs.validators.le(MAX_SPLIT_SIZE)]


class ContextScenes(FolderDataset):
    """The context-scenes dataset, generated on first use, then read as a folder dataset."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        """Generation parameters; images and masks are ``image_size`` x ``image_size``.

        :param root: where the dataset lives; empty means a folder named after the
            parameters in ``$CTXSEG_DATA_DIR``, by default ``~/.cache/ctxseg``.
        :param seed: generation seed (images differ across seeds).
        :param image_size: side in pixels; every size scales with it except ``margin``.
        :param train_size: number of training images.
        :param val_size: number of validation images.
        :param version: which scenes: 2 (the default) or 1, see the module.
        :param margin: version 1 only: width in pixels of the neutral ring around boats
            and cars (default 4).
        """

        root: FolderPath = attrs.field(default="", validator=attrs.validators.instance_of(str))
        seed: int = attrs.field(default=0, validator=[attrs.validators.instance_of(int),
                                                       attrs.validators.ge(0)])
        image_size: int = attrs.field(default=64, validator=[attrs.validators.instance_of(int),
                                                              _check_image_size])
        train_size: int = attrs.field(default=400, validator=_split_size)
        val_size: int = attrs.field(default=100, validator=_split_size)
        version: int = attrs.field(default=2, validator=attrs.validators.in_(VERSIONS))
        margin: int | None = attrs.field(default=None, validator=_check_margin)

    def __init__(self, config: Config, split: str):
        if split not in _SPLIT_OFFSET:
            raise DataError(f"context scenes: unknown split {split!r} (expected 'train' or 'val')")
        self.config = config
        super().__init__(FolderDataset.Config(root=str(ensure_generated(config))), split)

    @classmethod
    def class_names(cls, config: Config) -> list[str]:
        """The eight classes, without generating anything."""
        return list(CLASSES)

    @classmethod
    def data_dir(cls, config: Config) -> Path:
        """The folder the scenes are generated in, then read from (:func:`dataset_dir`)."""
        return dataset_dir(config)


def dataset_dir(config: ContextScenes.Config) -> Path:
    """Where the dataset of ``config`` lives (``config.root``, or a folder in the cache)."""
    if config.root:
        return Path(config.root).expanduser()
    ring = f"-m{_margin(config)}" if config.version == 1 else ""
    return _cache_dir() / (f"context-scenes-v{config.version}-s{config.seed}-{config.image_size}px"
                           f"{ring}-{config.train_size}-{config.val_size}")


def _margin(config: ContextScenes.Config) -> int:
    """Version 1's ring width, its default filled in."""
    return scenes_v1.DEFAULT_MARGIN if config.margin is None else config.margin


def _params(config: ContextScenes.Config) -> dict[str, Any]:
    """What makes the dataset what it is, as recorded in its context_scenes.json."""
    params = attrs.asdict(config, filter=lambda a, _: a.name not in ("root", "margin"))
    if config.version == 1:
        params["margin"] = _margin(config)
    return params


def ensure_generated(config: ContextScenes.Config) -> Path:
    """Generate the dataset of ``config`` unless it is already there; return its folder."""
    target = dataset_dir(config)
    params = _params(config)
    if (target / "classes.json").is_file():
        _check_params(target, params)
        return target
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(f"{target}: exists but is not a complete context-scenes dataset "
                        "(no classes.json); delete it to regenerate, or choose another root")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    tmp.mkdir()
    try:
        start = time.perf_counter()
        _generate(tmp, config, params)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / "classes.json").is_file():  # not a concurrent generation: a real error
                raise
        log.info("generated context scenes in %s (%.1f s)", target, time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _check_params(target, params)
    return target


def _generate(root: Path, config: ContextScenes.Config, params: dict[str, Any]) -> None:
    """Write every sample, the parameters, then classes.json (the completeness marker)."""
    with one_thread():
        _write_samples(root, config)
    (root / "context_scenes.json").write_text(json.dumps(params, indent=2) + "\n")
    write_classes(root, CLASSES, PALETTE)


def _write_samples(root: Path, config: ContextScenes.Config) -> None:
    """Render and write both splits."""
    for split, size in (("train", config.train_size), ("val", config.val_size)):
        for index in range(size):
            seed = sample_seed(config.seed, split, index)
            if config.version == 1:
                image, mask = scenes_v1.render_scene(seed, config.image_size, _margin(config))
            else:
                image, mask, _, _ = scenes_v2.render_scene(seed, config.image_size)
            write_sample(root, split, f"{index:06d}", image, mask, PALETTE)


def _check_params(root: Path, params: dict[str, Any]) -> None:
    """The dataset in ``root`` was generated with ``params``."""
    path = root / "context_scenes.json"
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        raise DataError(f"{path}: missing or unreadable, so {root} is not a context-scenes "
                        "dataset; choose another root") from None
    if found != params:
        diff = ", ".join(f"{k}={found.get(k)!r} (wanted {v!r})" for k, v in params.items()
                         if found.get(k) != v)
        raise DataError(f"{path}: the dataset was generated with other parameters: {diff}; "
                        "delete it to regenerate, or choose another root")
