"""The method protocol: a method owns its model, its optimizer and its update step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dalib.augment import random_shift
from dalib.engine import Batch


class Method:
    """Base of every method.

    ``needs`` names the data the engine feeds to :meth:`update`, a dict from these names to
    :class:`~dalib.engine.Batch`: ``source`` (labelled source), ``target`` (unlabelled target
    train), ``target_labelled`` (the k labelled target samples per class), ``target_oracle``
    (target train with its labels: upper bounds only), ``train`` (the current task of a stream).
    ``update`` returns detached loss tensors (no host sync); ``predict`` returns logits.
    """

    name = "method"
    needs: tuple[str, ...] = ("source",)

    def __init__(self, model: nn.Module, *, lr: float = 1e-3, weight_decay: float = 5e-4,
                 optimizer: str = "adam", momentum: float = 0.9, shift: int = 1) -> None:
        self.model = model
        self.shift = shift
        self.class_mask: torch.Tensor | None = None
        if optimizer == "adam":
            self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        elif optimizer == "sgd":
            self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                                             weight_decay=weight_decay)
        else:
            raise ValueError(f"optimizer is {optimizer!r}, expected 'adam' or 'sgd'")
        device = next(model.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(torch.initial_seed() % 2**31)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return random_shift(x, self.shift, self.generator)

    def logits(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Model outputs, masked to each sample's task classes under task-IL."""
        out = self.model(x)
        if self.class_mask is not None and task is not None:
            out = out.masked_fill(~self.class_mask[task], float("-inf"))
        return out

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(x, task)

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def classification_loss(self, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.logits(self.augment(batch.x), batch.task), batch.y)

    def update(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def before_task(self, task) -> None:
        """Called by the engine before training on a stream's task."""

    def after_task(self, task) -> None:
        """Called by the engine after training on a stream's task."""
