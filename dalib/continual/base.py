"""Continual-learning strategies: cross-entropy on the current task plus what each adds."""

from __future__ import annotations

import torch

from dalib.engine import Batch
from dalib.method import Method


class Continual(Method):
    """Base of the strategies: trains on the ``train`` feed (the current task); subclasses add
    :meth:`extra_loss` (penalties, replay, distillation) and use the task hooks."""

    needs = ("train",)

    def __init__(self, model, *, name: str, **optim) -> None:
        super().__init__(model, **optim)
        self.name = name
        self.cpu_generator = torch.Generator().manual_seed(torch.initial_seed() % 2**31)

    def extra_loss(self, batch: Batch) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        return None, {}

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        current = batch["train"]
        ce = self.classification_loss(current)
        extra, logs = self.extra_loss(current)
        if extra is None:
            return ce, logs
        return ce + extra, {"ce": ce.detach(), **logs}

    def task_data(self, task):
        """The data the task trains on (its training part; rehearsal adds its memory)."""
        return task.train

    def task_sizes(self, tasks: list) -> list[int]:
        """The size of each task's :meth:`task_data`, known before training (for the
        schedule's horizon)."""
        return [len(t.train) for t in tasks]

    def task_batches(self, task, batch_size: int = 256):
        """The task's training data on the device, in batches (for importance estimates)."""
        x, y, t = (v.to(self.device) for v in (task.train.x, task.train.y, task.train.task))
        d = self.lead_dims
        n = y.shape[-1]
        for i in range(0, n, batch_size):
            size = min(batch_size, n - i)
            yield Batch(x.narrow(d, i, size), y.narrow(d, i, size), t.narrow(d, i, size))
