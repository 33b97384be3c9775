"""Mixing across environments: inter-domain Mixup (Yan et al., "Improve Unsupervised Domain
Adaptation with Mixup Training", 2020; Xu et al., AAAI 2020; DomainBed's Mixup): each sample
is mixed with a sample of another environment, the weight drawn from Beta(alpha, alpha), and
the loss mixes the two labels' cross-entropies with the same weight."""

from __future__ import annotations

import numpy as np
import torch

from dalib.engine import Batch
from dalib.generalization.base import EnvironmentMethod, take
from dalib.method import cross_entropy


def partners(env: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each sample, a random sample of another environment (of any, where the batch
    holds one environment only)."""
    scores = torch.rand(len(env), len(env), generator=generator, device=env.device)
    other = env[:, None] != env[None, :]
    if other.any(1).all():
        scores = scores.masked_fill(~other, -1.0)
    return scores.argmax(1)


class Mixup(EnvironmentMethod):
    """Cross-entropy of inter-environment mixtures; ``alpha`` shapes the Beta draw. Each
    run draws its partners and weight with its own generators (:meth:`draw`).

    Reference: DomainBed ``Mixup`` in ``domainbed/algorithms.py`` (facebookresearch/DomainBed);
    partners drawn per sample, not per environment pair.
    """

    def __init__(self, model, *, name: str, alpha: float = 0.2, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.alpha = alpha
        self.rng = np.random.default_rng(torch.initial_seed() % 2**32)

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        src = batch["source"]
        x, env = self.augment(src.x), self.environments(src)
        j = self.draw(lambda e, m: partners(e, m.generator), env)
        lam = self.draw(lambda e, m: torch.tensor(m.rng.beta(m.alpha, m.alpha),
                                                  dtype=x.dtype, device=x.device), env)
        mix = lam.view(*lam.shape, *([1] * (x.dim() - lam.dim())))
        logits = self.logits(mix * x + (1 - mix) * take(x, j), src.task)
        loss = lam * cross_entropy(logits, src.y) + (1 - lam) * cross_entropy(logits,
                                                                              take(src.y, j))
        return loss, {}
