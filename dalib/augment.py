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


def tta_view(x: torch.Tensor, generator: torch.Generator | None = None, flip: bool = True
             ) -> torch.Tensor:
    """One augmented view of a test batch as CoTTA's ``get_tta_transforms``
    (``cifar/robustbench``-era ``my_transforms.py`` of github.com/qinenergy/cotta, the
    transforms RoTTA reuses), in pixel space, one draw of the random parameters for the
    whole batch (the reference transforms a batch tensor at once): brightness 0.6-1.4,
    contrast 0.7-1.3, saturation 0.5-1.5 and hue +-0.06 (colour images), gamma 0.7-1.3, in
    a random order; edge padding by half the side, a random affine map (+-15 degrees, shift
    up to 1/16 of the padded side, scale 0.9-1.1, bilinear), a Gaussian blur (kernel 5,
    sigma 0.001-0.5), the centre crop back; a horizontal flip with probability 1/2
    (``flip``); Gaussian noise of std 0.005. Pixel data (every value in [0, 1]) is clipped
    to [0, 1] before and after, as the reference; other images and vectors get the noise
    only, unclipped."""
    import torchvision.transforms.functional as TF

    def uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=generator, device=x.device))

    noise = 0.005 * torch.randn(x.shape, generator=generator, device=x.device)
    pixels = bool(((x >= 0) & (x <= 1)).all())
    if x.dim() != 4 or not pixels:
        return x + noise
    x = x.clamp(0, 1)
    jitters = [lambda v: TF.adjust_brightness(v, uniform(0.6, 1.4)),
               lambda v: TF.adjust_contrast(v, uniform(0.7, 1.3)),
               lambda v: TF.adjust_saturation(v, uniform(0.5, 1.5)),  # grey: unchanged
               lambda v: TF.adjust_hue(v, uniform(-0.06, 0.06)),
               lambda v: TF.adjust_gamma(v, uniform(0.7, 1.3))]
    for i in torch.randperm(len(jitters), generator=generator, device=x.device).tolist():
        x = jitters[i](x)
    h, w = x.shape[-2:]
    pad = h // 2
    x = TF.pad(x, [pad, pad, pad, pad], padding_mode="edge")
    big_h, big_w = x.shape[-2:]
    angle = uniform(-15, 15)
    shift = [round(uniform(-big_w / 16, big_w / 16)), round(uniform(-big_h / 16, big_h / 16))]
    x = TF.affine(x, angle=angle, translate=shift, scale=uniform(0.9, 1.1), shear=[0.0, 0.0],
                  interpolation=TF.InterpolationMode.BILINEAR)
    sigma = uniform(0.001, 0.5)
    x = TF.gaussian_blur(x, [5, 5], [sigma, sigma])
    x = TF.center_crop(x, [h, w])
    if flip and uniform(0, 1) < 0.5:
        x = x.flip(-1)
    return (x + noise).clamp(0, 1)
