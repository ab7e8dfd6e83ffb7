"""The dry forward every model gets when it is built: each component is held to its declaration.

A model is assembled from declarations (a backbone's ``channels`` and ``strides``, a head's
``out_channels``), so a component whose output differs from what it declares would fail
somewhere downstream with a framework traceback that never names it, or, if it shrinks the
map, run silently with the wrong output stride. One small forward pass (no gradients, eval
mode) checks every component where its output is produced and names it by its TOML path
and plugin distribution.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ctxseg.errors import ComponentError, CtxsegError
from ctxseg.spec import ModelSpec, Ref
from ctxseg.threads import one_thread

if TYPE_CHECKING:
    from ctxseg.model.assemble import SegmentationModel

__all__ = ["check_model"]


def check_model(model: SegmentationModel, spec: ModelSpec, source: str = "<spec>") -> None:
    """Run ``model`` once on a small image (four times its largest stride) and check every component's
    output against its declaration; a ComponentError names the first that differs or raises."""
    backbone = model.backbone
    side = 4 * max(backbone.strides.values())
    parts: dict[nn.Module, tuple[str, Ref]] = {backbone: ("model.backbone", spec.backbone)}
    parts.update({head: (f"model.context[{i}]", ref) for i, (head, ref) in enumerate(zip(model.context, spec.context))})
    if model.fusion is not None:
        parts[model.fusion] = ("model.fusion", spec.fusion)
    parts.update({model.aux[ref.input][0]: (f"model.aux[{i}]", ref) for i, ref in enumerate(spec.aux)})

    running: list[str] = []
    features: dict[str, Tensor] = {}

    def expect(module: nn.Module, inputs: tuple, output: Tensor | dict[str, Tensor]) -> None:
        path, ref = parts[module]
        running.pop()
        if module is backbone:
            features.update(output if isinstance(output, dict) else {})
            for name, channels in backbone.channels.items():
                size = math.ceil(side / backbone.strides[name])
                _compare(source, ref.describe(path), output.get(name), f"output {name!r}", channels, (size, size),
                         f"declared stride {backbone.strides[name]} for a {side}x{side} image")
        elif module is model.fusion:
            size = math.ceil(side / model.output_stride)
            _compare(source, ref.describe(path), output, "output", module.out_channels, (size, size),
                     f"declared stride {model.output_stride} for a {side}x{side} image")
        else:  # a head keeps its input's size
            _compare(source, ref.describe(path), output, "output", module.out_channels, tuple(inputs[0].shape[-2:]),
                     f"the size of its input, {'x'.join(map(str, inputs[0].shape[-2:]))}")

    handles = [m.register_forward_pre_hook(lambda m, i: running.append(parts[m][0])) for m in parts]
    handles += [m.register_forward_hook(expect) for m in parts]
    was_training = model.training
    model.eval()
    try:
        images = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
        images = images.to(next(model.parameters(), images).device)
        with torch.no_grad(), one_thread():  # tiny tensors: see one_thread
            model.scores(images)
            for name, head in model.aux.items():
                head(features[name])
    except CtxsegError:
        raise
    except Exception as error:  # noqa: BLE001 - whatever a component's forward raises is its own
        if not running:
            raise
        path, ref = next(v for v in parts.values() if v[0] == running[-1])
        raise ComponentError(f"{source}: {ref.describe(path)}: forward raised "
                             f"{type(error).__name__}: {error}") from error
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def _compare(source: str, who: str, output: object, what: str, channels: int, size: tuple[int, ...],
             declared: str) -> None:
    if not isinstance(output, Tensor) or output.dim() != 4:
        raise ComponentError(f"{source}: {who}: {what} is {_shape(output)}, expected a (B, C, H, W) tensor")
    if output.shape[1] != channels:
        raise ComponentError(f"{source}: {who}: {what} has {output.shape[1]} channels, declared {channels}")
    if tuple(output.shape[-2:]) != size:
        raise ComponentError(f"{source}: {who}: {what} is {'x'.join(map(str, output.shape[-2:]))}, "
                             f"expected {'x'.join(map(str, size))} ({declared})")


def _shape(output: object) -> str:
    return f"of shape {tuple(output.shape)}" if isinstance(output, Tensor) else f"a {type(output).__name__}"
