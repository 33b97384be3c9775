"""Invariance across environments: IRM (Arjovsky, Bottou, Gulrajani & Lopez-Paz, "Invariant
Risk Minimization", 2019; the IRMv1 penalty) and V-REx (Krueger et al., "Out-of-Distribution
Generalization via Risk Extrapolation", ICML 2021). Both warm up with a penalty weight of 1
for the first ``anneal`` share of the budget, then reset the optimizer, as DomainBed does."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dalib.engine import Batch
from dalib.generalization.base import (
    EnvironmentMethod,
    group_means,
    per_sample_cross_entropy,
    present_mean,
)


def irm_penalty(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """IRMv1 on one environment's samples: the squared gradient of the risk with respect to
    a scale of 1 on the logits, estimated without bias as the product of the gradients on
    the two halves of the batch (its even and odd samples, as in DomainBed)."""
    halves = torch.arange(len(y), device=y.device) % 2
    penalties, _ = irm_penalties(logits, y, torch.zeros_like(y), halves, 1)
    return penalties[0]


def irm_penalties(logits: torch.Tensor, y: torch.Tensor, env: torch.Tensor,
                  halves: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The IRMv1 penalty of each of ``count`` environments (``(..., count)``) and which have
    samples in both halves: each half's risk is differentiated with respect to its own
    scale (one per environment and half), so one backward pass gives them all."""
    groups = env * 2 + halves
    scale = torch.ones(*y.shape[:-1], 2 * count, device=logits.device, requires_grad=True)
    scaled = logits * scale.gather(-1, groups).unsqueeze(-1)
    risks, present = group_means(per_sample_cross_entropy(scaled, y), groups, 2 * count)
    grads = torch.autograd.grad(risks.sum(), [scale], create_graph=True)[0]
    grads = grads.unflatten(-1, (count, 2))
    return grads[..., 0] * grads[..., 1], present.unflatten(-1, (count, 2)).all(-1)


def halves_within(env: torch.Tensor, count: int) -> torch.Tensor:
    """0 for each environment's 1st, 3rd, ... sample in the batch, 1 for its 2nd, 4th, ..."""
    onehot = F.one_hot(env, count)
    rank = (onehot.cumsum(-2) * onehot).sum(-1) - 1
    return rank % 2


class IRM(EnvironmentMethod):
    """The mean risk over environments plus ``weight`` x the mean IRMv1 penalty (over the
    environments with two or more samples in the batch).

    Reference: DomainBed ``IRM`` in ``domainbed/algorithms.py`` (facebookresearch/DomainBed).
    """

    def __init__(self, model, *, name: str, weight: float = 100.0, anneal: float = 0.1,
                 **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.weight, self.anneal = weight, anneal

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.reset_after_anneal(self.anneal)
        logits, y, env = self.forward_source(batch)
        count = self.count(env)
        penalties, both = irm_penalties(logits, y, env, halves_within(env, count), count)
        risks, _ = group_means(per_sample_cross_entropy(logits, y), env, count)
        risk, penalty = present_mean(risks, both), present_mean(penalties, both)
        weight = self.penalty_weight(self.weight, self.anneal)
        return risk + weight * penalty, {"risk": risk.detach(), "penalty": penalty.detach()}


class VREx(EnvironmentMethod):
    """The mean risk over environments plus ``weight`` x the variance of the risks.

    Reference: DomainBed ``VREx`` in ``domainbed/algorithms.py`` (facebookresearch/DomainBed).
    """

    def __init__(self, model, *, name: str, weight: float = 10.0, anneal: float = 0.1,
                 **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.weight, self.anneal = weight, anneal

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.reset_after_anneal(self.anneal)
        risks, present = self.environment_losses(*self.forward_source(batch))
        mean = present_mean(risks, present)
        variance = present_mean((risks - mean.unsqueeze(-1)) ** 2, present)
        weight = self.penalty_weight(self.weight, self.anneal)
        return mean + weight * variance, {"risk": mean.detach(), "variance": variance.detach()}
