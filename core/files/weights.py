"""Weights files: safetensors whose metadata rebuild the model without its spec.

Metadata keys (all JSON strings): ``ctxseg.format``, ``ctxseg.spec`` (the resolved
spec, every default filled in), ``ctxseg.classes``, ``ctxseg.palette``,
``ctxseg.plugins`` (distribution -> version of every plugin that supplied a
component the spec names), ``ctxseg.metrics`` (optional) and ``ctxseg.checksum``
(:mod:`ctxseg.files.checksum`, verified on every read; files of the format before it,
``ctxseg.weights/1``, have none and load with a warning). No pickle is involved anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from ctxseg.errors import WeightsError
from ctxseg.files import checksum
from ctxseg.files.atomic import atomic_path
from ctxseg.registry import default_registry

__all__ = [
    "WeightsInfo", "load_state", "plugin_versions", "read_safetensors", "read_weights", "reading_weights",
    "save_weights", "weights_info", "write_tensors",
]

FORMAT = "ctxseg.weights/2"
UNCHECKED_FORMAT = "ctxseg.weights/1"
"""The format before checksums: still read, with a warning."""


@attrs.frozen
class WeightsInfo:
    """What a weights file says about itself."""

    spec: dict[str, Any]
    classes: list[str]
    palette: list[tuple[int, int, int]]
    plugins: dict[str, str]
    metrics: dict[str, Any] | None


def plugin_versions(spec: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Distribution -> version of every loaded plugin (ctxseg itself included), or with
    ``spec`` (a resolved spec table) of those that supply a component it names."""
    names = None if spec is None else set(_names(spec))
    return {c.distribution: c.version for c in default_registry().components() if names is None or c.name in names}


def _names(table: Any) -> Any:
    """Every component ``name`` in a spec table, at any depth."""
    if isinstance(table, Mapping):
        if isinstance(table.get("name"), str):
            yield table["name"]
        for value in table.values():
            yield from _names(value)
    elif isinstance(table, (list, tuple)):
        for value in table:
            yield from _names(value)


def write_tensors(path: str | Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> None:
    """Write a safetensors file atomically, with the checksum of its tensors and metadata."""
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        try:
            safetensors.torch.save_file(plain, str(tmp), metadata={
                **metadata, checksum.KEY: checksum.checksum(plain, metadata)})
        except safetensors.SafetensorError as error:  # an I/O error, as Rust formats it
            if (code := re.search(r"\(os error (\d+)\)", str(error))) is None:
                raise
            raise OSError(int(code[1]), os.strerror(int(code[1])), str(tmp)) from None


def save_weights(path: str | Path, model: nn.Module, spec: Mapping[str, Any], classes: list[str],
                 palette: list[tuple[int, int, int]], metrics: Mapping[str, Any] | None = None) -> None:
    """Save a model's weights with everything needed to rebuild it."""
    metadata = {
        "ctxseg.format": FORMAT,
        "ctxseg.spec": json.dumps(spec),
        "ctxseg.classes": json.dumps(classes),
        "ctxseg.palette": json.dumps([list(c) for c in palette]),
        "ctxseg.plugins": json.dumps({"ctxseg": plugin_versions()["ctxseg"], **plugin_versions(spec)}),
    }
    if metrics is not None:
        metadata["ctxseg.metrics"] = json.dumps(metrics)
    write_tensors(path, model.state_dict(), metadata)


def read_safetensors(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file; WeightsError if unreadable."""
    path = Path(path)
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such weights file") from None
    except Exception as error:  # noqa: BLE001 - safetensors raises several types for corrupt files
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], WeightsInfo]:
    """The tensors and metadata of a ctxseg weights file; WeightsError if it does not match its
    checksum, or naming the key of any metadata that is not what ctxseg writes (a hand-made file)."""
    with reading_weights(path) as read:
        return read


@contextlib.contextmanager
def reading_weights(path: str | Path) -> Iterator[tuple[dict[str, Tensor], WeightsInfo]]:
    """:func:`read_weights`, the tensors' checksum verified while the block runs (builds their model);
    a mismatch is raised when it ends, in place of whatever the damage made the block raise."""
    path = Path(path)
    tensors, meta = read_safetensors(path)
    if meta.get("ctxseg.format") not in (FORMAT, UNCHECKED_FORMAT):
        raise WeightsError(f"{path}: not a ctxseg weights file (metadata 'ctxseg.format' is "
                           f"{meta.get('ctxseg.format')!r}, expected {FORMAT!r})")
    with checksum.verifying(path, tensors, meta, required=meta["ctxseg.format"] == FORMAT):
        yield tensors, weights_info(meta, path)


def weights_info(meta: Mapping[str, str], path: Path) -> WeightsInfo:
    """The :class:`WeightsInfo` in the metadata ``meta`` of ``path`` (a weights file's, or the
    ``metadata_props`` of an ONNX file ``ctxseg export`` wrote: the same keys); WeightsError
    naming the key of any value that is not what ctxseg writes."""
    spec = _metadata(meta, "ctxseg.spec", path, "a JSON object (the resolved spec)",
                     lambda v: isinstance(v, dict))
    classes = _metadata(meta, "ctxseg.classes", path, "a non-empty JSON list of class-name strings",
                        lambda v: isinstance(v, list) and v and all(isinstance(c, str) for c in v))
    palette = _metadata(meta, "ctxseg.palette", path, "a JSON list of [r, g, b] colours, integers in [0, 255]",
                        lambda v: isinstance(v, list) and all(
                            isinstance(c, list) and len(c) == 3 and all(type(x) is int and 0 <= x <= 255 for x in c)
                            for c in v))
    if len(palette) != len(classes):
        raise WeightsError(f"{path}: metadata 'ctxseg.palette' has {len(palette)} colours for "
                           f"{len(classes)} classes; expected one colour per class")
    plugins = _metadata(meta, "ctxseg.plugins", path, 'a JSON object {"distribution": "version"}',
                        lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()))
    metrics = (_metadata(meta, "ctxseg.metrics", path, "a JSON object", lambda v: isinstance(v, dict))
               if "ctxseg.metrics" in meta else None)
    return WeightsInfo(spec=spec, classes=classes, palette=[tuple(c) for c in palette], plugins=plugins,
                       metrics=metrics)


def _metadata(meta: Mapping[str, str], key: str, path: Path, expected: str, valid: Callable[[Any], bool]) -> Any:
    """The JSON value of metadata ``key``; WeightsError naming the file and key unless ``valid``."""
    if key not in meta:
        raise WeightsError(f"{path}: corrupt ctxseg metadata: {key!r} is missing (expected {expected})")
    try:
        value = json.loads(meta[key])
    except ValueError as error:
        raise WeightsError(f"{path}: corrupt ctxseg metadata: {key!r} is not JSON ({error})") from None
    except RecursionError:  # e.g. [[[[...]]]] 200,000 deep
        raise WeightsError(f"{path}: corrupt ctxseg metadata: {key!r} is nested too deeply to read "
                           f"(expected {expected})") from None
    if not valid(value):
        shown = meta[key] if len(meta[key]) <= 60 else f"{meta[key][:60]}..."
        raise WeightsError(f"{path}: corrupt ctxseg metadata: {key!r} must be {expected}, got {shown}")
    return value


def load_state(module: nn.Module, tensors: Mapping[str, Tensor], source: str, *, partial: bool = False) -> None:
    """Load ``tensors`` into ``module`` exactly; name every missing, unexpected or mis-shaped tensor.

    With ``partial``, tensors the file lacks keep their current values (initialising a
    larger model from a trained part of it); unexpected and mis-shaped ones still fail.
    """
    expected = module.state_dict()
    missing = [] if partial else [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    misshaped = [f"{k} (file {tuple(tensors[k].shape)}, model {tuple(v.shape)})"
                 for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    # load_state_dict would cast silently: an int64 counter stored as F64 is a damaged file, not a number
    mistyped = [f"{k} (file {_dtype(tensors[k])}, model {_dtype(v)})"
                for k, v in expected.items() if k in tensors and tensors[k].dtype != v.dtype]
    problems = [f"{kind} tensors: {_listing(names)}" for kind, names in
                (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped),
                 ("wrong dtype", mistyped)) if names]
    if problems:
        raise WeightsError(f"{source} does not match {type(module).__name__}: " + "; ".join(problems))
    with torch.no_grad():
        module.load_state_dict(dict(tensors), strict=not partial)


def _dtype(tensor: Tensor) -> str:
    """A tensor's dtype as a safetensors header names it (F32, I64, BF16, ...)."""
    return _SAFETENSORS_DTYPES.get(tensor.dtype, str(tensor.dtype).removeprefix("torch."))


_SAFETENSORS_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                       torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                       torch.uint8: "U8", torch.bool: "BOOL"}


def _listing(names: list[str], shown: int = 10) -> str:
    """The first ``shown`` names and a count of the rest, so a wrong file's report stays readable."""
    head = ", ".join(names[:shown])
    return head if len(names) <= shown else f"{head} and {len(names) - shown} more"
