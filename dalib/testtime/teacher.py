"""Teachers on the test stream: CoTTA and RoTTA (:class:`RoTTA`). CoTTA (Wang, Fink, Van
Gool & Dai, "Continual Test-Time Domain Adaptation", CVPR 2022): a mean teacher (EMA of
the student) gives the pseudo-labels, averaged over ``augmentations`` augmented views when
the source model is not confident (its top probability below ``threshold``); the student,
every parameter trainable, fits them; after each step every weight returns to its source
value with probability ``restore``. The teacher's predictions are the method's."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from dalib.adaptation.blocks import ema_update
from dalib.augment import random_shift
from dalib.testtime.base import TestTimeMethod, batch_statistics, entropy_of


class CoTTA(TestTimeMethod):
    """``cotta``: mean teacher, augmentation-averaged pseudo-labels, stochastic restore."""

    adapts = "all"

    def __init__(self, model, *, name: str, ema: float = 0.999, threshold: float = 0.92,
                 augmentations: int = 16, restore: float = 0.01, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.ema, self.threshold = ema, threshold
        self.augmentations, self.restore = augmentations, restore
        self.teacher = copy.deepcopy(model)
        self.anchor = copy.deepcopy(model)

    def start(self, feeds: dict) -> None:
        super().start(feeds)
        for net in (self.teacher, self.anchor):
            net.load_state_dict(self.model.state_dict())
            batch_statistics(net.requires_grad_(False))

    def reset(self) -> None:
        super().reset()
        self.teacher.load_state_dict(self.initial)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """An augmented view: a random shift of up to 2 pixels and Gaussian noise (images),
        or noise alone."""
        if x.dim() == 4:
            x = random_shift(x, 2, self.generator)
        noise = torch.randn(x.shape, generator=self.generator, device=x.device)
        return x + 0.05 * noise

    def step(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher = self.teacher(x).softmax(-1)
            confident = self.anchor(x).softmax(-1).amax(-1) >= self.threshold
            if self.augmentations and not bool(confident.all()):
                views = torch.stack([self.teacher(self.view(x)).softmax(-1)
                                     for _ in range(self.augmentations)]).mean(0)
                teacher = torch.where(confident[:, None], teacher, views)
        student = self.model(x)
        self.descend(-(teacher * student.log_softmax(-1)).sum(-1).mean())
        ema_update(self.teacher, self.model, self.ema)
        with torch.no_grad():
            if self.restore:
                for name, p in self.model.named_parameters():
                    keep = torch.rand(p.shape, generator=self.generator,
                                      device=p.device) >= self.restore
                    p.copy_(torch.where(keep, p, self.initial[name].to(p.device)))
        return teacher.log()

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.teacher(x)


class RobustBatchNorm(nn.BatchNorm2d):
    """RoTTA's robust batch norm: statistics as a moving average (momentum ``alpha``) of the
    source ones and each test batch's, normalising with that average (batch-norm layers of
    any dimension: the reduction runs over every axis but the channel one)."""

    alpha = 0.05

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            dims = [0] + list(range(2, x.dim()))
            with torch.no_grad():
                mean, var = x.mean(dims), x.var(dims, unbiased=False)
                self.running_mean.mul_(1 - self.alpha).add_(self.alpha * mean)
                self.running_var.mul_(1 - self.alpha).add_(self.alpha * var)
        shape = [1, -1] + [1] * (x.dim() - 2)
        norm = (x - self.running_mean.view(shape)) / torch.sqrt(
            self.running_var.view(shape) + self.eps)
        return norm * self.weight.view(shape) + self.bias.view(shape)


def robust_norms(model: nn.Module) -> nn.Module:
    """``model`` with every batch-norm layer made a :class:`RobustBatchNorm` (the same
    parameters, statistics and state-dict keys)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.__class__ = RobustBatchNorm
    return model


class RoTTA(TestTimeMethod):
    """``rotta`` (Yuan, Xie & Li, "Robust Test-Time Adaptation in Dynamic Scenarios", CVPR
    2023): robust batch norm (statistics averaged over batches, momentum ``alpha``); a
    category-balanced memory of ``capacity`` test samples, each with the teacher's
    pseudo-label, its uncertainty (entropy) and its age, where a new sample replaces the
    oldest, most uncertain one of the most represented classes; every ``update_every``
    samples the student fits the teacher's predictions on the memory under a random shift
    and noise, each sample weighted by its age (``exp(-age/capacity)``-style timeliness); a
    mean teacher (``ema``) predicts."""

    def __init__(self, model, *, name: str, capacity: int = 64, alpha: float = 0.05,
                 ema: float = 0.999, update_every: int = 64, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.capacity, self.alpha, self.ema = capacity, alpha, ema
        self.update_every = update_every
        self.teacher = copy.deepcopy(model)
        self.memory: list[list] = []  # [x, label, uncertainty, age]
        self.seen = 0

    def configure(self) -> None:
        for net in (self.model, self.teacher):
            robust_norms(batch_statistics(net))
            for m in net.modules():
                if isinstance(m, RobustBatchNorm):
                    m.alpha = self.alpha

    def start(self, feeds: dict) -> None:
        self.teacher.load_state_dict(self.model.state_dict())
        self.teacher.requires_grad_(False)
        super().start(feeds)

    def reset(self) -> None:
        super().reset()
        self.teacher.load_state_dict(self.initial)
        self.memory, self.seen = [], 0

    def remember(self, x: torch.Tensor, label: int, uncertainty: float, classes: int) -> None:
        for item in self.memory:
            item[3] += 1
        if len(self.memory) < self.capacity:
            self.memory.append([x, label, uncertainty, 0])
            return
        counts = np.bincount([m[1] for m in self.memory], minlength=classes)
        quota = self.capacity / classes
        # a class under its quota takes the place of a sample of the most represented
        # classes; a class at its quota replaces one of its own
        pool = list(np.flatnonzero(counts == counts.max())) if counts[label] < quota \
            else [label]
        candidates = [i for i, m in enumerate(self.memory) if m[1] in pool]

        def score(age: float, u: float) -> float:
            return 1 / (1 + math.exp(-age / self.capacity)) + u / math.log(classes)

        worst = max(candidates, key=lambda i: score(self.memory[i][3], self.memory[i][2]))
        if score(self.memory[worst][3], self.memory[worst][2]) > score(0, uncertainty):
            self.memory[worst] = [x, label, uncertainty, 0]

    def step(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = self.teacher(x)
        probs = logits.softmax(-1)
        labels, uncertainty = probs.argmax(-1).tolist(), entropy_of(logits).tolist()
        for i in range(len(x)):
            self.remember(x[i], labels[i], uncertainty[i], logits.shape[-1])
            self.seen += 1
            if self.seen % self.update_every == 0:
                self.learn()
        return logits

    def learn(self) -> None:
        batch = torch.stack([m[0] for m in self.memory])
        ages = torch.tensor([float(m[3]) for m in self.memory], device=batch.device)
        weight = torch.exp(-ages / self.capacity) / (1 + torch.exp(-ages / self.capacity))
        with torch.no_grad():
            target = self.teacher(batch).softmax(-1)
        view = batch + 0.05 * torch.randn(batch.shape, generator=self.generator,
                                          device=batch.device)
        if view.dim() == 4:
            view = random_shift(view, 2, self.generator)
        self.descend((weight * -(target * self.model(view).log_softmax(-1)).sum(-1)).mean())
        ema_update(self.teacher, self.model, self.ema)

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.teacher(x)
