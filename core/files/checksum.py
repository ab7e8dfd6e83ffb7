"""Checksums in ctxseg's safetensors files: a file damaged after it was written is refused, not loaded.

Safetensors checks a file's layout (header length, JSON, offsets), not its contents: one
flipped bit inside a tensor loads silently. So every file ctxseg writes carries, in its
metadata under ``ctxseg.checksum``, the SHA-256 digest of its tensors (each one's name,
dtype, shape and bytes, in name order, streamed without copying) and that of its other
metadata entries. Checking costs about 0.06 s per 100 MB on the reference machine
(``examples/benchmarks/checksum.py``), about as long as building the model takes, so
:func:`verifying` computes the digest while the model is built.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import Tensor

from ctxseg.errors import WeightsError

__all__ = ["KEY", "checksum", "tensors_digest", "verify", "verifying"]

KEY = "ctxseg.checksum"
ALGORITHM = "sha256"


def tensors_digest(tensors: Mapping[str, Tensor]) -> str:
    """The hex digest of ``tensors``: names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.new(ALGORITHM)
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode() + b"\n")
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def _metadata_digest(metadata: Mapping[str, str]) -> str:
    """The hex digest of every metadata entry but the checksum itself."""
    entries = {key: value for key, value in metadata.items() if key != KEY}
    return hashlib.new(ALGORITHM, json.dumps(entries, sort_keys=True).encode()).hexdigest()


def checksum(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> str:
    """The value of :data:`KEY` for a file of ``tensors`` and ``metadata``."""
    return json.dumps({"algorithm": ALGORITHM, "tensors": tensors_digest(tensors),
                       "metadata": _metadata_digest(metadata)})


def verify(path: Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str], *, required: bool) -> None:
    """WeightsError unless the file ``path`` matches its checksum (see :func:`verifying`)."""
    with verifying(path, tensors, metadata, required=required):
        pass


@contextlib.contextmanager
def verifying(path: Path, tensors: Mapping[str, Tensor], metadata: Mapping[str, str], *,
              required: bool) -> Iterator[None]:
    """WeightsError unless the file ``path`` matches its checksum, the tensors' digest computed in a
    thread while the block runs (building their model: hashlib lets go of the GIL).

    The metadata is checked at once, the tensors when the block ends, even if it raised: a
    damaged file is named as damaged, not by what the damage broke. A file without a checksum
    is an error if ``required`` (its format always has one), else a warning: ctxseg wrote it
    before it checksummed its files, and it still loads.
    """
    if KEY not in metadata:
        if required:
            raise WeightsError(f"{path}: corrupt ctxseg metadata: {KEY!r} is missing (damaged after it was "
                               "written); it cannot be trusted")
        warnings.warn(f"{path}: written before ctxseg checksummed its files, so damage to its tensors cannot "
                      "be detected", stacklevel=4)
        yield
        return
    expected = _saved_tensors_digest(path, metadata)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ctxseg-checksum") as pool:
        digest = pool.submit(tensors_digest, tensors)
        try:
            yield
        except Exception:
            _check(path, digest.result(), expected)
            raise
        _check(path, digest.result(), expected)


def _saved_tensors_digest(path: Path, metadata: Mapping[str, str]) -> str:
    """The tensors' digest the file records, once its metadata matches the digest recorded for it."""
    try:
        saved = json.loads(metadata[KEY])
        algorithm, tensors_hex, metadata_hex = saved["algorithm"], saved["tensors"], saved["metadata"]
    except (ValueError, TypeError, KeyError, RecursionError):
        raise WeightsError(f"{path}: corrupt ctxseg metadata: {KEY!r} is not the JSON object ctxseg writes "
                           "(damaged after it was written); it cannot be trusted") from None
    if algorithm != ALGORITHM:
        raise WeightsError(f"{path}: corrupt ctxseg metadata: {KEY!r} names the algorithm {algorithm!r}, "
                           f"expected {ALGORITHM!r}; it cannot be trusted")
    if metadata_hex != _metadata_digest(metadata):
        raise WeightsError(f"{path}: metadata does not match its checksum (damaged after it was written); "
                           "it cannot be trusted")
    return tensors_hex


def _check(path: Path, digest: str, expected: str) -> None:
    if digest != expected:
        raise WeightsError(f"{path}: tensor data does not match its checksum (damaged after it was written); "
                           "it cannot be trusted") from None
