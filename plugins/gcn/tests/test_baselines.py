"""The Fig. 4 score heads and the parameter counts the paper prints for them (Tables 2 and 4).

The paper's setting: the head after res-5 of ResNet-152 (2048 channels), PASCAL VOC's
21 classes. The blocks are instantiated (on the meta device: Table 4's m = 2048 stack
alone holds 76M weights) and their weights counted.

The printed counts are of weights only: with the biases the m = 2048 stack would have
75,888,661 parameters, printed "75889K", not "75885K". Every printed count is the exact
count rounded to the nearest thousand except GCN's k = 3 in Table 2: 260,694 weights
are printed "260K", truncated (rounded: 261K); Table 2's conv k = 9 (3,483,648 ->
"3484K") and Table 4's m = 2048 (75,884,544 -> "75885K") show that the others are
rounded, not truncated. That entry is asserted as truncated.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctxseg_gcn.baselines import ConvStack, score_head
from ctxseg_gcn.global_convolution import GlobalConvolution

RES5, CLASSES = 2048, 21


def weights(module: nn.Module) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if name.endswith("weight"))


def paper_head(head: str, kernel: int, stack_channels: int = 0) -> nn.Module:
    with torch.device("meta"):
        return score_head(head, RES5, CLASSES, kernel, stack_channels)


def thousands(count: int, *, truncated: bool = False) -> int:
    """A count as the paper prints it, in K."""
    return count // 1000 if truncated else round(count / 1000)


# k: (printed GCN, printed conv, exact GCN, exact conv), Table 2 rows 3 and 4.
TABLE_2 = {3: (260, 387, 260_694, 387_072), 5: (434, 1075, 434_490, 1_075_200),
           7: (608, 2107, 608_286, 2_107_392), 9: (782, 3484, 782_082, 3_483_648)}


@pytest.mark.parametrize("kernel", TABLE_2)
def test_table2_parameter_counts(kernel: int) -> None:
    """GCN: two branches, (2048 x 21 + 21 x 21) k weights each; conv: 2048 x 21 x k x k."""
    printed_gcn, printed_conv, exact_gcn, exact_conv = TABLE_2[kernel]
    gcn, conv = paper_head("gcn", kernel), paper_head("conv_kxk", kernel)
    assert isinstance(gcn, GlobalConvolution)
    assert weights(gcn) == 2 * kernel * (RES5 * CLASSES + CLASSES * CLASSES) == exact_gcn
    assert weights(conv) == RES5 * CLASSES * kernel * kernel == exact_conv
    assert thousands(exact_gcn, truncated=kernel == 3) == printed_gcn
    assert thousands(exact_conv) == printed_conv
    assert weights(gcn) < weights(conv)  # "for any given kernel size, the trivial convolution design contains more"


# m: (printed, exact), Table 4, k = 7: three 3x3 convs 2048 -> m -> m -> 21.
TABLE_4 = {2048: (75885, 75_884_544), 1024: (28505, 28_505_088), 210: (4307, 4_307_310)}


@pytest.mark.parametrize("m", TABLE_4)
def test_table4_parameter_counts(m: int) -> None:
    printed, exact = TABLE_4[m]
    stack = paper_head("stack3x3", 7, stack_channels=m)
    assert [(c.in_channels, c.out_channels) for c in stack] == [(RES5, m), (m, m), (m, CLASSES)]
    assert weights(stack) == 9 * (RES5 * m + m * m + m * CLASSES) == exact
    assert thousands(exact) == printed


def test_table4_gcn_column_is_table2_k7() -> None:
    assert thousands(weights(paper_head("gcn", 7))) == 608  # "2048 (GCN)": 608K


def test_the_printed_counts_exclude_biases() -> None:
    stack = paper_head("stack3x3", 7, stack_channels=2048)
    assert thousands(sum(p.numel() for p in stack.parameters())) == 75889 != TABLE_4[2048][0]


def test_table3_stack_defaults_to_the_input_width() -> None:
    """Table 4's m = 2048 row is Table 3's k = 7 stack (71.3): m is the width of res-5."""
    assert weights(paper_head("stack3x3", 7)) == TABLE_4[2048][1]


@pytest.mark.parametrize(("kernel", "depth"), [(3, 1), (5, 2), (7, 3), (11, 5)])
def test_stack_has_the_equivalent_kernel(kernel: int, depth: int) -> None:
    """(k - 1) / 2 3x3 convs and no nonlinearity: one k x k linear map (two 3x3 ~ one 5x5)."""
    stack = ConvStack(3, 2, kernel, channels=4)
    assert len(stack) == depth and all(isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3) for c in stack)
    x = torch.zeros(1, 3, 2 * kernel + 1, 2 * kernel + 1, requires_grad=True)
    stack(x)[0, :, kernel, kernel].sum().backward()
    rows = (x.grad[0].abs().sum((0, 2)) > 0).nonzero().flatten()
    assert rows.tolist() == list(range(kernel - kernel // 2, kernel + kernel // 2 + 1))


def test_k3_stack_is_a_single_3x3_conv_like_conv_kxk() -> None:
    """Tables 2 and 3 both report 69.8 for k = 3: the same head."""
    stack, conv = paper_head("stack3x3", 3), paper_head("conv_kxk", 3)
    assert len(stack) == 1 and stack[0].weight.shape == conv.weight.shape == (21, 2048, 3, 3)


def test_conv1x1_baseline_ignores_the_kernel() -> None:
    assert paper_head("conv1x1", 15).weight.shape == (21, 2048, 1, 1)


def test_stack_needs_an_equivalent_kernel_of_at_least_3() -> None:
    with pytest.raises(ValueError, match="odd equivalent kernel >= 3, got 1"):
        ConvStack(4, 2, 1, channels=4)
