"""Gradient matching across domains by meta-learning: Fish (Shi, Seely, Torr, Siddharth,
Hannun, Usunier & Synnaeve, "Gradient Matching for Domain Generalization", ICLR 2022; the
``Fish`` algorithm of ``domainbed/algorithms.py`` in facebookresearch/DomainBed). Each step, a
copy of the model takes one optimizer step on each source environment in turn (in the
environments' order; the copy's optimizer keeps its state from step to step, as DomainBed's
``optimizer_inner_state``); the model then moves ``meta_lr`` of the way to the copy, which
follows the direction on which the environments' gradients agree."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from dalib.engine import Batch
from dalib.generalization.base import EnvironmentMethod


class Fish(EnvironmentMethod):
    """Fish's first-order update: ``theta += meta_lr * (theta_inner - theta)`` after the
    inner steps, parameters and floating buffers (batch-norm statistics) alike.

    Reference: DomainBed ``Fish`` in ``domainbed/algorithms.py`` (facebookresearch/DomainBed).
    """

    packable = False  # the inner model steps through each run's own environments

    def __init__(self, model, *, name: str, meta_lr: float = 0.5, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.meta_lr = meta_lr
        self.inner = copy.deepcopy(model)
        self.inner_optimizer = self.make_optimizer(self.inner.parameters(),
                                                   **self.optim_settings)

    def update(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        src = batch["source"]
        x, env = self.augment(src.x), self.environments(src)
        self.inner.load_state_dict(self.model.state_dict())
        self.inner.train(self.model.training)
        inner_optimizer = self.inner_optimizer
        self.schedule_lr(inner_optimizer)
        losses = []
        for e in torch.unique(env):
            mask = env == e
            loss = F.cross_entropy(self.inner(x[mask]), src.y[mask])
            inner_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            inner_optimizer.step()
            losses.append(loss.detach())
        with torch.no_grad():
            inner = self.inner.state_dict()
            for key, value in self.model.state_dict().items():
                if value.is_floating_point():
                    value.add_(self.meta_lr * (inner[key] - value))
        self.updates += 1
        self.after_step()
        return {"loss": torch.stack(losses).mean()}
