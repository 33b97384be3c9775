import math

import torch

from dalib.adaptation.blocks import (
    RandomizedMultilinear,
    coral,
    domain_loss,
    entropy,
    grl_schedule,
    multi_kernel_mmd,
    multilinear,
    reverse_grad,
)


def test_gradient_reversal_flips_and_scales_gradients():
    x = torch.randn(5, 3, requires_grad=True)
    (reverse_grad(x, 0.5) * 2.0).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -1.0))
    y = torch.randn(4, requires_grad=True)
    assert torch.equal(reverse_grad(y, 1.0), y)


def test_grl_schedule_rises_from_zero_to_high():
    assert grl_schedule(0.0) == 0.0
    assert math.isclose(grl_schedule(1.0), 2 / (1 + math.exp(-10)) - 1)
    values = [grl_schedule(p / 10, high=0.1) for p in range(11)]
    assert values == sorted(values) and 0.0999 < values[-1] <= 0.1


def test_mmd_near_zero_for_same_sample_and_grows_with_mean_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    # TLlib's estimate: the within-domain means leave out the diagonal the cross mean keeps,
    # so the same sample scores slightly below 0 (measured -0.029)
    assert -0.1 < float(multi_kernel_mmd(x, x)) <= 0
    y = torch.randn(200, 8, generator=g)
    shifts = [multi_kernel_mmd(x, y + d).item() for d in (0.0, 0.5, 1.0, 2.0)]
    assert shifts == sorted(shifts)
    assert shifts[0] < 0.1 < shifts[2]  # measured: 0.02 (same law), 0.88 (shift of 1)


def test_coral_zero_for_equal_covariance_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=g)
    assert coral(x, x + 3.0).abs() < 1e-6  # a mean shift alone is invisible to CORAL
    assert coral(x, x * 3.0) > 0.01


def test_entropy_and_domain_loss():
    uniform = torch.full((2, 4), 0.25)
    assert torch.allclose(entropy(uniform), torch.full((2,), math.log(4)), atol=1e-6)
    assert entropy(torch.tensor([[1.0, 0.0]])).item() < 1e-6
    confident = domain_loss(torch.full((3,), 10.0), torch.full((3,), -10.0))
    confused = domain_loss(torch.zeros(3), torch.zeros(3))
    assert confident < 1e-3 and math.isclose(confused.item(), math.log(2), rel_tol=1e-6)


def test_multilinear_maps():
    f, g = torch.randn(6, 5), torch.softmax(torch.randn(6, 3), 1)
    h = multilinear(f, g)
    assert h.shape == (6, 15) and torch.allclose(h[:, :5], g[:, :1] * f)
    r = RandomizedMultilinear(5, 3, dim=64)
    assert r(f, g).shape == (6, 64)
