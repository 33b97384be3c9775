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
import torch.nn.functional as F

from dalib.engine import Batch
from dalib.method import Method


class Supervised(Method):
    """Cross-entropy on one labelled feed, or the sum over several, with the shared
    augmentation."""

    def __init__(self, model, *, data: str | tuple[str, ...], name: str, joint: bool = False,
                 **optim) -> None:
        super().__init__(model, **optim)
        self.needs = (data,) if isinstance(data, str) else tuple(data)
        self.name = name
        self.joint = joint

    def loss(self, batch: dict[str, Batch], x: dict[str, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self.augmented(batch) if x is None else x
        losses = {n: F.cross_entropy(self.logits(x[n], batch[n].task), batch[n].y)
                  for n in self.needs}
        total = sum(losses.values())
        return total, ({f"cls_{n}": v.detach() for n, v in losses.items()}
                       if len(losses) > 1 else {})
