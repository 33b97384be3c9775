"""Robust optimisation over environments: GroupDRO (Sagawa, Koh, Hashimoto & Liang,
"Distributionally Robust Neural Networks for Group Shifts", ICLR 2020), the online weighting
of the environments' losses that favours the worst one."""

from __future__ import annotations

import torch

from dalib.engine import Batch
from dalib.generalization.base import EnvironmentMethod


class GroupDRO(EnvironmentMethod):
    """``q_e`` grows as ``exp(eta * loss_e)`` each step (normalised); the loss is the
    ``q``-weighted sum of the environments' losses."""

    def __init__(self, model, *, name: str, eta: float = 0.01, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.eta = eta
        self.q: torch.Tensor | None = None

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits, y, env = self.forward_source(batch)
        losses = self.environment_losses(logits, y, env)
        present = torch.unique(env)
        if self.q is None or len(self.q) <= int(present.max()):
            size = int(present.max()) + 1
            self.q = torch.ones(size, device=losses.device) / size
        q = self.q.clone()
        q[present] = q[present] * torch.exp(self.eta * losses.detach())
        self.q = q / q.sum()
        weights = self.q[present] / self.q[present].sum()
        return (weights * losses).sum(), {"worst": losses.max().detach()}
