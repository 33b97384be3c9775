"""Invariance across environments: IRM (Arjovsky, Bottou, Gulrajani & Lopez-Paz, "Invariant
Risk Minimization", 2019; the IRMv1 penalty) and V-REx (Krueger et al., "Out-of-Distribution
Generalization via Risk Extrapolation", ICML 2021). Both warm up with a penalty weight of 1
for the first ``anneal`` share of the budget, then reset the optimizer, as DomainBed does."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dalib.engine import Batch
from dalib.generalization.base import EnvironmentMethod


def irm_penalty(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """IRMv1: the squared gradient of the risk with respect to a scale of 1 on the logits,
    estimated without bias as the product of the gradients on the two halves of the batch
    (as in DomainBed)."""
    scale = torch.ones((), device=logits.device, requires_grad=True)
    first = F.cross_entropy(logits[::2] * scale, y[::2])
    second = F.cross_entropy(logits[1::2] * scale, y[1::2])
    grad_first = torch.autograd.grad(first, [scale], create_graph=True)[0]
    grad_second = torch.autograd.grad(second, [scale], create_graph=True)[0]
    return grad_first * grad_second


class IRM(EnvironmentMethod):
    """The mean risk over environments plus ``weight`` x the mean IRMv1 penalty."""

    def __init__(self, model, *, name: str, weight: float = 100.0, anneal: float = 0.1,
                 **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.weight, self.anneal = weight, anneal

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.reset_after_anneal(self.anneal)
        logits, y, env = self.forward_source(batch)
        risks, penalties = [], []
        for e in torch.unique(env):
            mask = env == e
            if int(mask.sum()) < 2:
                continue
            risks.append(F.cross_entropy(logits[mask], y[mask]))
            penalties.append(irm_penalty(logits[mask], y[mask]))
        risk, penalty = torch.stack(risks).mean(), torch.stack(penalties).mean()
        weight = self.penalty_weight(self.weight, self.anneal)
        return risk + weight * penalty, {"risk": risk.detach(), "penalty": penalty.detach()}


class VREx(EnvironmentMethod):
    """The mean risk over environments plus ``weight`` x the variance of the risks."""

    def __init__(self, model, *, name: str, weight: float = 10.0, anneal: float = 0.1,
                 **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.weight, self.anneal = weight, anneal

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.reset_after_anneal(self.anneal)
        risks = self.environment_losses(*self.forward_source(batch))
        variance = ((risks - risks.mean()) ** 2).mean()
        weight = self.penalty_weight(self.weight, self.anneal)
        return risks.mean() + weight * variance, {"risk": risks.mean().detach(),
                                                   "variance": variance.detach()}
