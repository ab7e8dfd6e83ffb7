"""GCN's whole pipeline: score maps from several stages, fused coarse to fine by learned deconvolution.

Peng, Zhang, Yu, Luo and Sun, "Large Kernel Matters — Improve Semantic Segmentation by
Global Convolutional Network", CVPR 2017, https://arxiv.org/abs/1703.02719, Sec. 3.2,
Fig. 2 A, Sec. 4.1 (Tables 1-5).

"We use pretrained ResNet as the feature network and FCN4 as the segmentation
framework. [...] Global Convolutional Network structures are used to generate
multi-scale semantic score maps for each class. [...] score maps of lower resolution
will be upsampled with a deconvolution layer, then added up with higher ones to
generate new score maps. The final semantic score map will be generated after the
last upsampling." With the spec's ``inputs = ["c2", "c3", "c4", "c5"]`` of an
undilated ResNet (strides 4 to 32) this is::

    c5 -> GCN -> BR -> deconv -> + -> BR -> deconv -> + -> BR -> deconv -> + -> BR -> deconv -> BR -> deconv -> BR
    c4 -> GCN -> BR -------------'                     |                     |           (stride 2)         (stride 1)
    c3 -> GCN -> BR -----------------------------------'                     |
    c2 -> GCN -> BR ---------------------------------------------------------'

nine BR blocks in all. Fig. 2 A itself is not in ctxseg's text copy of the paper; the
layout follows the text and the paper's common re-implementations. Choices left open:

* Every deconvolution upsamples 2x: kernel 4, stride 2, padding 1 and no bias, as
  FCN's score upsampling; an input k times coarser than the next finer one goes
  through log2(k) of them, so strides must be powers of two apart. Each step is
  followed by a BR block: after the sum where an input joins, alone in the tail and
  where a stride is skipped. Inputs at the same stride are summed.
* ``deconv_init = "bilinear"`` starts every deconvolution as bilinear upsampling of
  each class map (FCN's initialisation; away from the border it equals
  ``F.interpolate(scale_factor=2, mode="bilinear", align_corners=False)``), and it is
  learned from there. ``"random"`` keeps PyTorch's default initialisation.
* A 2x upsampled map larger than the finer map it joins is cropped to it at the
  bottom and right (FCN's crop layer), which happens when the image size is not a
  multiple of the coarsest stride; the tail then ends at the finest input's size times
  its stride, and the model resizes the scores to the image.
* The inputs are fused by stride, whatever their order in the spec.
* ``refine = false`` drops every BR block: Tables 1-4 run "except that Boundary
  Refinement block is not applied"; Table 5 adds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from ctxseg.errors import SpecError
from ctxseg.interfaces import Fusion
from ctxseg.nn import channel_count, odd_kernel
from ctxseg_gcn.baselines import Head, score_head
from ctxseg_gcn.boundary_refinement import BoundaryRefinement

__all__ = ["GCNFusion"]


def _kernel_fits_head(config: GCNFusion.Config, attribute: attrs.Attribute, value: int) -> None:
    odd_kernel(config, attribute, value)
    if config.head == "stack3x3" and value < 3:
        raise ValueError(f"a stack of 3x3 convs needs an equivalent kernel >= 3, got {value}")


class GCNFusion(Fusion):
    """Per input a score head and BR, then 2x deconvolutions + BR from the coarsest stride to 1.

    Inputs ``(B, C_i, H/s_i, W/s_i)`` with every ``s_i`` a power of two; output class
    scores ``(B, K, H, W)`` (``out_stride = 1``, ``emits_scores``: the model adds no
    classifier).
    """

    emits_scores = True
    out_stride = 1

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        head: Head = attrs.field(default="gcn",
                                 validator=attrs.validators.in_(("gcn", "conv1x1", "conv_kxk", "stack3x3")))
        """Score head per input (Fig. 4): GCN, or the 1x1 conv (Table 1 "base"), k x k conv
        (Table 2) or stack of 3x3 convs (Tables 3-4) it is compared with."""
        kernel: int = attrs.field(default=15, validator=_kernel_fits_head)
        """k of GCN, of the k x k conv and the stack's equivalent kernel: 15 is Table 1's
        best; Cityscapes takes 25 (Sec. 4.3). Ignored by ``conv1x1``."""
        stack_channels: int = attrs.field(default=0, validator=channel_count(0))
        """m, the width inside a ``stack3x3`` head (Table 4); 0 means the input's own width
        (Table 3: m = 2048 on res-5)."""
        refine: bool = attrs.field(default=True, validator=attrs.validators.instance_of(bool))
        """Boundary Refinement blocks (Table 5); Tables 1-4 run without them."""
        deconv_init: Literal["bilinear", "random"] = attrs.field(
            default="bilinear", validator=attrs.validators.in_(("bilinear", "random")))
        """Start of the learned 2x deconvolutions: bilinear upsampling (FCN's), or random."""

    def __init__(self, config: Config, in_channels: list[int], strides: list[int], num_classes: int):
        super().__init__()
        self.out_channels = num_classes
        self.levels = _levels(strides)  # coarsest stride, its half, ..., 1
        self.inputs_at = {s: [i for i, t in enumerate(strides) if t == s] for s in self.levels}
        self.heads = nn.ModuleList(
            score_head(config.head, c, num_classes, config.kernel, config.stack_channels) for c in in_channels)
        self.branch_refine = nn.ModuleList(_refinement(config.refine, num_classes) for _ in in_channels)
        self.upsample = nn.ModuleList(_deconvolution(num_classes, config.deconv_init) for _ in self.levels[1:])
        # A BR after each 2x step, and at the coarsest stride only where inputs are summed.
        self.refine = nn.ModuleList(
            _refinement(config.refine and (i > 0 or len(self.inputs_at[s]) > 1), num_classes)
            for i, s in enumerate(self.levels))

    def forward(self, maps: Sequence[Tensor]) -> Tensor:
        branches = zip(self.heads, self.branch_refine, maps)
        scores = [refine(head(x)) for head, refine, x in branches]  # [(B, K, H/s_i, W/s_i)]
        x = sum(scores[i] for i in self.inputs_at[self.levels[0]])  # (B, K, H/s_max, W/s_max)
        x = self.refine[0](x)
        for stride, upsample, refine in zip(self.levels[1:], self.upsample, self.refine[1:]):
            x = upsample(x)  # (B, K, H/stride, W/stride), 2x the previous level
            for i in self.inputs_at[stride]:
                x = x[..., : scores[i].shape[-2], : scores[i].shape[-1]] + scores[i]
            x = refine(x)
        return x  # (B, K, H, W)


def _levels(strides: Sequence[int]) -> list[int]:
    """The strides the fusion passes through, coarsest first: ``[s_max, s_max / 2, ..., 1]``.

    :raises SpecError: naming the strides, when they are not powers of two apart or the
        finest is not a power of two (then 2x steps cannot reach full resolution).
    """
    finest, coarsest = min(strides), max(strides)
    for stride in strides:
        ratio, rest = divmod(stride, finest)
        if rest or ratio & (ratio - 1):
            raise SpecError(
                f"gcn.fusion: input strides {list(strides)} are not powers of two apart ({stride} / {finest} = "
                f"{stride / finest:g}); the fusion upsamples by learned 2x deconvolutions and adds each input at "
                f"its stride")
    if finest & (finest - 1):
        raise SpecError(
            f"gcn.fusion: the finest input stride {finest} (strides {list(strides)}) is not a power of two; the "
            f"fusion upsamples by learned 2x deconvolutions to full resolution (stride 1)")
    return [coarsest >> i for i in range(coarsest.bit_length())]


def _refinement(enabled: bool, channels: int) -> nn.Module:
    return BoundaryRefinement(channels) if enabled else nn.Identity()


def _deconvolution(channels: int, init: str) -> nn.ConvTranspose2d:
    """A learned 2x upsampling ``(B, C, h, w) -> (B, C, 2h, 2w)``, bilinear at the start if asked."""
    deconv = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)
    if init == "bilinear":
        taps = torch.tensor([0.25, 0.75, 0.75, 0.25])  # FCN's bilinear filter for factor 2
        with torch.no_grad():
            deconv.weight.zero_()
            for c in range(channels):
                deconv.weight[c, c] = torch.outer(taps, taps)  # each class map upsampled on its own
    return deconv
