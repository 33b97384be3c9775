"""Building blocks shared by the adaptation methods: gradient reversal and its warm-up schedule,
domain discriminators, multi-kernel MMD, CORAL, entropy and the randomized multilinear map."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dalib.pack.modules import packable


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(x: torch.Tensor, coeff: float) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: torch.Tensor) -> None:
        ctx.coeff = inputs[1]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def reverse_grad(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """Identity forward, gradient times ``-coeff`` backward (Ganin & Lempitsky 2015)."""
    return _ReverseGrad.apply(x, coeff)


def grl_schedule(progress: float, gamma: float = 10.0, high: float = 1.0) -> float:
    """``high * (2 / (1 + exp(-gamma p)) - 1)``: rises from 0 to ``high`` as training progress
    ``p`` goes from 0 to 1 (Ganin & Lempitsky 2015, section 5.2.2)."""
    return high * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


@packable
class Discriminator(nn.Module):
    """Domain classifier ``in -> hidden -> hidden -> outputs`` (one output: a logit, source =
    1, target = 0; several: one logit per domain)."""

    def __init__(self, in_features: int, hidden: int = 256, batch_norm: bool = True,
                 outputs: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(2):
            layers += [nn.Linear(width, hidden),
                       nn.BatchNorm1d(hidden) if batch_norm else nn.Identity(),
                       nn.ReLU(inplace=True)]
            width = hidden
        self.net = nn.Sequential(*layers, nn.Linear(width, outputs))
        self.outputs = outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out.squeeze(-1) if self.outputs == 1 else out


def domain_loss(logits_s: torch.Tensor, logits_t: torch.Tensor,
                weight_s: torch.Tensor | None = None, weight_t: torch.Tensor | None = None,
                ) -> torch.Tensor:
    """Binary cross-entropy of a discriminator: source labelled 1, target 0 (optional
    per-sample weights, normalised to mean 1 within each domain); one value per run."""
    def bce(logits: torch.Tensor, label: float, w: torch.Tensor | None) -> torch.Tensor:
        loss = F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label),
                                                  reduction="none")
        if w is not None:
            loss = loss * w / w.mean(-1, keepdim=True).clamp_min(1e-8)
        return loss.mean(-1)

    return 0.5 * (bce(logits_s, 1.0, weight_s) + bce(logits_t, 0.0, weight_t))


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, ema: float) -> None:
    """Move each of ``teacher``'s parameters to ``ema`` x itself + ``1 - ema`` x the
    student's (a mean teacher, Tarvainen & Valpola 2017)."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(ema).add_(s, alpha=1.0 - ema)


def entropy(probs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-sample Shannon entropy (nats) of probability rows."""
    return -(probs * torch.log(probs + eps)).sum(-1)


def multi_kernel_mmd(xs: torch.Tensor, xt: torch.Tensor,
                     multipliers: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)) -> torch.Tensor:
    """Squared multi-kernel MMD (Long et al. 2015, DAN) as TLlib's
    ``MultipleKernelMaximumMeanDiscrepancy`` (``tllib/alignment/dan.py``, ``linear=False``)
    computes it, without its constant ``2 / (n - 1)``: Gaussian kernels of bandwidths
    ``multipliers`` times the mean squared distance over the joint batch (its 2^-3 ... 2^1
    times twice the mean), the within-domain means over distinct pairs (unbiased), minus
    twice the cross-domain mean. The batch is dimension -2 (one value per run of a pack)."""
    z = torch.cat([xs, xt], -2)
    d2 = torch.cdist(z, z).pow(2)
    base = d2.detach().mean((-2, -1), keepdim=True)
    k = sum(torch.exp(-d2 / (base * m).clamp_min(1e-8)) for m in multipliers)
    n, m = xs.shape[-2], xt.shape[-2]

    def within(block: torch.Tensor, size: int) -> torch.Tensor:
        diagonal = block.diagonal(dim1=-2, dim2=-1).sum(-1)
        return (block.sum((-2, -1)) - diagonal) / max(size * (size - 1), 1)

    return (within(k[..., :n, :n], n) + within(k[..., n:, n:], m)
            - 2 * k[..., :n, n:].mean((-2, -1)))


def gaussian_kernels(z: torch.Tensor, multipliers: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
                     ) -> torch.Tensor:
    """The sum of Gaussian kernels between the samples of ``z`` (dimension -2), bandwidths
    ``multipliers`` times their mean pairwise squared distance (detached)."""
    d2 = torch.cdist(z, z).pow(2)
    size = z.shape[-2]
    base = d2.detach().sum((-2, -1), keepdim=True) / (size ** 2 - size)
    return sum(torch.exp(-d2 / (base * m).clamp_min(1e-8)) for m in multipliers)


DOMAINBED_GAMMAS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def fixed_gaussian_kernels(z: torch.Tensor, gammas: tuple[float, ...] = DOMAINBED_GAMMAS
                           ) -> torch.Tensor:
    """The sum of Gaussian kernels ``exp(-gamma ||a - b||^2)`` between the samples of ``z``
    (dimension -2) at the fixed ``gammas`` of DomainBed's ``MMD.gaussian_kernel``."""
    d2 = torch.cdist(z, z).pow(2).clamp_min(1e-30)
    return sum(torch.exp(-g * d2) for g in gammas)


def coral(xs: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
    """CORAL loss: squared Frobenius distance of the feature covariances over ``4 d^2``
    (Sun & Saenko 2016, Deep CORAL)."""
    d = xs.shape[-1]

    def cov(x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(-2, keepdim=True)
        return x.mT @ x / max(x.shape[-2] - 1, 1)

    return (cov(xs) - cov(xt)).pow(2).sum((-2, -1)) / (4 * d * d)


@packable
class RandomizedMultilinear(nn.Module):
    """Randomized multilinear map ``(R_f f) * (R_g g) / sqrt(dim)`` with fixed Gaussian
    matrices (Long et al. 2018, CDAN), for large ``features x classes`` products."""

    def __init__(self, features: int, classes: int, dim: int = 1024) -> None:
        super().__init__()
        self.register_buffer("rf", torch.randn(features, dim))
        self.register_buffer("rg", torch.randn(classes, dim))
        self.dim = dim

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (f @ self.rf) * (g @ self.rg) / math.sqrt(self.dim)


def multilinear(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The outer product ``g (x) f`` flattened per sample (CDAN's multilinear conditioning)."""
    return (g.unsqueeze(-1) * f.unsqueeze(-2)).flatten(-2)
