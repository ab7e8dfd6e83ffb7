"""What the official-layout datasets share: split lists, MATLAB label files, lookup tables.

Every error is a :class:`~ctxseg.errors.DataError` that names the file or folder and
what the official layout has there, so a wrong ``root`` says where it looked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import scipy.io
import torch
from torch import Tensor

from ctxseg.data import FileDataset
from ctxseg.errors import DataError
from ctxseg.spec import FolderPath

__all__ = ["OfficialConfig", "OfficialDataset", "find_dir", "label_table", "load_mat_labels", "read_list",
           "require_files", "split_key"]


@attrs.define(frozen=True, kw_only=True)
class OfficialConfig:
    """The keys of every official-layout dataset; each dataset's ``Config`` adds its own.

    :param root: the dataset's folder as unpacked from its archive (each dataset says which).
    :param skip_bad: check every sample when opening a split and leave out (and count)
        those with bad data instead of stopping at the first one.
    """

    root: FolderPath = attrs.field(validator=[attrs.validators.instance_of(str), attrs.validators.min_len(1)])
    skip_bad: bool = False


class OfficialDataset(FileDataset):
    """A benchmark in its official layout: a fixed class table, samples found in its folders."""

    CLASSES: ClassVar[tuple[str, ...]]
    PALETTE: ClassVar[tuple[tuple[int, int, int], ...]]

    def __init__(self) -> None:
        self.classes, self.palette = list(self.CLASSES), list(self.PALETTE)

    @classmethod
    def class_names(cls, config: Any) -> list[str]:
        """The benchmark's classes, known without any data."""
        return list(cls.CLASSES)

    def open_split(self, images: Mapping[str, Path], labels: Mapping[str, Path], config: OfficialConfig,
                   where: str) -> None:
        """Check that each sample's image and label file exist, then record them in ``images``' order."""
        require_files(images, "image")
        require_files(labels, "label file")
        ids = list(images)
        self.set_samples(ids, [images[i] for i in ids], [labels[i] for i in ids], skip_bad=config.skip_bad, where=where)


def find_dir(path: str | Path, expected: str) -> Path:
    """``path`` (``~`` expanded) if it is a folder, else a DataError saying what should be there."""
    folder = Path(path).expanduser()
    if not str(path) or not folder.is_dir():
        raise DataError(f"{folder}: folder not found (expected {expected})")
    return folder


def split_key(dataset: str, split: str, splits: Mapping[str, str]) -> str:
    """The on-disk name of ``split`` ("train", "val", or one of ``splits``' values passed as is)."""
    if split in splits:
        return splits[split]
    if split in splits.values():
        return split
    known = ", ".join(sorted(set(splits) | set(splits.values())))
    raise DataError(f"{dataset}: unknown split {split!r} (expected one of {known})")


def read_list(path: Path) -> list[str]:
    """The names in a split list, one per line (blank lines and surrounding spaces ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: split list not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read split list ({e})") from None
    names = [line.split()[0] for line in text.splitlines() if line.strip()]
    if not names:
        raise DataError(f"{path}: split list is empty")
    return names


def require_files(paths: Mapping[str, Path], what: str) -> None:
    """DataError listing the samples (up to 10) whose ``what`` file is missing."""
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        first = paths[missing[0]]
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise DataError(f"{first.parent}: no {what} for {len(missing)} samples: "
                        f"{', '.join(missing[:10])}{more} (expected e.g. {first})")


def load_mat_labels(path: Path, variable: str, field: str | None = None) -> Tensor:
    """A 2-D label matrix from a MATLAB file: ``variable``, or ``field`` of the struct ``variable``.

    SBD stores ``GTcls.Segmentation``, PASCAL-Context ``LabelMap``, SiftFlow ``S``.
    """
    where = f"{variable}.{field}" if field else variable
    try:
        content = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False, variable_names=[variable])
    except FileNotFoundError:
        raise DataError(f"{path}: no such label file") from None
    except (OSError, ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as e:
        raise DataError(f"{path}: cannot read MATLAB file ({e})") from None
    if variable not in content:
        raise DataError(f"{path}: no variable {variable!r} (expected the label matrix {where})")
    value = content[variable]
    if field is not None:
        value = getattr(value, field, None)
        if value is None:
            raise DataError(f"{path}: {variable!r} has no field {field!r} (expected the label matrix {where})")
    array = np.asarray(value)
    integral = array.dtype.kind in "iu" or (array.dtype.kind == "f" and np.all(array == np.round(array)))
    if array.ndim != 2 or not integral:
        raise DataError(f"{path}: {where} must be a 2-D matrix of integer labels, "
                        f"got shape {array.shape} of {array.dtype}")
    return torch.from_numpy(array.astype(np.int64))


def label_table(pairs: Iterable[tuple[int, int]], size: int) -> Tensor:
    """A lookup table raw value -> class index for :func:`ctxseg.data.samples.map_labels`.

    Values not in ``pairs`` map to -1, which ``map_labels`` reports as invalid.
    """
    table = torch.full((size,), -1, dtype=torch.int64)
    for raw, index in pairs:
        table[raw] = index
    return table

