"""``ctxseg inspect``: what a model is, measured on the model itself.

Parameters are counted per component. The theoretical receptive field is measured
from gradients: the model is copied in float64 with every weight made positive
(about ``1 / fan-in``), biases zero, learned scales one, batch-norm turned into the identity, and max-pooling into
average-pooling, so that no ReLU or max can hide a path; the input pixels with a
non-zero gradient of the centre output are exactly those within its receptive field.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ctxseg.model import SegmentationModel

__all__ = ["positive_linear_copy", "reached", "receptive_field", "summarize"]


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


def summarize(model: SegmentationModel, size: tuple[int, int], rf_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Parameters (total and per component), output stride, field of view (None unless
    the heads declare it), receptive field, output shape."""
    parts = {"backbone": _count(model.backbone)}
    for i, head in enumerate(model.context):
        parts[f"context[{i}]"] = _count(head)
    if model.fusion is not None:
        parts["fusion"] = _count(model.fusion)
    parts["classifier"] = _count(model.classifier)
    for name, head in model.aux.items():
        parts[f"aux.{name} (training only)"] = _count(head)
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, *size))["out"]
    rf = receptive_field(model, rf_size or size)
    return {
        "parameters": {"total": _count(model), "inference": _count(model) - sum(_count(h) for h in model.aux.values()),
                       **parts},
        "output_stride": model.output_stride,
        "field_of_view": model.field_of_view,
        "receptive_field": list(rf) if rf else "whole input",
        "receptive_field_measured_at": list(rf_size or size),
        "input_shape": [1, 3, *size],
        "output_shape": list(out.shape),
    }
