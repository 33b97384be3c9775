"""Tensor augmentations applied on the device, batch-wise (no per-sample Python)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None,
                 ) -> torch.Tensor:
    """Translate each image by an independent random offset in ``[-max_shift, max_shift]`` pixels
    (zero padding). Non-image inputs (N x D) are returned unchanged."""
    if max_shift <= 0 or x.dim() != 4:
        return x
    return shift(x, max_shift, *shift_offsets(len(x), max_shift, x.device, generator))


def shift_offsets(n: int, max_shift: int, device: torch.device,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(n, 1, 1)`` row and column offsets of :func:`random_shift`, in ``[0, 2 max_shift]``
    (drawn rows first)."""
    dy = torch.randint(0, 2 * max_shift + 1, (n, 1, 1), device=device, generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n, 1, 1), device=device, generator=generator)
    return dy, dx


def shift(x: torch.Tensor, max_shift: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Images ``x`` (N, C, H, W) translated by the offsets of :func:`shift_offsets`."""
    n, _, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).expand(n, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).expand(n, h, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def strong_augment(x: torch.Tensor, generator: torch.Generator | None = None,
                   low: float = 0.0, high: float = 1.0, max_shift: int = 2, noise: float = 0.1
                   ) -> torch.Tensor:
    """A strong augmentation on tensors for consistency training (FixMatch-style): random
    contrast and brightness, a larger random shift, Gaussian noise and a cutout square of a
    quarter of the side (images; vectors get contrast, brightness and noise only), clamped
    to the data's range ``[low, high]``. Brightness and noise scale with that range."""
    scale = high - low
    n = len(x)
    shape = (n,) + (1,) * (x.dim() - 1)
    contrast = 0.6 + 0.8 * torch.rand(shape, device=x.device, generator=generator)
    brightness = 0.2 * scale * (torch.rand(shape, device=x.device, generator=generator) - 0.5)
    mean = x.flatten(1).mean(1).view(shape)
    x = (x - mean) * contrast + mean + brightness
    x = x + noise * scale * torch.randn(x.shape, device=x.device, generator=generator)
    if x.dim() == 4:
        x = random_shift(x, max_shift, generator)
        h, w = x.shape[-2:]
        size = max(1, min(h, w) // 4)
        top = torch.randint(0, h - size + 1, (n, 1, 1), device=x.device, generator=generator)
        left = torch.randint(0, w - size + 1, (n, 1, 1), device=x.device, generator=generator)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        hole = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
        x = x.masked_fill(hole[:, None], low)
    return x.clamp(low, high)


def random_resized_crop_flip(x: torch.Tensor, generator: torch.Generator | None = None,
                             scale: tuple[float, float] = (0.35, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """The standard augmentation of RGB image training (torchvision's RandomResizedCrop and
    RandomHorizontalFlip), batch-wise on the device: each image is cropped to a random area
    fraction in ``scale`` and aspect ratio in ``ratio``, resized back to its size (bilinear)
    and mirrored with probability 1/2. Non-image inputs are returned unchanged."""
    if x.dim() != 4:
        return x
    n = len(x)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, device=x.device, generator=generator)

    area = uniform(*scale)
    aspect = torch.exp(uniform(math.log(ratio[0]), math.log(ratio[1])))
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    tx = (2 * torch.rand(n, device=x.device, generator=generator) - 1) * (1 - w)
    ty = (2 * torch.rand(n, device=x.device, generator=generator) - 1) * (1 - h)
    flip = torch.where(torch.rand(n, device=x.device, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = h, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
