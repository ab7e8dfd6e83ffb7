"""``ctxseg export --quantize int8``: ONNX Runtime's static int8 quantization, calibrated on training images.

The weights file's fp32 export (:func:`ctxseg.engine.ort.cached_export`) goes through ONNX
Runtime's pre-processing (shape inference and graph optimization, which folds each batch
norm into its convolution before ranges are measured), then its static quantization in
QDQ format: QuantizeLinear/DequantizeLinear pairs around each quantizable operator, which
ONNX Runtime fuses into int8 kernels. Weights are int8 per output channel; activations
uint8 per tensor, their ranges the minima and maxima seen on ``count`` training images,
spread evenly over the split and normalized as inference normalizes them. uint8
activations with int8 weights are the pair that x86 VNNI multiplies in one instruction
(int8 activations ran 2.1x slower than uint8 on an AVX-512 VNNI CPU); the weights use 7
of their 8 bits (``reduce_range``), so that CPUs without VNNI, which sum pairs of u8 x s8
products in 16 bits, cannot overflow.

The file keeps the export's metadata, with ``ctxseg.precision`` "int8" and how it was
calibrated, so ``ctxseg predict`` and ``ctxseg eval`` run it alone.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ctxseg.data.normalize import EvalTransform
from ctxseg.engine import ort
from ctxseg.engine.eval_weights import eval_dataset
from ctxseg.errors import CtxsegError, DataError
from ctxseg.files.atomic import atomic_path, check_output
from ctxseg.files.weights import read_weights
from ctxseg.interfaces import SegmentationDataset
from ctxseg.model.load import embedded_spec
from ctxseg.spec import load_spec

__all__ = ["calibration_dataset", "quantize_int8"]


def calibration_dataset(weights: str | Path, split: str = "train", *, spec: str | Path | None = None,
                        data_root: str | None = None) -> SegmentationDataset:
    """The ``split`` that ``ctxseg export --quantize`` calibrates on: :func:`~ctxseg.engine.eval_weights.eval_dataset`'s
    choice from the ``[data]`` table of ``spec`` (a spec file), or else of the weights file."""
    data = (load_spec(spec) if spec else embedded_spec(read_weights(weights)[1], weights)).data
    return eval_dataset(data, split, weights=weights, spec=spec, data_root=data_root, command="export",
                        doing="calibrating")


def quantize_int8(weights: str | Path, out: str | Path, dataset: SegmentationDataset, count: int, *,
                  progress: bool = True) -> None:
    """Write the int8 model of ``weights`` to ``out`` (atomically), calibrated on ``count`` images of
    ``dataset`` (its training split), normalized with the weights' ``[data]`` mean and std."""
    weights, out = Path(weights), Path(out)
    check_output(out, "--out", weights)
    if count < 1:
        raise CtxsegError(f"--calibrate {count}: expected a number of training images, at least 1")
    if count > len(dataset):
        raise DataError(f"--calibrate {count}: the training split has only {len(dataset)} images")
    onnx = ort.require_extra("onnx", "int8 quantization")
    onnxruntime = ort.require_extra("onnxruntime", "int8 quantization")
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    transform = EvalTransform(embedded_spec(read_weights(weights)[1], weights).data)
    fp32 = ort.cached_export(weights)
    indices = [i * len(dataset) // count for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="ctxseg-quantize-") as folder:
        prepared, quantized = Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        quant_pre_process(str(fp32), str(prepared))
        with tqdm(total=count, desc="calibrate", disable=not progress) as bar:
            reader = _Calibration(lambda i: transform(dataset[indices[i]][0], None)[0][None].numpy(), count, bar)
            quantize_static(str(prepared), str(quantized), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            extra_options={"CalibStridedMinMax": 1})  # ranges merged image by image
        model = onnx.load(str(quantized))
    metadata = {p.key: p.value for p in model.metadata_props}  # the export's, kept by the quantizer
    metadata["ctxseg.precision"] = "int8"
    metadata["ctxseg.quantization"] = (f"onnxruntime {onnxruntime.__version__} quantize_static: QDQ, weights int8 "
                                       "per channel (7 bits), activations uint8 per tensor, min/max over "
                                       f"{count} training images")
    onnx.helper.set_model_props(model, metadata)
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))


class _Calibration:
    """ONNX Runtime's calibration data reader (``get_next``, and ``set_range`` over ``len`` images
    for ``CalibStridedMinMax``): the normalized image ``read(i)`` as input ``image``, batch 1."""

    def __init__(self, read: Callable[[int], np.ndarray], count: int, bar: tqdm):
        self.read, self.count, self.bar = read, count, bar
        self.next = self.end = 0

    def __len__(self) -> int:
        return self.count

    def set_range(self, start_index: int, end_index: int) -> None:
        self.next, self.end = start_index, end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.next >= self.end:
            return None
        image = self.read(self.next)
        self.next += 1
        self.bar.update()
        return {"image": image}
