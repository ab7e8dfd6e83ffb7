"""The Boundary Refinement block (BR): a residual correction of score maps near object edges.

Peng, Zhang, Yu, Luo and Sun, "Large Kernel Matters — Improve Semantic Segmentation by
Global Convolutional Network", CVPR 2017, https://arxiv.org/abs/1703.02719, Sec. 3.2, Fig. 2 C.

"We model the boundary alignment as a residual structure": the refined score map is
``S~ = S + R(S)`` with ``R`` a 3x3 conv, ReLU and another 3x3 conv on the coarse score
map ``S``. Unlike a CRF post-process it is trained end-to-end with the network. Table 5
finds it improves the accuracy near boundaries (71.5 -> 73.4 %) and hardly the
internal region, where GCN's large kernels help instead.

Both convs keep the channel count (the classes) and have a bias; the paper shows no
batch normalization in the block. With the last conv at zero the block is the
identity, so it can be inserted into a trained pipeline without changing it.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["BoundaryRefinement"]


class BoundaryRefinement(nn.Module):
    """``S + conv3x3(ReLU(conv3x3(S)))``: ``(B, C, h, w) -> (B, C, h, w)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, scores: Tensor) -> Tensor:
        return scores + self.residual(scores)  # (B, C, h, w)
