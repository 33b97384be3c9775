"""What the domain-generalization methods share: the loss of each source environment in a
batch drawn from the pooled sources (Gulrajani & Lopez-Paz, ICLR 2021, sample one batch per
environment; dalib draws from the pool, so each environment appears in proportion to its
size)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dalib.engine import Batch
from dalib.method import Method


def per_environment(values: torch.Tensor, env: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over each environment present in the batch (in order of their
    index)."""
    present = torch.unique(env)
    sums = torch.zeros(int(env.max()) + 1, dtype=values.dtype, device=values.device)
    sums = sums.index_add(0, env, values)
    counts = torch.bincount(env, minlength=len(sums)).to(values.dtype)
    return sums[present] / counts[present]


class EnvironmentMethod(Method):
    """A method trained on the pooled source domains that reads each sample's environment;
    subclasses combine the per-environment losses (:meth:`environment_losses`)."""

    needs = ("source",)

    def __init__(self, model, *, name: str, **optim) -> None:
        super().__init__(model, **optim)
        self.name = name

    def environments(self, batch: Batch) -> torch.Tensor:
        """The batch's environment ids (one environment when the data has none: then the
        method is ERM plus whatever its penalty is on one group)."""
        if batch.env is None:
            return torch.zeros(len(batch.y), dtype=torch.long, device=batch.y.device)
        return batch.env

    def forward_source(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, torch.Tensor,
                                                                torch.Tensor]:
        """The augmented source batch's logits, labels and environments."""
        src = batch["source"]
        return self.logits(self.augment(src.x), src.task), src.y, self.environments(src)

    def environment_losses(self, logits: torch.Tensor, y: torch.Tensor, env: torch.Tensor
                           ) -> torch.Tensor:
        """The cross-entropy of each environment present in the batch."""
        return per_environment(F.cross_entropy(logits, y, reduction="none"), env)

    def penalty_weight(self, weight: float, anneal: float) -> float:
        """``weight`` after the first ``anneal`` share of the budget, 1 before (the warm-up
        of IRM and VREx in DomainBed, where the optimizer is also reset once)."""
        return weight if self.progress >= anneal else 1.0

    def reset_after_anneal(self, anneal: float) -> None:
        """Clear the optimizer's state at the step where the penalty weight changes, as
        DomainBed does (Adam's moments would otherwise carry the warm-up's scale)."""
        if anneal > 0 and self.updates == int(anneal * self.total_steps):
            self.optimizer.state.clear()
