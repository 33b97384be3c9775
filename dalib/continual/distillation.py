"""Knowledge distillation against the model as it was before the current task."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from dalib.continual.base import Continual
from dalib.engine import Batch


def distillation(new: torch.Tensor, old: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL divergence from the old model's softened outputs to the new one's, summed over
    the outputs given and averaged over the batch (``batchmean``)."""
    return F.kl_div(F.log_softmax(new / temperature, -1), F.log_softmax(old / temperature, -1),
                    log_target=True, reduction="none").sum(-1).mean(-1)


class LwF(Continual):
    """``lwf``: learning without forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017), as
    Avalanche's ``LwFPlugin`` (``avalanche/training/plugins/lwf.py``) and mammoth's
    ``models/lwf.py``: while training task t > 0, the outputs of the classes of earlier tasks
    are distilled from a frozen copy of the model taken before task t (KL at
    ``temperature``, weight ``alpha``, no T^2 factor); under task-IL one softmax per earlier
    task's head (its classes), the distillations summed, as the paper's multi-head form.
    ``t_squared = true`` multiplies by T^2 (Hinton et al.'s gradient scaling: 4x at T = 2).
    ``weighting = "contexts"`` weighs the two terms as van de Ven & Tolias's code
    (GMvandeVen/continual-learning ``models/classifier.py``, ``train_a_batch``: ``rnt *
    loss_cur + (1 - rnt) * loss_replay`` with ``rnt = 1 / t`` in the t-th task): the current
    task's loss by 1/t and the distillation by 1 - 1/t, a stronger hold on the old outputs
    as tasks accumulate (4:1 in the fifth task) than ``sum`` (the default: loss + alpha x
    distillation, Avalanche's form)."""

    packable = True
    per_run = ("alpha",)

    def __init__(self, model, *, name: str, alpha: float = 1.0, temperature: float = 2.0,
                 t_squared: bool = False, weighting: str = "sum", **optim) -> None:
        super().__init__(model, name=name, **optim)
        if weighting not in ("sum", "contexts"):
            raise ValueError(f"weighting is {weighting!r}; expected 'sum' or 'contexts'")
        self.alpha, self.temperature, self.t_squared = alpha, temperature, t_squared
        self.weighting = weighting
        self.teacher: torch.nn.Module | None = None
        self.seen = torch.zeros(model.head.out_features, dtype=torch.bool, device=self.device)
        self.heads: list[list[int]] = []  # the classes of each earlier task

    def before_task(self, task) -> None:
        if self.seen.any():
            self.teacher = copy.deepcopy(self.model).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)

    def after_task(self, task) -> None:
        self.seen[list(task.classes)] = True
        self.heads.append(list(task.classes))

    def extra_loss(self, batch: Batch):
        if self.teacher is None:
            return None, {}
        x = self.augment(batch.x)
        with torch.no_grad():
            old = self.teacher(x)
        new = self.model(x)
        if self.class_mask is not None:  # task-IL: one softmax per earlier task's head
            kd = sum(distillation(new[..., h], old[..., h], self.temperature)
                     for h in self.heads)
        else:
            kd = distillation(new[..., self.seen], old[..., self.seen], self.temperature)
        if self.t_squared:
            kd = kd * self.temperature ** 2
        return self.alpha * kd, {"distill": kd.detach()}

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.weighting == "sum" or self.teacher is None:
            return super().loss(batch)
        current = batch["train"]
        ce = self.classification_loss(current)
        kd, logs = self.extra_loss(current)
        new = 1.0 / (len(self.heads) + 1)  # 1/t in the t-th task
        return new * ce + (1.0 - new) * kd, {"ce": ce.detach(), **logs}
