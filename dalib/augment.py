"""Tensor augmentations applied on the device, batch-wise (no per-sample Python)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator | None = None,
                 ) -> torch.Tensor:
    """Translate each image by an independent random offset in ``[-max_shift, max_shift]`` pixels
    (zero padding). Non-image inputs (N x D) are returned unchanged."""
    if max_shift <= 0 or x.dim() != 4:
        return x
    n, _, h, w = x.shape
    s = max_shift
    padded = F.pad(x, (s, s, s, s))
    dy = torch.randint(0, 2 * s + 1, (n, 1, 1), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * s + 1, (n, 1, 1), device=x.device, generator=generator)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy).expand(n, h, w)
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx).expand(n, h, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1).expand(n, h, w)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
