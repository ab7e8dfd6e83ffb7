"""The l2 normalization layer with a learned per-channel scale (ParseNet Sec. 3.3).

Liu, Rabinovich and Berg, "ParseNet: Looking Wider to See Better", 2015,
https://arxiv.org/abs/1506.04579, Sec. 3.3, Eq. 1-6.

Features of different layers differ in scale (Fig. 2: conv4_3's values are far larger
than conv5_3's, fc7's and pool6's), so when they are concatenated the larger ones
dominate and training needs careful tuning, or collapses (Table 4, "+ conv3" without
normalization). ParseNet divides each pixel's feature vector by its l2 norm across
channels (Eq. 1-2, done "per each pixel in a feature map") and multiplies channel i by
a learned scale gamma_i (Eq. 3). A unit norm makes the features so small that the
network "can hardly train" (Sec. 3.3; Table 7: 62.58 with norm 1 vs 69.43 with 10), so
gamma starts at 10 or 20.

The gradients of Eq. 4-6 are what autograd computes for this forward pass; the tests
compare the two in float64.

Numerical safety: the norm is ``sqrt(sum_i x_i^2 + eps)`` with ``eps = 1e-10``, as in
the Normalize layer of the authors' Caffe fork (``NormalizeParameter.eps``). On a zero
vector, which ReLU features produce wherever every channel is off, the output is 0 and
the gradient with respect to x is ``gamma / sqrt(eps) = 1e5 * gamma`` times the incoming
gradient: finite, where ``x / ||x||`` gives 0/0 = NaN in both. For any norm above
about 1e-3 the relative change from eps is below 1e-4, so Eq. 1 holds to float32
precision on real features. The sum of squares is taken in at least float32, so under
autocast it neither overflows (float16 tops out at 65504) nor rounds small channels away
(bfloat16 keeps 8 bits).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["L2Norm"]

EPS = 1e-10
"""Added to the squared norm (the authors' Caffe Normalize layer default)."""


class L2Norm(nn.Module):
    """``y = gamma * x / ||x||_2`` per pixel across channels, gamma learned per channel (Eq. 1-3).

    ``(B, C, ...) -> (B, C, ...)``. Adds ``C`` parameters, "equal to total number of
    channels" (Sec. 3.3).

    :param channels: C, the number of channels normalized together.
    :param scale: the initial value of every gamma_i (Sec. 3.3: 10 or 20 train well, 1 hardly).
    :param eps: added to the squared norm so a zero vector has a finite output and gradient.
    """

    def __init__(self, channels: int, scale: float = 10.0, eps: float = EPS):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: Tensor) -> Tensor:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        inverse_norm = torch.rsqrt(wide.square().sum(1, keepdim=True) + self.eps)  # (B, 1, ...), Eq. 2
        x_hat = x * inverse_norm.to(x.dtype)  # (B, C, ...), Eq. 1
        return self.gamma.view(-1, *(1,) * (x.dim() - 2)) * x_hat  # (B, C, ...), Eq. 3

    def extra_repr(self) -> str:
        return f"{self.gamma.numel()}, eps={self.eps}"
