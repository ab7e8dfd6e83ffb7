"""The context module: multi-scale context from dilated convolutions on score maps.

Yu and Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016,
https://arxiv.org/abs/1511.07122, Sec. 3 (Table 1, Eq. 4 and 5) and Sec. 5.

The module reads C feature maps, in the paper the front end's C = 21 class scores, and
returns C maps of the same size, so it plugs in after any network that emits them.
Seven 3x3 convolutions dilated 1, 1, 2, 4, 8, 16 and 1, each followed by truncation
max(., 0), grow the receptive field exponentially to 67 x 67 without losing
resolution (Table 1); a final 1x1 convolution, with no truncation, gives the output
scores. The basic module keeps C channels throughout (64 C^2 weights), the large one
widens to 32 C.

Random initialization does not train ("standard initialization procedures do not
readily support the training of the module", Sec. 3): the module starts as the
identity (Eq. 4; Eq. 5 with a little noise for the large one) and backpropagation then
"harvests the contextual information". That identity holds on non-negative maps only:
the first truncation clips negative values, so the identity module returns
``max(x, 0)``, and a map with no positive value gives zeros and no gradient. The
module therefore declares ``input_domain = "nonnegative"`` for the contract kit. The
paper feeds it the front end's unnormalized scores (its last layer has no truncation),
which are real: there, too, the first truncation clips the negative part.

Like the front end, the module pads no intermediate map: the input is padded once by
33 pixels, the sum of the dilations (Sec. 5; :mod:`ctxseg_dilation.padding`).
"""

from __future__ import annotations

from typing import Literal

import attrs
import torch
from torch import Tensor, nn

from ctxseg.interfaces import ContextHead
from ctxseg_dilation.padding import margin, pad

__all__ = ["ContextModule", "identity_"]

DILATIONS = (1, 1, 2, 4, 8, 16, 1)
"""Layers 1-7 of Table 1: 3x3 convolutions, each followed by truncation. The expansion
stops after layer 6 because the front end's maps are 64 x 64 (Sec. 3)."""

WIDTHS = {"basic": (1, 1, 1, 1, 1, 1, 1, 1), "large": (2, 2, 4, 8, 16, 32, 32, 1)}
"""Output channels of layers 1-8 in multiples of C (Table 1)."""


def identity_(conv: nn.Conv2d, maps: int, noise: float) -> None:
    """Eq. 5: ``conv`` passes each of the ``maps`` input maps on, spread evenly over its
    ``c_out / maps`` output channels; zero bias.

    Input channel ``a`` of ``c_in`` descends from map ``floor(a maps / c_in)``, output
    channel ``b`` of ``c_out`` from ``floor(b maps / c_out)``; the kernel's centre tap
    joining channels of the same map is ``maps / c_out``, every other weight is noise
    of standard deviation ``noise * maps / c_out`` (the paper's sigma << C / c_{i+1}).
    A layer whose inputs are the maps spread this way (each map's channels summing to it)
    gives outputs spread the same way, so a stack of such layers with truncations
    between them is the identity on non-negative maps, up to the noise. Eq. 4, the basic
    module's, is the case ``c_in = c_out = maps`` without noise.
    """
    c_out, c_in, height, width = conv.weight.shape
    device = conv.weight.device
    same = (torch.arange(c_out, device=device)[:, None] * maps // c_out
            == torch.arange(c_in, device=device)[None, :] * maps // c_in)  # (c_out, c_in)
    with torch.no_grad():
        conv.weight.normal_(0.0, noise * maps / c_out)
        centre = conv.weight[:, :, height // 2, width // 2]  # (c_out, c_in), a view
        centre.copy_(torch.where(same, maps / c_out, centre))
        conv.bias.zero_()


class ContextModule(ContextHead):
    """Table 1's context network: ``(B, C, h, w) -> (B, C, h, w)`` for any C and h, w >= 1.

    ``layers`` holds the eight convolutions and the seven truncations, unpadded; the
    forward pass pads the input by ``margin`` (33) pixels first.
    """

    input_domain = "nonnegative"  # Eq. 4 passes on max(x, 0): see the module docstring

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        variant: Literal["basic", "large"] = attrs.field(
            default="basic", validator=attrs.validators.in_(("basic", "large")))
        """Table 1's "Basic" (C channels in every layer, 64 C^2 weights; 71.3 mean IoU
        after the front end, Table 3) or "Large" (2C, 2C, 4C, 8C, 16C, 32C, 32C, C; 72.1)."""
        init: Literal["identity", "random"] = attrs.field(
            default="identity", validator=attrs.validators.in_(("identity", "random")))
        """"identity": Eq. 4 (basic) or Eq. 5 (large), zero biases. "random": He et al.'s
        normal initialization for ReLU networks (fan-in), zero biases, the kind of
        "standard initialization procedure" that Sec. 3 reports does not train."""
        noise: float = attrs.field(default=1e-3, validator=attrs.validators.ge(0.0))
        """Standard deviation of Eq. 5's noise as a fraction of the identity weight
        C / c_{i+1} of each layer (the paper only asks for sigma << C / c_{i+1}); it breaks
        the ties among channels with a common predecessor, so it applies to the large
        module only. Eq. 4 has no noise: the basic module has no ties."""
        padding: Literal["reflect", "zero"] = attrs.field(
            default="reflect", validator=attrs.validators.in_(("reflect", "zero")))
        """Fill of the 33-pixel buffer around the input (Sec. 5: "zero padding and
        reflection padding yielded similar results"); reflection, as the front end's image."""

    def __init__(self, config: Config, in_channels: int, num_classes: int):
        super().__init__()
        self.out_channels = in_channels  # C maps in, C maps out (Sec. 3)
        self.emits_scores = in_channels == num_classes  # on the front end's C score maps, as in the paper
        self.padding = config.padding
        widths = [in_channels * factor for factor in WIDTHS[config.variant]]
        layers: list[nn.Module] = []
        channels = in_channels
        for dilation, width in zip(DILATIONS, widths):
            layers += [nn.Conv2d(channels, width, 3, dilation=dilation), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.Conv2d(channels, in_channels, 1))  # layer 8: no truncation (Table 1), scores out
        self.layers = nn.Sequential(*layers)
        self.margin = margin(self.layers)  # 33 = sum of the dilations
        noise = config.noise if config.variant == "large" else 0.0
        for conv in (layer for layer in self.layers if isinstance(layer, nn.Conv2d)):
            if config.init == "identity":
                identity_(conv, in_channels, noise)
            else:
                nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
                nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        m = self.margin
        x = pad(x, m, m, m, m, self.padding)  # (B, C, h + 66, w + 66)
        return self.layers(x)  # (B, C, h, w)
