"""``ctxseg export``: a weights file's inference graph as an ONNX model, and its check by onnxruntime.

The graph is what :class:`~ctxseg.engine.inference.Inference` runs on one view: the
model as its ``[run.passes]`` run it (FCRN's four shifted passes included), without the
auxiliary heads (they run only in training). Input ``image``: ``(N, 3, H, W)`` float32,
RGB, normalized as the spec's ``[data]`` says, ``(pixel / 255 - mean) / std``; output
``scores``: ``(N, K, H, W)`` class scores (before softmax) at input size. The ``[test]``
protocol (windows, scales, flips) is left to the caller. The metadata (ONNX
``metadata_props``) carries the class names, palette, normalization, opset and spec (with
the plugins that supplied it), so that ``ctxseg predict`` and ``eval`` run the file alone.

The exporter is PyTorch's dynamo-based one (``torch.onnx.export(..., dynamo=True)``, via
``torch.export``), with batch, height and width dynamic. A model whose forward cannot be
traced for every size (its code branches on sizes that ``torch.export`` cannot reason
about) is exported at the fixed example size instead, and the reason is reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import torch
from torch import Tensor, nn

from ctxseg.engine.inference import Inference
from ctxseg.engine.ort import require_extra
from ctxseg.errors import CtxsegError
from ctxseg.files.atomic import atomic_path, check_output
from ctxseg.files.weights import WeightsInfo

__all__ = ["EXAMPLE", "OPSET", "Check", "Exported", "export_onnx", "verify_onnx"]

OPSET = 20
"""The ONNX opset written by default: the dynamo exporter's own default in torch 2.14."""
EXAMPLE = (2, 3, 96, 128)
"""The input traced: batch 2 (torch.export fixes a dimension traced at size 1), height and
width unequal (so they are not taken for one symbol), both multiples of 32 (every output stride)."""
AXES = {0: "batch", 2: "height", 3: "width"}


class _Scores(nn.Module):
    """The inference module's ``"out"`` alone: ONNX outputs are tensors, not dicts."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, image: Tensor) -> Tensor:
        return self.module(image)["out"]  # (N, K, H, W)


@attrs.frozen
class Exported:
    """What ``export_onnx`` wrote: the file, its input shape (a name for each dynamic axis,
    the size of each fixed one) and why sizes are fixed, if they are."""

    path: Path
    opset: int
    shape: tuple[int | str, ...]
    fixed_because: str = ""

    @property
    def dynamic(self) -> bool:
        return all(isinstance(self.shape[axis], str) for axis in AXES)


def export_onnx(weights: str | Path, out: str | Path, *, opset: int | None = None) -> tuple[Exported, Inference]:
    """Export the inference graph of ``weights`` to ``out`` (written atomically), in ``opset`` (default :data:`OPSET`).

    :return: what was written, and the :class:`Inference` set-up it was made from (fp32, CPU), to verify against.
    """
    opset = opset or OPSET
    check_output(Path(out), "--out", Path(weights))
    require_extra("onnxscript")  # the dynamo exporter's translation library
    onnx = require_extra("onnx")
    inference, info = Inference.from_weights(weights, test={"precision": "fp32"})
    module = _Scores(inference.module).cpu().eval()
    example = (torch.randn(*EXAMPLE),)
    fixed_because = ""
    try:
        program = _export(module, example, opset, dynamic=True)
    except Exception as error:  # noqa: BLE001 - torch.export and the translation raise many types
        fixed_because = _first_line(error)
        try:
            program = _export(module, example, opset, dynamic=False)
        except Exception as again:  # noqa: BLE001
            raise CtxsegError(f"{weights}: the ONNX exporter cannot export this model, at dynamic sizes "
                              f"({fixed_because}) nor at {EXAMPLE} ({_first_line(again)}); "
                              "`ctxseg --debug export ...` shows the traceback") from again
    program.model.metadata_props.update(_metadata(inference, info, opset))
    with atomic_path(out) as tmp:
        program.save(str(tmp), external_data=False)
    shape = tuple(d.dim_param or d.dim_value
                  for d in onnx.load(str(out), load_external_data=False).graph.input[0].type.tensor_type.shape.dim)
    return Exported(Path(out), opset, shape, fixed_because), inference


def _export(module: nn.Module, example: tuple[Tensor], opset: int, *, dynamic: bool):
    axes = {axis: torch.export.Dim(name, min=1) for axis, name in AXES.items()}
    with torch.no_grad():
        return torch.onnx.export(module, example, dynamo=True, opset_version=opset, input_names=["image"],
                                 output_names=["scores"], dynamic_shapes={"image": axes} if dynamic else None,
                                 verbose=False)


def _first_line(error: BaseException) -> str:
    """The line of an exporter's long error that says what failed (the last of its cause chain)."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def _metadata(inference: Inference, info: WeightsInfo, opset: int) -> dict[str, str]:
    data = inference.spec.data
    return {
        "ctxseg.classes": json.dumps(info.classes),
        "ctxseg.palette": json.dumps([list(c) for c in info.palette]),
        "ctxseg.plugins": json.dumps(info.plugins),
        "ctxseg.precision": "fp32",
        "ctxseg.opset": str(opset),
        "ctxseg.input": "image: (N, 3, H, W) float32, RGB, (pixel / 255 - mean) / std",
        "ctxseg.mean": json.dumps(list(data.mean)),
        "ctxseg.std": json.dumps(list(data.std)),
        "ctxseg.output": "scores: (N, K, H, W) float32 class scores before softmax, K = len(classes)",
        "ctxseg.spec": json.dumps(info.spec),  # the weights file's, as it embeds it
        "ctxseg.exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
    }


@attrs.frozen
class Check:
    """One input run through onnxruntime and PyTorch: the largest score difference and the
    fraction of pixels whose class (argmax) agrees."""

    shape: tuple[int, ...]
    max_abs_diff: float
    argmax_agreement: float
    scale: float
    """The largest PyTorch score: what a rounding bound on the difference scales with."""


def verify_onnx(exported: Exported, inference: Inference, sizes: Sequence[tuple[int, int, int]] = ((1, 80, 112),
                                                                                                   (2, 99, 75))
                ) -> Iterator[Check]:
    """Run the ONNX file with onnxruntime on random inputs of ``sizes`` (batch, height, width;
    a fixed axis keeps its exported size) and compare with PyTorch's scores."""
    ort = require_extra("onnxruntime")
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    module = _Scores(inference.module).cpu().eval()
    generator = torch.Generator().manual_seed(0)
    for batch, height, width in sizes:
        shape = tuple(size if isinstance(size, int) else wanted
                      for size, wanted in zip(exported.shape, (batch, 3, height, width), strict=True))
        image = torch.randn(*shape, generator=generator)
        with torch.inference_mode():
            expected = module(image)
        got = torch.from_numpy(session.run(["scores"], {"image": image.numpy()})[0])
        if got.shape != expected.shape:
            raise CtxsegError(f"{exported.path}: onnxruntime gave scores of shape {tuple(got.shape)} for input "
                              f"{shape}, PyTorch {tuple(expected.shape)}")
        yield Check(shape, (got - expected).abs().max().item(),
                    (got.argmax(1) == expected.argmax(1)).double().mean().item(), expected.abs().max().item())
