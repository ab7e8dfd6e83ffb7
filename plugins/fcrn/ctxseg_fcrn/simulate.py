"""Simulating a high-resolution network with a low-resolution one.

Wu, Shen and van den Hengel, "High-performance Semantic Segmentation Using Very Deep
Fully Convolutional Networks" (FCRN), Sec. 3.2 and Fig. 1: a network whose last
down-sampling layer has stride 2 (output stride s) is run four times, the feature map
entering that layer shifted by one pixel down and/or right before each pass. Each
pass yields the scores of one of the four phases of the finer network, the one with
that layer's stride removed and every later convolution dilated twice as much
(output stride s / 2); interleaved, they are its score map. In training, each pass
backpropagates on its own and the gradients add up before one update, so the memory
of the layers after the shift is that of the coarse network.

The paper shifts the feature map itself, which loses its first row (or column) in the
shifted passes, so the two networks would differ near the top and left border.
Here the strided convolutions of the layer pad the map first and then drop the
first padded row/column: every pass sees exactly the finer network's inputs, and the
simulation equals the finer network everywhere, border included, whatever the size
(``tests/test_simulate.py``). It needs batch norm with fixed statistics
(``model.batch_norm``), as the paper trains, or eval mode: batch statistics differ
from pass to pass.

:class:`SimulatedPasses` makes it a way to run a model (``[run.passes] name =
"fcrn.simulated"``), in training, at inference, or both.

Where the finer map's pixels lie: ``ctxseg.nn.upsample`` places pixel i of a map of
stride s at input position ``s i + (s - 1) / 2``, and a model learns to predict for that
position. Pass (dy, dx) is the coarse network on the input moved by s/2 pixels, so pixel
p of the finer map stands for ``(s/2) p + (s - 1) / 2``: half a finer pixel further
than where ``upsample`` would put a map of stride s/2 (2 px at s = 8, which costs more
than 10 points of mIoU on 64 px images). :func:`upsample_finer` and :func:`label_phase`
place it there.

:func:`finer` builds that finer network from the coarse one (DeepLab's hole
algorithm: same weights, stride removed, dilations doubled) to compare against.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import attrs
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ctxseg.errors import CtxsegError, SpecError
from ctxseg.interfaces import Passes
from ctxseg.nn import submodule

__all__ = ["SHIFTS", "Simulated", "SimulatedPasses", "finer", "interleave", "label_phase", "shifted", "upsample_finer"]

SHIFTS = ((0, 0), (0, 1), (1, 0), (1, 1))
"""The four passes: (rows, columns) the map is shifted by before down-sampling."""


def _strided(model: nn.Module, path: str, source: str = "<spec>") -> list[nn.Conv2d]:
    """The stride-2 convolutions of the layer at ``path``, or a SpecError saying why it cannot be simulated."""
    where = f"{source}: run.passes.layer"
    layer = submodule(model, path, where)
    strided = [m for m in layer.modules() if isinstance(m, nn.Conv2d) and m.stride != (1, 1)]
    pools = [m for m in layer.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) and m.stride not in (1, (1, 1))]
    if not strided or pools:
        raise SpecError(f"{where}: {path!r} must down-sample by strided convolutions alone "
                        f"(it has {len(strided)} strided convolutions{' and a strided pooling' if pools else ''})")
    for conv in strided:
        if conv.stride != (2, 2) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise SpecError(f"{where}: {path!r} has a convolution with stride {conv.stride} and "
                            f"padding {conv.padding!r} ({conv.padding_mode}); simulation needs stride 2 and "
                            "numeric zero padding")
    return strided


@contextlib.contextmanager
def shifted(model: nn.Module, layer: str, dy: int, dx: int) -> Iterator[None]:
    """Within the block, ``layer`` down-samples the phase ``(dy, dx)`` of its input.

    Each of its stride-2 convolutions pads its input as usual, then drops the first
    ``dy`` rows and ``dx`` columns, so its output pixel i reads the window the
    stride-1 convolution reads at 2i + dy.
    """
    strided = _strided(model, layer)
    saved = [conv.padding for conv in strided]
    handles = []
    for conv, (py, px) in zip(strided, saved, strict=True):
        def shift(module: nn.Module, args: tuple, py: int = py, px: int = px) -> tuple:
            return (F.pad(args[0], (px, px, py, py))[..., dy:, dx:], *args[1:])

        conv.padding = (0, 0)
        handles.append(conv.register_forward_pre_hook(shift))
    try:
        yield
    finally:
        for conv, padding, handle in zip(strided, saved, handles, strict=True):
            conv.padding = padding
            handle.remove()


def interleave(phases: dict[tuple[int, int], Tensor]) -> Tensor:
    """The four passes' maps ``(B, K, h_dy, w_dx)`` -> the finer map ``(B, K, h_0 + h_1, w_0 + w_1)``.

    Each map is padded to the (0, 0) pass's size, the largest, and the four are stacked
    and reshaped so that pixel (i, j) of pass (dy, dx) lands at (2i + dy, 2j + dx); the
    padding then falls beyond the finer map and is cropped. (Pure data movement, so
    exact; and exportable where strided slice assignment is not.)"""
    h, w = phases[0, 0].shape[-2:]
    rows, cols = h + phases[1, 0].shape[-2], w + phases[0, 1].shape[-1]
    padded = [F.pad(phases[shift], (0, w - phases[shift].shape[-1], 0, h - phases[shift].shape[-2]))
              for shift in SHIFTS]  # (B, K, h, w) each, in SHIFTS' (dy, dx) order
    fine = torch.stack(padded, dim=-1).unflatten(-1, (2, 2))  # (B, K, h, w, dy, dx)
    fine = fine.permute(0, 1, 2, 4, 3, 5).flatten(2, 3).flatten(-2)  # (B, K, 2h, 2w)
    return fine[..., :rows, :cols]


def _centres(fine_stride: int, phase: int, count: int, limit: int, device: torch.device) -> Tensor:
    """Input pixels nearest the positions ``fine_stride * p + fine_stride - 1/2`` of the finer
    map's pixels ``p = 2 i + phase``, ``i < count`` (clamped to the last of ``limit``)."""
    p = 2 * torch.arange(count, device=device) + phase
    return (fine_stride * p + fine_stride).clamp(max=limit - 1)


def label_phase(labels: Tensor, fine_stride: int, dy: int, dx: int, size: tuple[int, int]) -> Tensor:
    """The labels ``(B, H, W)`` a pass's score map of ``size`` stands for: nearest samples
    at the positions of its pixels, pixels 2i + dy (2j + dx) of the finer map."""
    rows = _centres(fine_stride, dy, size[0], labels.shape[-2], labels.device)
    cols = _centres(fine_stride, dx, size[1], labels.shape[-1], labels.device)
    return labels[..., rows[:, None], cols]


def upsample_finer(scores: Tensor, size: tuple[int, int], fine_stride: int) -> Tensor:
    """Bilinear resize of the finer map to the input ``size``, its pixel p at input position
    ``fine_stride * p + fine_stride - 1/2`` (rows and columns), edges clamped."""
    def axis(pixels: int, cells: int) -> Tensor:
        u = (torch.arange(pixels, dtype=scores.dtype, device=scores.device) - fine_stride + 0.5) / fine_stride
        return (2 * u + 1) / cells - 1  # grid_sample's coordinates (align_corners=False)

    grid = torch.stack(torch.meshgrid(axis(size[1], scores.shape[-1]), axis(size[0], scores.shape[-2]),
                                      indexing="xy"), dim=-1)  # (H, W, 2): x, y
    return F.grid_sample(scores, grid.expand(scores.shape[0], -1, -1, -1), mode="bilinear",
                         padding_mode="border", align_corners=False)


class Simulated(nn.Module):
    """``model`` run as its finer self in four shifted passes; same outputs as ``model``.

    ``scores(images)["out"]`` is the finer network's score map (output stride halved);
    ``forward`` upsamples it to the input size. For inference; training runs each pass
    under :func:`shifted` and backpropagates it before the next.
    """

    def __init__(self, model: nn.Module, layer: str, source: str = "<spec>"):
        super().__init__()
        _strided(model, layer, source)
        self.model, self.layer = model, layer
        self.output_stride = model.output_stride // 2

    def scores(self, images: Tensor) -> dict[str, Tensor]:
        phases = {}
        for dy, dx in SHIFTS:
            with shifted(self.model, self.layer, dy, dx):
                phases[dy, dx] = self.model.scores(images)["out"]
        return {"out": interleave(phases)}

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return {"out": upsample_finer(self.scores(images)["out"], images.shape[-2:], self.output_stride)}


class SimulatedPasses(Passes):
    """The model run as its finer self (output stride halved) by four passes shifted
    before ``layer``: in training, each pass scored against the labels at its own pixels
    and backpropagated before the next (their gradients add up to the finer network's);
    at inference, the passes interleaved (:class:`Simulated`)."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        layer: str
        """Module path of the last down-sampling layer, e.g. "backbone.layer2" for a ResNet
        at output stride 8 simulated at 4."""
        train: bool = True
        """Train with the four passes (FCRN Table 3's "simulated 1/4" training rows)."""
        test: bool = True
        """Evaluate and predict with the four passes (its "simulated 1/4" testing rows)."""

    def __init__(self, config: Config, model: nn.Module, source: str = "<spec>"):
        super().__init__(config, model, source)
        _strided(model, config.layer, source)  # a layer that cannot be simulated is named before training
        self.model = model

    def backward(self, model: nn.Module, images: Tensor, masks: Tensor,
                 objective: Callable[[dict[str, Tensor], Tensor], Tensor],
                 autocast: Callable[[], AbstractContextManager]) -> Tensor:
        if not self.config.train:
            return super().backward(model, images, masks, objective, autocast)
        total = torch.zeros((), dtype=torch.float64, device=images.device)  # summed on the device: no host wait
        for dy, dx in SHIFTS:
            with shifted(self.model, self.config.layer, dy, dx), autocast():
                outputs = model(images, full_size=False)
            size = outputs["out"].shape[-2:]
            if any(scores.shape[-2:] != size for scores in outputs.values()):
                raise CtxsegError(f"run.passes.layer: an auxiliary head reads a feature from before "
                                  f"{self.config.layer!r}; simulation needs every scored map after it")
            labels = label_phase(masks, self.model.output_stride // 2, dy, dx, size)
            value = objective(outputs, labels) / len(SHIFTS)
            value.backward()
            total = total + value.detach().double()
        return total

    def inference(self, model: nn.Module) -> nn.Module:
        return Simulated(model, self.config.layer) if self.config.test else model


@torch.no_grad()
def finer(model: nn.Module, layer: str, probe: Tensor) -> nn.Module:
    """A copy of ``model`` with the stride of ``layer`` removed and every later
    convolution dilated twice as much (and padded so): the network :class:`Simulated`
    simulates. ``probe``, an input, finds which convolutions run after the layer's
    first strided one.
    """
    fine = copy.deepcopy(model)
    strided = _strided(fine, layer)
    order: list[nn.Conv2d] = []
    handles = [m.register_forward_pre_hook(lambda m, _: order.append(m))
               for m in fine.modules() if isinstance(m, nn.Conv2d)]
    was_training = fine.training
    fine.eval()(probe)
    fine.train(was_training)
    for handle in handles:
        handle.remove()
    first = min(order.index(conv) for conv in strided)
    for conv in dict.fromkeys(order[first:]):
        if conv in strided:
            conv.stride = (1, 1)
        elif conv.kernel_size != (1, 1):
            conv.dilation = tuple(2 * d for d in conv.dilation)
            conv.padding = tuple(2 * p for p in conv.padding)
    return fine
