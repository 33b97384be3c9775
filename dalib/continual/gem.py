"""Gradient projection against an episodic memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dalib.continual.base import Continual
from dalib.engine import Batch


class AGEM(Continual):
    """``agem``: averaged gradient episodic memory (Chaudhry et al., ICLR 2019). After each
    task, ``memory // tasks_seen`` samples per task are kept (the memory is shared equally);
    each step computes the gradient on a memory batch of ``sample_size`` and, when the new
    gradient points against it, projects it: ``g <- g - (g.g_ref / g_ref.g_ref) g_ref``.

    Reference: Avalanche ``AGEMPlugin`` (``avalanche/training/plugins/agem.py``,
    ContinualAI/avalanche).
    """

    def __init__(self, model, *, name: str, memory: int = 500, sample_size: int = 256,
                 **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.memory, self.sample_size = memory, sample_size
        self.stored: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def after_task(self, task) -> None:
        self.stored.append(tuple(v.to(self.device) for v in
                                 (task.train.x, task.train.y, task.train.task)))
        share = self.memory // len(self.stored)
        kept = []
        for x, y, t in self.stored:
            idx = torch.randperm(len(y), generator=self.cpu_generator)[:share].to(self.device)
            kept.append((x[idx], y[idx], t[idx]))
        self.stored = kept

    def _grad(self) -> torch.Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                          for p in self.model.parameters()])

    def update(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        if not self.stored:
            return super().update(batch)
        loss, _ = self.loss(batch)
        x, y, t = (torch.cat(parts) for parts in zip(*self.stored, strict=True))
        idx = torch.randint(0, len(y), (min(self.sample_size, len(y)),),
                            generator=self.cpu_generator).to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.logits(self.augment(x[idx]), t[idx]), y[idx]).backward()
        g_ref = self._grad()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        g = self._grad()
        dot = g @ g_ref
        g = torch.where(dot < 0, g - dot / (g_ref @ g_ref).clamp_min(1e-12) * g_ref, g)
        offset = 0
        for p in self.model.parameters():
            n = p.numel()
            p.grad = g[offset:offset + n].view_as(p).clone()
            offset += n
        self.schedule_lr(self.optimizer)
        self.optimizer.step()
        self.updates += 1
        return {"loss": loss.detach(), "projected": (dot < 0).float()}
