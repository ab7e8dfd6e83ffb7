"""ONNX Runtime as an inference backend: a weights file's graph exported once, and run as a protocol's score.

The export is :func:`ctxseg.engine.export.export_onnx`'s (fp32; batch, height and width
dynamic), made the first time a weights file runs on onnxruntime and cached under the
file's content hash, ``$XDG_CACHE_HOME/ctxseg/onnx/<sha256>.onnx``: the same weights are
never exported twice, and changed weights (retrained, converted again) get an export of
their own. A :class:`Session` runs such a file, or one ``ctxseg export`` wrote (the int8
model of ``--quantize int8``), on the CPU with as many threads as torch uses; the
``[test]`` protocol (windows, scales, flips) runs around it as around a torch model.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ctxseg.errors import MissingExtraError, WeightsError
from ctxseg.files.cache import cache_folder
from ctxseg.files.weights import WeightsInfo, weights_info

__all__ = ["Session", "available", "cached_export", "content_hash", "require_extra"]

EXTRA = ("onnxruntime", "onnx", "onnxscript")
"""What exporting and running need: the ``export`` extra."""


def available() -> bool:
    """Whether the packages of the ``export`` extra are installed (so ``backend = "auto"`` races onnxruntime)."""
    return all(importlib.util.find_spec(name) is not None for name in EXTRA)


def require_extra(module: str, purpose: str = "ONNX export") -> Any:
    """``import module``, or a MissingExtraError saying that ``purpose`` needs it and which extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{purpose} needs the package {module!r}, which is not installed; "
                          "install it with: python -m pip install 'ctxseg[export]'") from None


def content_hash(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_export(weights: Path) -> Path:
    """The fp32 ONNX export of ``weights`` in the cache folder, exported (atomically) if it is not there yet."""
    from ctxseg.engine.export import export_onnx  # export builds on Inference, which runs this module


    path = cache_folder() / "onnx" / f"{content_hash(weights)}.onnx"
    if not path.exists():
        export_onnx(weights, path)
    return path


class Session:
    """An ONNX file of ``ctxseg export`` run by ONNX Runtime's CPU provider: normalized float32 images
    ``(n, 3, h, w)`` -> class scores ``(n, K, h, w)``, a :data:`ctxseg.engine.protocol.Score`.

    ``precision`` is the file's: "int8" for ``--quantize int8``, else "fp32"; ``info`` the
    spec, classes and palette its metadata carries; ``version`` onnxruntime's.
    """

    def __init__(self, path: Path):
        ort = require_extra("onnxruntime", "the onnxruntime backend")
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types for missing and damaged files
            raise WeightsError(f"{path}: onnxruntime cannot load it ({str(error).strip()})") from None
        self.path = path
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != ["image"] or [o.name for o in outputs] != ["scores"]:
            raise WeightsError(f"{path}: not a model of ctxseg export: expected input 'image' and output 'scores', "
                               f"got inputs {[i.name for i in inputs]} and outputs {[o.name for o in outputs]}")
        fixed = [size for size in inputs[0].shape[2:] if isinstance(size, int)]
        if fixed:
            raise WeightsError(f"{path}: exported at the fixed input size {inputs[0].shape} (the exporter cannot "
                               "trace this model for every size), so it cannot run every image; run it in torch")
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.info: WeightsInfo = weights_info(metadata, path)
        self.precision = metadata.get("ctxseg.precision", "fp32")
        self.version = ort.__version__

    def __call__(self, images: Tensor) -> Tensor:
        (scores,) = self.session.run(["scores"], {"image": images.detach().cpu().float().contiguous().numpy()})
        return torch.from_numpy(scores)
