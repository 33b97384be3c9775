"""What the domain-generalization methods share: the loss of each source environment in a
batch drawn from the pooled sources (Gulrajani & Lopez-Paz, ICLR 2021, sample one batch per
environment; dalib draws from the pool, so each environment appears in proportion to its
size). Environments are one-hot masks over the batch, so the same code trains one run
(``(B, ...)`` tensors) or a pack of runs (``(S, B, ...)``): statistically the same numbers,
packed or not."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dalib.engine import Batch
from dalib.method import Method


def group_means(values: torch.Tensor, groups: torch.Tensor, count: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of ``values`` (``(..., B)``) over each of ``count`` groups (``groups``: the
    group of each sample) and which groups the batch holds: two ``(..., count)`` tensors."""
    onehot = F.one_hot(groups, count).to(values.dtype)
    sizes = onehot.sum(-2)
    return (values.unsqueeze(-1) * onehot).sum(-2) / sizes.clamp_min(1), sizes > 0


def present_mean(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` (``(..., G)``) over the groups ``present``."""
    return (values * present).sum(-1) / present.sum(-1).clamp_min(1)


def per_sample_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each sample, ``(..., B)`` from ``(..., B, C)`` logits."""
    return F.cross_entropy(logits.movedim(-1, 1), y, reduction="none")


def take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[index]`` along the batch dimension, run by run in a pack (``index``:
    ``(S, B)``)."""
    if index.dim() == 1:
        return x[index]
    return x[torch.arange(len(index), device=index.device)[:, None], index]


class EnvironmentMethod(Method):
    """A method trained on the pooled source domains that reads each sample's environment;
    subclasses combine the per-environment losses (:meth:`environment_losses`)."""

    needs = ("source",)
    packable = True

    def __init__(self, model, *, name: str, **optim) -> None:
        super().__init__(model, **optim)
        self.name = name
        self.environment_count = 0  # set by prepare (else read from each batch)

    def prepare(self, feeds: dict) -> None:
        self.environment_count = max(1, len(feeds["source"].envs))

    def environments(self, batch: Batch) -> torch.Tensor:
        """The batch's environment ids (one environment when the data has none: then the
        method is ERM plus whatever its penalty is on one group)."""
        if batch.env is None:
            return torch.zeros_like(batch.y)
        return batch.env

    def count(self, env: torch.Tensor) -> int:
        """The number of environments (a host sync only when :meth:`prepare` was not
        called)."""
        return self.environment_count or int(env.max()) + 1

    def forward_source(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, torch.Tensor,
                                                                torch.Tensor]:
        """The augmented source batch's logits, labels and environments."""
        src = batch["source"]
        return self.logits(self.augment(src.x), src.task), src.y, self.environments(src)

    def environment_losses(self, logits: torch.Tensor, y: torch.Tensor, env: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-entropy of each environment and which are in the batch
        (:func:`group_means`)."""
        return group_means(per_sample_cross_entropy(logits, y), env, self.count(env))

    def penalty_weight(self, weight: float, anneal: float) -> float:
        """``weight`` after the first ``anneal`` share of the budget, 1 before (the warm-up
        of IRM and VREx in DomainBed, where the optimizer is also reset once)."""
        return weight if self.progress >= anneal else 1.0

    def reset_after_anneal(self, anneal: float) -> None:
        """Clear the optimizer's state at the step where the penalty weight changes, as
        DomainBed does (Adam's moments would otherwise carry the warm-up's scale)."""
        if anneal > 0 and self.updates == int(anneal * self.total_steps):
            self.optimizer.state.clear()
