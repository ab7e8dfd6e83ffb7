"""L2Norm (ParseNet Sec. 3.3): Eq. 1-3 forward, Eq. 4-6 gradients, and safety at zero."""

from __future__ import annotations

import math

import pytest
import torch

from ctxseg_parsenet.l2norm import EPS, L2Norm

pytestmark = pytest.mark.numerics  # derived tolerances, rerun by .ci/portability


def test_gradients_equal_the_closed_form_of_eq_4_to_6() -> None:
    """Autograd through Eq. 1-3 gives the paper's derivatives, per pixel, in float64."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64, generator=generator).requires_grad_()
    upstream = torch.randn(2, 5, 3, 4, dtype=torch.float64, generator=generator)  # dl/dy
    norm = L2Norm(5).double()
    with torch.no_grad():
        norm.gamma.copy_(torch.rand(5, dtype=torch.float64, generator=generator) * 20)
    (norm(x) * upstream).sum().backward()

    gamma = norm.gamma.detach()
    xs = x.detach().permute(0, 2, 3, 1).reshape(-1, 5)  # (pixels, d): one feature vector per pixel
    dl_dy = upstream.permute(0, 2, 3, 1).reshape(-1, 5)  # (pixels, d)
    length = xs.norm(dim=1)  # (pixels,) ||x||_2, Eq. 2
    x_hat = xs / length[:, None]  # Eq. 1
    dl_dx_hat = dl_dy * gamma  # Eq. 4
    jacobian = (torch.eye(5, dtype=torch.float64) / length[:, None, None]
                - xs[:, :, None] * xs[:, None, :] / length[:, None, None] ** 3)  # (pixels, d, d), Eq. 5
    dl_dx = torch.einsum("pi,pij->pj", dl_dx_hat, jacobian)  # Eq. 5
    dl_dgamma = (dl_dy * x_hat).sum(0)  # Eq. 6, summed over every pixel of the batch

    torch.testing.assert_close(x.grad.permute(0, 2, 3, 1).reshape(-1, 5), dl_dx, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(norm.gamma.grad, dl_dgamma, rtol=1e-8, atol=1e-12)


def test_output_norm_is_gamma_at_every_pixel() -> None:
    x = torch.randn(2, 16, 5, 7) * torch.logspace(-2, 3, 7)  # scales as different as Fig. 2's layers
    y = L2Norm(16, scale=10.0)(x)
    torch.testing.assert_close(y.norm(dim=1), torch.full((2, 5, 7), 10.0))
    torch.testing.assert_close(y / y.norm(dim=1, keepdim=True), x / x.norm(dim=1, keepdim=True))


def test_gamma_equal_to_the_norm_recovers_the_feature() -> None:
    """Sec. 3.3: "by setting gamma_i = ||x||_2, we could recover the l2 normalized feature"."""
    x = torch.randn(1, 8, 1, 1, dtype=torch.float64) * 37.0
    norm = L2Norm(8).double()
    with torch.no_grad():
        norm.gamma.fill_(x.norm().item())
    torch.testing.assert_close(norm(x), x, rtol=1e-12, atol=0.0)


def test_zero_vector_gives_finite_output_and_gradient() -> None:
    x = torch.randn(1, 4, 2, 3)
    x[0, :, 1, 2] = 0.0  # a pixel where every (ReLU) channel is off
    x.requires_grad_()
    norm = L2Norm(4, scale=10.0)
    y = norm(x)
    assert torch.isfinite(y).all()
    assert (y[0, :, 1, 2] == 0).all()
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(norm.gamma.grad).all()
    # There the layer is linear with slope gamma / sqrt(eps), the documented bound.
    torch.testing.assert_close(x.grad[0, :, 1, 2], torch.full((4,), 10.0 / math.sqrt(EPS)))

    zeros = torch.zeros(2, 4, 3, 3, requires_grad=True)
    norm(zeros).square().sum().backward()
    assert torch.isfinite(zeros.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_neither_overflows_nor_loses_the_norm(dtype: torch.dtype) -> None:
    x = torch.full((1, 1024, 2, 2), 100.0, dtype=dtype)  # sum of squares 1e7, beyond float16's 65504
    y = L2Norm(1024, scale=10.0)(x)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float().norm(dim=1), torch.full((1, 2, 2), 10.0), rtol=1e-2, atol=0.0)


def test_one_parameter_per_channel() -> None:
    """Sec. 3.3: "The number of extra parameters is equal to total number of channels"."""
    norm = L2Norm(1024, scale=20.0)
    assert sum(p.numel() for p in norm.parameters()) == 1024
    assert (norm.gamma == 20.0).all()
