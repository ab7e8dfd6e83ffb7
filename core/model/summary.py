"""``ctxseg inspect``: what a model is, from its components' declarations or measured on it.

Parameters are counted per component. The theoretical receptive field of the centre
output pixel is composed from declarations where every component declares its window
(a backbone's ``receptive_fields``, each context head's ``field_of_view``), which costs
nothing. Else, or on request, it is measured from gradients: the model is copied in
float64 with every weight made positive (about ``1 / fan-in``), biases zero, learned
scales one, batch-norm turned into the identity, and max-pooling into average-pooling,
so that no ReLU or max can hide a path; the input pixels with a non-zero gradient of
the centre output are exactly those within its receptive field. The measurement costs
a float64 forward and backward pass at full size (seconds to a minute on a CPU), so
``ctxseg inspect`` measures only with ``--measure-rf``; a test holds the declared
figures equal to the measured ones. Nothing reported depends on the initial weights,
so inspect builds the model without drawing them (:mod:`ctxseg.model.undrawn`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ctxseg.model import SegmentationModel

__all__ = ["declared_receptive_field", "positive_linear_copy", "reached", "receptive_field", "summarize"]


def _count(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def positive_linear_copy(model: nn.Module) -> nn.Module:
    """A float64 eval-mode copy of ``model`` in which every path from input to output
    carries a positive weight: what a gradient-measured receptive field needs."""
    probe = copy.deepcopy(model).double().eval()
    for child in list(probe.modules()):
        for attr, sub in list(child.named_children()):
            if isinstance(sub, nn.MaxPool2d):
                setattr(child, attr, nn.AvgPool2d(sub.kernel_size, sub.stride, sub.padding, sub.ceil_mode))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in probe.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_parameters()  # mean 0, var 1, weight 1, bias 0: the identity
                module.eps = 0.0
            for p_name, p in module.named_parameters(recurse=False):
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    continue
                if p_name == "bias":
                    p.zero_()
                elif p.dim() > 1:
                    p.copy_((0.5 + torch.rand(p.shape, generator=generator, dtype=p.dtype)) / p[0].numel())
                else:  # a learned scale, such as ParseNet's L2Norm gamma
                    p.fill_(1.0)
    return probe


def reached(scores: Callable[[Tensor], Tensor], channels: int, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Rows and columns of a positive float64 input ``(1, channels, *size)`` that the
    centre pixel of ``scores(input)`` depends on (non-zero gradient); ``scores`` is a
    :func:`positive_linear_copy`, so no ReLU or max hides a path."""
    generator = torch.Generator().manual_seed(1)
    x = (0.5 + torch.rand(1, channels, *size, generator=generator, dtype=torch.float64)).requires_grad_()
    scores(x)[0, :, size[0] // 2, size[1] // 2].sum().backward()
    grad = x.grad[0].abs().sum(0)  # (H, W)
    return grad.sum(1).nonzero().flatten(), grad.sum(0).nonzero().flatten()


def receptive_field(model: SegmentationModel, size: tuple[int, int]) -> tuple[int, int] | None:
    """Height and width of the input region that the centre output pixel depends on.

    ``None`` means it covers the whole input (global context, or an input too small
    to tell); measure at a larger ``size`` to tell the two apart.
    """
    probe = positive_linear_copy(model)
    rows, cols = reached(lambda x: probe(x)["out"], 3, size)
    if rows[0] == 0 and rows[-1] == size[0] - 1 or cols[0] == 0 and cols[-1] == size[1] - 1:
        return None
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def declared_receptive_field(model: SegmentationModel, size: tuple[int, int]) -> tuple[int, int] | None:
    """What :func:`receptive_field` measures, composed from the components' declarations.

    The score pixel ``i`` sees ``(field - 1) / 2`` input pixels either side of ``i * stride``,
    ``field`` the backbone's declared field plus ``(fov - 1) * stride`` per context head; the
    centre output pixel is bilinearly upsampled from one or two score pixels per axis, and
    the window is clipped to the input. A :class:`LookupError` names the first component
    that declares nothing (or a fusion, whose inputs' windows differ).
    """
    fields = getattr(model.backbone, "receptive_fields", None)
    if not fields:
        raise LookupError("the backbone declares no receptive_fields")
    if model.fusion is not None:
        raise LookupError("a fusion's inputs have windows of their own")
    spans = [getattr(head, "field_of_view", None) for head in model.context]
    if "global" in spans:
        return None
    if None in spans:
        raise LookupError(f"context[{spans.index(None)}] declares no field_of_view")
    stride = model.output_stride
    radius = (fields[model.input] - 1) / 2 + sum((span - 1) / 2 for span in spans) * stride
    extents = []
    for length in size:
        scores = math.ceil(length / stride)
        centre = length // 2
        if scores == length:
            first = last = centre
        else:  # F.interpolate, bilinear, align_corners=False
            source = max((centre + 0.5) * scores / length - 0.5, 0.0)
            first = math.floor(source)
            last = min(first + 1, scores - 1) if source > first else first
        low, high = max(0, math.ceil(first * stride - radius)), min(length - 1, math.floor(last * stride + radius))
        if low == 0 and high == length - 1:
            return None
        extents.append(high - low + 1)
    return extents[0], extents[1]


def summarize(model: SegmentationModel, size: tuple[int, int], rf_size: tuple[int, int] | None = None, *,
              measure: bool = False) -> dict[str, Any]:
    """Parameters (total and per component), output stride, field of view (None unless
    the heads declare it), receptive field (declared, else measured only with ``measure``),
    output shape.

    The output shape is the forward contract's, ``(1, K, H, W)`` at any input size, which
    the dry forward of :func:`~ctxseg.model.check.check_model` holds every model to when it
    is built; no pass at full size is needed.
    """
    parts = {"backbone": _count(model.backbone)}
    for i, head in enumerate(model.context):
        parts[f"context[{i}]"] = _count(head)
    if model.fusion is not None:
        parts["fusion"] = _count(model.fusion)
    parts["classifier"] = _count(model.classifier)
    for name, head in model.aux.items():
        parts[f"aux.{name} (training only)"] = _count(head)
    at = rf_size or size
    try:
        if measure:
            rf, how = receptive_field(model, at), "measured"
        else:
            rf, how = declared_receptive_field(model, at), "declared"
    except LookupError as error:
        rf, how = None, f"undeclared: {error}"
    return {
        "parameters": {"total": _count(model), "inference": _count(model) - sum(_count(h) for h in model.aux.values()),
                       **parts},
        "output_stride": model.output_stride,
        "field_of_view": model.field_of_view,
        "receptive_field": list(rf) if rf else "whole input" if how in ("measured", "declared") else "undeclared",
        "receptive_field_from": how,
        "receptive_field_measured_at": list(at),
        "input_shape": [1, 3, *size],
        "output_shape": [1, model.num_classes, *size],
    }
