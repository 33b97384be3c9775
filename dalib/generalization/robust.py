"""Robust optimisation over environments: GroupDRO (Sagawa, Koh, Hashimoto & Liang,
"Distributionally Robust Neural Networks for Group Shifts", ICLR 2020), the online weighting
of the environments' losses that favours the worst one."""

from __future__ import annotations

import torch

from dalib.engine import Batch
from dalib.generalization.base import EnvironmentMethod


class GroupDRO(EnvironmentMethod):
    """``q_e`` grows as ``exp(eta * loss_e)`` each step for the environments in the batch
    (then normalised); the loss is the sum of their losses weighted by ``q``.

    Reference: DomainBed ``GroupDRO`` in ``domainbed/algorithms.py``
    (facebookresearch/DomainBed).
    """

    stacked = ("q",)  # one weight vector per run of a pack

    def __init__(self, model, *, name: str, eta: float = 0.01, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.eta = eta
        self.q = torch.ones(0)

    def prepare(self, feeds: dict) -> None:
        super().prepare(feeds)
        self.q = torch.full((self.environment_count,), 1.0 / self.environment_count,
                            device=self.device)

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, y, env = self.forward_source(batch)
        losses, present = self.environment_losses(logits, y, env)
        if self.q.shape[-1] != losses.shape[-1]:  # not prepared: uniform over the batch's
            self.q = torch.full_like(losses, 1.0 / losses.shape[-1]).detach()
        q = self.q * torch.exp(self.eta * losses.detach() * present)
        self.q = q / q.sum(-1, keepdim=True)
        weights = self.q * present
        weights = weights / weights.sum(-1, keepdim=True)
        worst = losses.masked_fill(~present, float("-inf")).amax(-1)
        return (weights * losses).sum(-1), {"worst": worst.detach()}
