"""Domain generalization by meta-learning across the source domains.

Fish (Shi, Seely, Torr, Siddharth, Hannun, Usunier & Synnaeve, "Gradient Matching for Domain
Generalization", ICLR 2022; the ``Fish`` algorithm of ``domainbed/algorithms.py`` in
facebookresearch/DomainBed): each step, a copy of the model takes one optimizer step on each
source environment in turn (in the environments' order; the copy's optimizer keeps its state
from step to step, as DomainBed's ``optimizer_inner_state``); the model then moves
``meta_lr`` of the way to the copy, which follows the direction on which the environments'
gradients agree.

MLDG (Li, Yang, Song & Hospedales, "Learning to Generalize: Meta-Learning for Domain
Generalization", AAAI 2018), in DomainBed's first-order form (``MLDG``): each environment in
turn is meta-train for the next one, in a random cyclic order; a copy takes one Adam step on
the meta-train environment, and the model steps along the meta-train gradient plus ``beta``
times the meta-test environment's gradient at the copy's weights."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import autograd, nn

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


def cyclic_pairs(count: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """DomainBed's ``random_pairs_of_minibatches``: a random order of the ``count``
    environments, each paired with the next (the last with the first)."""
    perm = torch.randperm(count, generator=generator).tolist()
    return [(perm[i], perm[(i + 1) % count]) for i in range(count)]


class MLDG(EnvironmentMethod):
    """``mldg``: first-order MLDG (see the module doc), ``beta`` 1 as DomainBed's default.
    The environments are those the batch holds, in :func:`cyclic_pairs`; each pair's
    minibatches are cut to the smaller one's size. The copy steps with a fresh Adam at the
    run's learning rate and weight decay (DomainBed's ``inner_opt``); the model's own
    optimizer then steps on the summed gradients over the pairs, divided by their number.
    Only copies see the data, so a model with batch-norm running statistics (DomainBed's
    networks have none: group norm, or frozen statistics) would never update them: such a
    model's statistics follow a forward pass of the whole batch without gradients before
    the step, as an ERM step's forward pass would.

    Reference: DomainBed ``MLDG`` in ``domainbed/algorithms.py`` and
    ``random_pairs_of_minibatches`` in ``domainbed/lib/misc.py``.
    """

    packable = False  # a copy of the model per pair of each run's own environments

    def __init__(self, model, *, name: str, beta: float = 1.0, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.beta = beta
        self.pair_generator = torch.Generator().manual_seed(torch.initial_seed() % 2**31)

    def update(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        src = batch["source"]
        x, env = self.augment(src.x), self.environments(src)
        batches = [(x[env == e], src.y[env == e]) for e in torch.unique(env)]
        params = [p for p in self.model.parameters() if p.requires_grad]
        grads = [torch.zeros_like(p) for p in params]
        settings = self.optim_settings
        objective = torch.zeros((), device=self.device)
        for i, j in cyclic_pairs(len(batches), self.pair_generator):
            n = min(len(batches[i][1]), len(batches[j][1]))
            (xi, yi), (xj, yj) = [(bx[:n], by[:n]) for bx, by in (batches[i], batches[j])]
            inner = copy.deepcopy(self.model)
            inner_params = [p for p in inner.parameters() if p.requires_grad]
            inner_opt = torch.optim.Adam(inner_params, lr=settings["lr"],
                                         weight_decay=settings["weight_decay"])
            inner_obj = F.cross_entropy(inner(xi), yi)
            inner_opt.zero_grad()
            inner_obj.backward()
            inner_opt.step()
            loss_j = F.cross_entropy(inner(xj), yj)
            grad_j = autograd.grad(loss_j, inner_params, allow_unused=True)
            for g, p, gj in zip(grads, inner_params, grad_j, strict=True):
                if p.grad is not None:
                    g.add_(p.grad / len(batches))
                if gj is not None:
                    g.add_(self.beta * gj / len(batches))
            objective = objective + inner_obj.detach() + self.beta * loss_j.detach()
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
               for m in self.model.modules()):
            with torch.no_grad():
                self.model(x)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        self.schedule_lr(self.optimizer)
        self.optimizer.step()
        self.updates += 1
        self.after_step()
        return {"loss": objective / len(batches)}
