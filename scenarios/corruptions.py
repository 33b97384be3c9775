"""Image corruptions at five severities, in the spirit of MNIST-C (Mu & Gilmer, "MNIST-C: A
Robustness Benchmark for Computer Vision", 2019) and ImageNet-C (Hendrycks & Dietterich,
ICLR 2019), computed with torch from any images in [0, 1]: the ``corrupt`` shift applies one
to a domain, reproducibly from the scenario's seed. Families: ``noise``, ``blur``,
``geometric``, ``appearance`` and ``occlusion`` (the severities' parameters are dalib's,
scaled for 28 x 28 digits; MNIST-C publishes images, not a parameter table)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Fn = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


def _level(values: tuple[float, ...], severity: int) -> float:
    return values[severity - 1]


def _signs(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=g).float() * 2 - 1


def _affine(x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(matrices.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depth-wise 2-D convolution with a (k x k) kernel, the borders replicated."""
    c, k = x.shape[1], kernel.shape[-1]
    weight = kernel.to(x.dtype).expand(c, 1, k, k)
    return F.conv2d(F.pad(x, [k // 2] * 4, mode="replicate"), weight, groups=c)


def gaussian_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    std = _level((0.08, 0.12, 0.18, 0.26, 0.38), severity)
    return x + torch.randn(x.shape, generator=g) * std


def shot_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    photons = _level((60.0, 25.0, 12.0, 5.0, 3.0), severity)
    return torch.poisson(x * photons, generator=g) / photons


def impulse_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    amount = _level((0.03, 0.06, 0.09, 0.17, 0.27), severity)
    u = torch.rand(x.shape, generator=g)
    salt = torch.rand(x.shape, generator=g) < 0.5
    return torch.where(u < amount, salt.to(x.dtype), x)


def gaussian_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    sigma = _level((0.5, 0.75, 1.0, 1.5, 2.0), severity)
    r = torch.arange(-3, 4, dtype=torch.float32)
    k1 = torch.exp(-r ** 2 / (2 * sigma ** 2))
    k = torch.outer(k1, k1)
    return _blur(x, k / k.sum())


def motion_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    length = int(_level((3, 5, 7, 9, 11), severity))
    k = torch.zeros(length, length)
    k[length // 2, :] = 1.0 / length  # a horizontal streak
    return _blur(x, k)


def rotate(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    degrees = _level((10.0, 20.0, 30.0, 40.0, 50.0), severity)
    theta = _signs(len(x), g) * math.radians(degrees)
    c, s = torch.cos(theta), torch.sin(theta)
    zero = torch.zeros_like(c)
    return _affine(x, torch.stack([torch.stack([c, -s, zero], 1),
                                   torch.stack([s, c, zero], 1)], 1))


def shear(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    amount = _level((0.1, 0.2, 0.3, 0.4, 0.5), severity) * _signs(len(x), g)
    one, zero = torch.ones_like(amount), torch.zeros_like(amount)
    return _affine(x, torch.stack([torch.stack([one, amount, zero], 1),
                                   torch.stack([zero, one, zero], 1)], 1))


def scale(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    factor = _level((0.9, 0.8, 0.7, 0.6, 0.5), severity)  # digits shrink
    m = torch.tensor([[1 / factor, 0.0, 0.0], [0.0, 1 / factor, 0.0]]).expand(len(x), 2, 3)
    return _affine(x, m)


def translate(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    shift = _level((0.1, 0.2, 0.3, 0.4, 0.5), severity)  # of the half-width: grid units
    angle = torch.rand(len(x), generator=g) * 2 * math.pi
    dx, dy = shift * torch.cos(angle), shift * torch.sin(angle)
    one, zero = torch.ones_like(dx), torch.zeros_like(dx)
    return _affine(x, torch.stack([torch.stack([one, zero, dx], 1),
                                   torch.stack([zero, one, dy], 1)], 1))


def brightness(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return x + _level((0.1, 0.2, 0.3, 0.4, 0.5), severity)


def contrast(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    c = _level((0.6, 0.5, 0.4, 0.3, 0.2), severity)
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * c + mean


def fog(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """A smooth random haze (bilinearly upsampled coarse noise) over the image, the image's
    own contrast reduced by as much."""
    strength = _level((0.2, 0.3, 0.4, 0.5, 0.6), severity)
    coarse = torch.rand(len(x), 1, 4, 4, generator=g)
    haze = F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return x * (1 - strength) + haze * strength


def occlusion(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    """A square of side ``severity`` x 8% of the image, at a random place, set to 0."""
    h, w = x.shape[-2:]
    side = max(1, round(_level((0.15, 0.22, 0.3, 0.38, 0.45), severity) * min(h, w)))
    top = torch.randint(0, h - side + 1, (len(x),), generator=g)
    left = torch.randint(0, w - side + 1, (len(x),), generator=g)
    rows, cols = torch.arange(h), torch.arange(w)
    inside = ((rows[None, :, None] >= top[:, None, None])
              & (rows[None, :, None] < top[:, None, None] + side)
              & (cols[None, None, :] >= left[:, None, None])
              & (cols[None, None, :] < left[:, None, None] + side))
    return x.masked_fill(inside[:, None], 0.0)


@dataclass(frozen=True)
class Corruption:
    fn: Fn
    family: str


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian-noise": Corruption(gaussian_noise, "noise"),
    "shot-noise": Corruption(shot_noise, "noise"),
    "impulse-noise": Corruption(impulse_noise, "noise"),
    "gaussian-blur": Corruption(gaussian_blur, "blur"),
    "motion-blur": Corruption(motion_blur, "blur"),
    "rotate": Corruption(rotate, "geometric"),
    "shear": Corruption(shear, "geometric"),
    "scale": Corruption(scale, "geometric"),
    "translate": Corruption(translate, "geometric"),
    "brightness": Corruption(brightness, "appearance"),
    "contrast": Corruption(contrast, "appearance"),
    "fog": Corruption(fog, "appearance"),
    "occlusion": Corruption(occlusion, "occlusion"),
}


def corrupt_images(x: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """``x`` (N x C x H x W in [0, 1]) with corruption ``name`` at ``severity`` (1-5),
    clipped to [0, 1]; the same ``seed`` gives the same images."""
    g = torch.Generator().manual_seed(seed)
    return CORRUPTIONS[name].fn(x.float(), severity, g).clamp_(0, 1)
