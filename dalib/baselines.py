"""Supervised baselines: one class trains on whichever labelled data it is pointed at.

Transfer: ``source-only`` (source labels), ``source+target`` (source labels and the k labelled
target samples per class, each batch's cross-entropy summed), ``target-only`` (the k labelled
target samples per class: the reference for the negative transfer gap of Wang et al. 2019),
``target-oracle`` (all target train labels: an upper bound, never a method). Streams:
``naive`` fine-tuning, task after task, and ``joint`` training on all tasks at once (the upper
bound of continual learning).
"""

from __future__ import annotations

import torch
from torch import nn

from dalib.engine import Batch
from dalib.method import Method, supervised_loss


class Supervised(Method):
    """Cross-entropy on one labelled feed, or the sum over several, with the shared
    augmentation.

    Reference: plain cross-entropy training (the source-only, target-only and oracle rows of
    TLlib's and DomainBed's tables; DomainBed ``ERM`` in ``domainbed/algorithms.py``).
    """

    packable = True
    task_free = True  # naive fine-tuning and the joint reference need no task boundaries
    regression = True  # the squared error on continuous targets

    def __init__(self, model, *, data: str | tuple[str, ...], name: str, joint: bool = False,
                 **optim) -> None:
        super().__init__(model, **optim)
        self.needs = (data,) if isinstance(data, str) else tuple(data)
        self.name = name
        self.joint = joint

    def pack_reason(self) -> str | None:
        return "joint training has no packed loop" if self.joint else None

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self.augmented(batch)
        losses = {n: supervised_loss(self.logits(x[n], batch[n].task), batch[n].y)
                  for n in self.needs}
        total = sum(losses.values())
        return total, ({f"cls_{n}": v.detach() for n, v in losses.items()}
                       if len(losses) > 1 else {})


class AdaBN(Method):
    """``adabn``: source-only training, then every batch-norm layer's statistics re-estimated
    on the unlabelled target training data before the model predicts (Li et al., "Revisiting
    Batch Normalization for Practical Domain Adaptation", ICLR Workshop 2017). The deployed
    model is the target one, so every evaluation (selection criteria, source accuracy too)
    uses the target statistics; they are re-estimated whenever training moved on.

    Reference: the paper's algorithm (no official code); the statistics are the target's mean
    and variance as batch-norm's cumulative average computes them.
    """

    needs = ("source", "target")
    packable = True  # trains as source-only; each run re-estimates its own statistics
    regression = True

    def __init__(self, model, *, name: str, batch_size: int = 512, **optim) -> None:
        super().__init__(model, **optim)
        self.name = name
        self.batch_size = batch_size
        self.target_x: torch.Tensor | None = None
        self._estimated_at = -1

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.classification_loss(batch["source"]), {}

    def prepare(self, feeds: dict) -> None:
        self.target_x = feeds["target"].x

    @torch.no_grad()
    def estimate_target_statistics(self) -> None:
        """Running mean and variance of every batch norm as the plain average over the
        target data (momentum None), other layers in eval mode."""
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        was_training = self.model.training
        self.model.eval()
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        for start in range(0, len(self.target_x), self.batch_size):
            self.model(self.target_x[start:start + self.batch_size].to(self.device))
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        self.model.train(was_training)
        self._estimated_at = self.updates

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        if self.target_x is not None and self._estimated_at != self.updates:
            with torch.inference_mode(False):
                self.estimate_target_statistics()
        return super().predict(x, task)
