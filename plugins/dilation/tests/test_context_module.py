"""The context module (Sec. 3, Table 1, Eq. 4-5): contract, receptive fields, sizes, initialization."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ctxseg.errors import SpecError
from ctxseg.registry import default_registry
from ctxseg.spec.convert import structure
from ctxseg.testing import check_component, check_context_head
from ctxseg_dilation.context_module import ContextModule

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability

TABLE_1_FIELDS = [3, 5, 9, 17, 33, 65, 67, 67]
"""Receptive field of layers 1-8 (Table 1)."""


def module(channels: int = 3, **params) -> ContextModule:
    return ContextModule(ContextModule.Config(**params), channels, channels)


def convs(context: ContextModule) -> list[nn.Conv2d]:
    return [layer for layer in context.layers if isinstance(layer, nn.Conv2d)]


def test_registered_module_passes_the_contract() -> None:
    component = default_registry().get("context_head", "dilation.context_module")
    assert component.distribution == "ctxseg-dilation"
    assert component.load() is ContextModule
    check_component(component)  # basic, identity, reflection


@pytest.mark.parametrize("params", [{"padding": "zero"}, {"variant": "large"}, {"variant": "large", "padding": "zero"}],
                         ids=["basic_zero", "large", "large_zero"])
def test_identity_variants_pass_the_contract(params: dict) -> None:
    check_context_head(ContextModule, params, max_examples=6)


def test_declares_non_negative_maps() -> None:
    """Eq. 4 passes a map on only where it is non-negative (truncation follows every layer):
    a map with no positive value gives zeros and no gradient, so the contract holds on
    non-negative maps, the domain the module declares."""
    assert ContextModule.input_domain == "nonnegative"
    context = module(1)
    x = (-torch.rand(2, 1, 1, 1)).requires_grad_()
    context(x).sum().backward()
    assert not context(x).any() and not x.grad.any()


def test_paper_defaults() -> None:
    config = ContextModule.Config()
    assert (config.variant, config.init, config.padding) == ("basic", "identity", "reflect")
    assert 0 < config.noise <= 1e-2  # sigma << C / c_{i+1} (Eq. 5)


def test_layers_of_table_1() -> None:
    c = 5
    basic, large = module(c), module(c, variant="large")
    for context, widths in ((basic, [c] * 8), (large, [2 * c, 2 * c, 4 * c, 8 * c, 16 * c, 32 * c, 32 * c, c])):
        layers = convs(context)
        assert [conv.kernel_size for conv in layers] == [(3, 3)] * 7 + [(1, 1)]
        assert [conv.dilation[0] for conv in layers] == [1, 1, 2, 4, 8, 16, 1, 1]
        assert [conv.padding for conv in layers] == [(0, 0)] * 8  # no intermediate padding
        assert [conv.out_channels for conv in layers] == widths
        # Truncation after layers 1-7, none after layer 8: the module ends with scores.
        assert [type(layer) for layer in context.layers] == [nn.Conv2d, nn.ReLU] * 7 + [nn.Conv2d]
        assert context.margin == 33 and context.out_channels == c


def _field(stack: nn.Module, channels: int, size: int = 81) -> int:
    """Width of the input region on which the centre output pixel depends, from gradients.

    Positive weights and a positive input: no truncation can hide a path.
    """
    probe = stack.double()
    with torch.no_grad():
        for conv in probe:
            if isinstance(conv, nn.Conv2d):
                conv.weight.fill_(1.0 / conv.weight[0].numel())
                conv.bias.zero_()
    x = (1.0 + torch.rand(1, channels, size, size, dtype=torch.float64)).requires_grad_()
    out = probe(x)  # unpadded: (1, C, size - field + 1, size - field + 1)
    centre = out.shape[-1] // 2
    out[0, :, centre, centre].sum().backward()
    rows = x.grad[0].abs().sum((0, 2)).nonzero().flatten()
    cols = x.grad[0].abs().sum((0, 1)).nonzero().flatten()
    assert 0 < rows[0] and rows[-1] < size - 1, "the field reaches the input's border: measure on a larger input"
    assert rows[-1] - rows[0] == cols[-1] - cols[0]
    return int(rows[-1] - rows[0] + 1)


@pytest.mark.parametrize("variant", ["basic", "large"])
def test_receptive_field_of_each_layer_is_table_1(variant: str) -> None:
    """Layers 1-8 measured from gradients: 3, 5, 9, 17, 33, 65, 67, 67 (Table 1)."""
    context = module(2, variant=variant)
    ends = [i + 1 for i, layer in enumerate(context.layers) if isinstance(layer, nn.Conv2d)]
    assert [_field(context.layers[:end], 2) for end in ends] == TABLE_1_FIELDS


def test_receptive_field_of_the_padded_module_is_67() -> None:
    """The whole module, input buffer included, on a map larger than its field."""
    context = module(2, padding="zero").double()
    with torch.no_grad():
        for conv in convs(context):
            conv.weight.fill_(1.0 / conv.weight[0].numel())
    x = (1.0 + torch.rand(1, 2, 81, 81, dtype=torch.float64)).requires_grad_()
    context(x)[0, :, 40, 40].sum().backward()
    rows = x.grad[0].abs().sum((0, 2)).nonzero().flatten()
    assert (int(rows[0]), int(rows[-1])) == (40 - 33, 40 + 33)


@pytest.mark.parametrize("channels", [1, 4, 21])
def test_basic_module_has_64_c_squared_weights(channels: int) -> None:
    """Sec. 3: "~64 C^2 parameters in total": 7 x 9 C^2 in the 3x3 layers and C^2 in the 1x1
    layer are exactly 64 C^2 weights; the 8 C biases make up the "~"."""
    context = module(channels)
    weights = sum(conv.weight.numel() for conv in convs(context))
    biases = sum(conv.bias.numel() for conv in convs(context))
    assert weights == 64 * channels**2
    assert sum(p.numel() for p in context.parameters()) == 64 * channels**2 + 8 * channels == weights + biases


def test_large_module_weights() -> None:
    """Table 1's widths: 9 C^2 (2 + 4 + 8 + 32 + 128 + 512 + 1024) + 32 C^2 = 15422 C^2."""
    c = 21
    with torch.device("meta"):
        context = module(c, variant="large")
    assert sum(conv.weight.numel() for conv in convs(context)) == 15422 * c**2 == 6_801_102


@pytest.mark.parametrize("padding", ["reflect", "zero"])
@pytest.mark.parametrize("channels", [1, 3, 21])
def test_basic_identity_initialization_is_the_identity(channels: int, padding: str) -> None:
    """Eq. 4: every layer passes its input to the next; on non-negative maps the module is the
    identity, exactly (the identity kernels add exact zeros)."""
    context = module(channels, padding=padding).eval()
    for conv in convs(context):
        centre = conv.kernel_size[0] // 2
        expected = torch.zeros_like(conv.weight)
        expected[:, :, centre, centre] = torch.eye(channels)
        assert torch.equal(conv.weight, expected) and not conv.bias.any()
    x = torch.rand(2, channels, 9, 14)
    with torch.no_grad():
        assert torch.equal(context(x), x)
        assert torch.equal(context(x - 0.5), (x - 0.5).clamp_min(0))  # negative scores: max(x, 0)


def test_large_identity_initialization_follows_eq_5() -> None:
    """Centre taps joining channels of one map are C / c_{i+1}; every other weight is noise of
    standard deviation noise x C / c_{i+1}."""
    c, noise = 3, 0.01
    torch.manual_seed(0)
    context = module(c, variant="large", noise=noise)
    for conv in convs(context):
        c_out, c_in, k, _ = conv.weight.shape
        same = torch.tensor([[b * c // c_out == a * c // c_in for a in range(c_in)] for b in range(c_out)])
        centre = conv.weight[:, :, k // 2, k // 2]
        assert torch.equal(centre[same], torch.full((int(same.sum()),), c / c_out))
        assert int(same.sum()) == c_out * (c_in // c)  # each output map has c_i / C predecessors
        others = torch.cat([centre[~same], conv.weight.flatten(2)[:, :, [i for i in range(k * k) if i != k * k // 2]]
                            .flatten()])
        assert others.std().item() == pytest.approx(noise * c / c_out, rel=0.15)
        assert abs(others.mean().item()) < 0.15 * noise * c / c_out
        assert not conv.bias.any()


@pytest.mark.parametrize("channels", [1, 4, 21])
def test_large_identity_initialization_is_close_to_the_identity(channels: int) -> None:
    """Without noise Eq. 5 is the identity up to rounding (maps split into 1/2, 1/4, ...,
    1/32 and summed back). With noise sigma = noise x C / c_{i+1} the first layer adds,
    per output, 9 C noise terms on maps ~ x: a relative error ~ 3 noise sqrt(C) (1.4% for
    C = 21 at the default 1e-3), the later, wider layers less; the bound allows 4x that."""
    x = torch.rand(2, channels, 10, 10)
    with torch.no_grad():
        exact = module(channels, variant="large", noise=0.0).eval()(x)
        torch.testing.assert_close(exact, x, rtol=1e-6, atol=1e-6)
        for noise in (1e-3, 1e-2):
            torch.manual_seed(0)
            y = module(channels, variant="large", noise=noise).eval()(x)
            error = ((y - x).norm() / x.norm()).item()
            assert 0 < error < 12 * noise * math.sqrt(channels)


@pytest.mark.parametrize("variant", ["basic", "large"])
def test_random_initialization_is_not_the_identity(variant: str) -> None:
    """He et al.'s normal init for ReLU networks, the kind Sec. 3 reports does not train."""
    torch.manual_seed(0)
    context = module(8, variant=variant, init="random").eval()
    x = torch.rand(2, 8, 10, 10)
    with torch.no_grad():
        y = context(x)
    assert ((y - x).norm() / x.norm()).item() > 0.5
    for conv in convs(context):
        fan_in = conv.weight[0].numel()
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.25)
        assert not conv.bias.any()


@pytest.mark.parametrize("padding", ["reflect", "zero"])
@pytest.mark.parametrize("variant", ["basic", "large"])
def test_output_size_is_the_input_size(variant: str, padding: str) -> None:
    """The 33-pixel buffer (the sum of the dilations) is exactly what the unpadded layers
    trim, for maps larger or smaller than the buffer, down to one pixel."""
    torch.manual_seed(0)
    context = module(2, variant=variant, padding=padding, init="random")
    for size in [(1, 1), (1, 5), (7, 3), (12, 12), (34, 35), (70, 41)]:
        x = torch.randn(1, 2, *size)
        assert context(x).shape == (1, 2, *size)


def test_zero_and_reflection_padding_agree_away_from_the_border() -> None:
    torch.manual_seed(0)
    reflect = module(2, init="random").eval()
    zero = module(2, init="random", padding="zero").eval()
    zero.load_state_dict(reflect.state_dict())
    x = torch.randn(1, 2, 70, 70)
    with torch.no_grad():
        a, b = reflect(x), zero(x)
    torch.testing.assert_close(a[..., 33:37, 33:37], b[..., 33:37, 33:37])  # fields inside the map
    assert not torch.allclose(a[..., :2, :2], b[..., :2, :2])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"variant": "huge"}, r"model\.context\.variant: expected one of 'basic', 'large'"),
        ({"init": "xavier"}, r"model\.context\.init: expected one of 'identity', 'random'"),
        ({"padding": "replicate"}, r"model\.context\.padding: expected one of 'reflect', 'zero'"),
        ({"noise": -0.1}, r"model\.context: 'noise' must be >= 0"),
    ],
)
def test_bad_parameters_name_the_toml_path(params: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        structure(params, ContextModule.Config, source="spec.toml", path="model.context")
