"""Knowledge distillation against the model as it was before the current task."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from dalib.continual.base import Continual
from dalib.engine import Batch


class LwF(Continual):
    """``lwf``: learning without forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017). While
    training task t > 0, the outputs of the classes seen so far are distilled from a frozen
    copy of the model taken before task t (temperature ``temperature``, weight ``alpha``)."""

    packable = True
    per_run = ("alpha",)

    def __init__(self, model, *, name: str, alpha: float = 1.0, temperature: float = 2.0,
                 **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.alpha, self.temperature = alpha, temperature
        self.teacher: torch.nn.Module | None = None
        self.seen = torch.zeros(model.head.out_features, dtype=torch.bool, device=self.device)

    def before_task(self, task) -> None:
        if self.seen.any():
            self.teacher = copy.deepcopy(self.model).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)

    def after_task(self, task) -> None:
        self.seen[list(task.classes)] = True

    def extra_loss(self, batch: Batch):
        if self.teacher is None:
            return None, {}
        x = self.augment(batch.x)
        with torch.no_grad():
            old = self.teacher(x)[..., self.seen] / self.temperature
        new = self.model(x)[..., self.seen] / self.temperature
        kd = F.kl_div(F.log_softmax(new, -1), F.log_softmax(old, -1), log_target=True,
                      reduction="none").sum(-1).mean(-1) * self.temperature ** 2
        return self.alpha * kd, {"distill": kd.detach()}
