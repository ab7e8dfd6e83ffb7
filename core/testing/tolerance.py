"""Tolerances derived from the arithmetic, for comparisons that must hold on every machine.

Two runs of one network differ by rounding alone when the CPU's instruction set, the
thread count or the library sums in another order, or when bf16 autocast rounds each
layer's inputs. A bound that was read off one machine's output fails on the next; these
are derived instead, from the number format's unit roundoff ``u`` (half its machine
epsilon), how many roundings a result went through, and the scale of the values compared.

The model is the probabilistic rounding-error analysis of Higham and Mary ("A new approach
to probabilistic rounding error analysis", SIAM J. Sci. Comput. 41(5), 2019): ``N``
roundings, each a relative error of at most ``u`` of a term of the result's scale, and
independent, move the result by at most ``lambda * sqrt(N) * u * scale`` except with
probability ``2 exp(-lambda**2 / 2)``. With ``lambda = 6`` that probability is 3e-8, so a
comparison of a few million values fails by chance about once in ten runs of the suite at
worst; the worst-case bound (``N * u``) would accept almost anything.

Labels are compared only where they are determined (:func:`determined`): a pixel whose
two best scores are closer than twice the bound may take either label in a correct run.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["CONFIDENCE", "TF32", "autocast_bound", "determined", "layers", "rounding_bound", "summation_bound", "training_bound",
           "unit_roundoff"]

CONFIDENCE = 6.0
"""lambda of the probabilistic bound: it fails with probability 2 exp(-18) = 3e-8 per value."""


TF32 = "tf32"
"""The format CUDA's fp32 convolutions and matrix products round their inputs to by default
(Ampere and later): fp32's range with 10 mantissa bits. Pass it where a dtype is asked for."""


def unit_roundoff(dtype: torch.dtype | str) -> float:
    """``u``: the largest relative error of rounding one value to ``dtype`` (fp32 2**-24, bf16 2**-8,
    :data:`TF32` 2**-11)."""
    return 2.0 ** -11 if dtype == TF32 else torch.finfo(dtype).eps / 2


def rounding_bound(dtype: torch.dtype | str, roundings: int, scale: float) -> float:
    """How far ``roundings`` independent roundings to ``dtype``, each of a term of ``scale``, move a result."""
    return CONFIDENCE * math.sqrt(roundings) * unit_roundoff(dtype) * scale


def layers(model: nn.Module) -> tuple[int, int]:
    """``(depth, length)``: the convolutions and linear layers a value can pass through (every
    one counted, an upper bound on the longest path) and the longest sum one of them computes
    (input channels per group x kernel area)."""
    summing = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    lengths = [m.in_features if isinstance(m, nn.Linear) else m.in_channels // m.groups * math.prod(m.kernel_size)
               for m in summing]
    return len(summing), max(lengths, default=1)


def summation_bound(model: nn.Module, scale: float, dtype: torch.dtype | str = torch.float32) -> float:
    """How far two runs of ``model`` in ``dtype`` that sum in different orders (another ISA,
    thread count or library) can differ on outputs of ``scale``: each run's ``depth`` layers
    add at most ``length`` roundings to each output, and the two runs' errors add."""
    depth, length = layers(model)
    return 2 * rounding_bound(dtype, depth * length, scale)


def training_bound(model: nn.Module, scale: float, positions: int, dtype: torch.dtype | str = torch.float32, *,
                   value: float = 0.0, steps: int = 1) -> float:
    """How far two trainings of ``model`` that sum in different orders can end apart after a few
    ``steps``, on weights that moved by ``scale`` and are at most ``value`` in size. A weight's
    gradient sums a term per position of the batch (``positions``: its pixels), of random sign in
    an untrained network, so the terms' magnitudes add up to about sqrt(positions) times the sum;
    summed one after another (scalar kernels, another thread split) the rounding reaches
    ``positions * u`` of those magnitudes, the worst case of recursive summation, which the
    probabilistic bound does not cover here (a batch's partial sums round with one bias):
    ``positions**1.5 * u`` of the gradient, beside what the backward pass through the layers
    adds (as :func:`summation_bound`). Each step also stores the updated weight, rounding it by
    up to ``u * value`` (a batch norm's scale near 1 moves by a few ulps of 1). A few steps give
    the network's sensitivity no time to grow the difference."""
    depth, length = layers(model)
    u = unit_roundoff(dtype)
    relative = u * positions ** 1.5 + CONFIDENCE * u * math.sqrt(depth * length)
    return 2 * (relative * scale + steps * u * value)


def autocast_bound(model: nn.Module, scale: float) -> float:
    """How far ``model`` under bf16 autocast can be from its fp32 run, on outputs of ``scale``:
    every layer rounds its input, its weights and its output to bf16 (three roundings per
    layer; fp32 accumulation adds nothing of this order)."""
    depth, _ = layers(model)
    return rounding_bound(torch.bfloat16, 3 * depth, scale)


def determined(scores: Tensor, bound: float) -> Tensor:
    """Pixels (``scores`` ``(..., K, H, W)`` -> ``(..., H, W)``) whose label no error of at most
    ``bound`` in each score can change: the best score leads the second by more than twice it."""
    top = scores.topk(2, dim=-3).values
    return top[..., 0, :, :] - top[..., 1, :, :] > 2 * bound
