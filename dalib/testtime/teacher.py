"""Teachers on the test stream: CoTTA and RoTTA (:class:`RoTTA`). CoTTA (Wang, Fink, Van
Gool & Dai, "Continual Test-Time Domain Adaptation", CVPR 2022; ``cotta.py`` of
github.com/qinenergy/cotta): a mean teacher (EMA of the student) gives the pseudo-labels;
when the source model's mean top probability over the batch is below ``threshold``, the
teacher's logits averaged over ``augmentations`` augmented views (:func:`tta_view`, in pixel
space) replace them for the whole batch; the student, every parameter trainable, fits their
softmax; after each step every weight returns to its source value with probability
``restore``. The teacher's (possibly averaged) logits are the method's predictions."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from dalib.adaptation.blocks import ema_update
from dalib.augment import tta_view
from dalib.testtime.base import TestTimeMethod, batch_statistics


class CoTTA(TestTimeMethod):
    """``cotta``: mean teacher, augmentation-averaged pseudo-labels, stochastic restore.
    Defaults are the reference's CIFAR-10 ones (32 views, threshold 0.92, ``ema`` 0.999,
    ``restore`` 0.01); ``flip = false`` leaves mirrored views out (digits, text).

    Reference: qinenergy/cotta ``cifar/cotta.py`` and ``cifar/my_transforms.py``.
    """

    adapts = "all"

    def __init__(self, model, *, name: str, ema: float = 0.999, threshold: float = 0.92,
                 augmentations: int = 32, restore: float = 0.01, flip: bool = True,
                 **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.ema, self.threshold = ema, threshold
        self.augmentations, self.restore, self.flip = augmentations, restore, flip
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

    def step(self, x: torch.Tensor) -> torch.Tensor:
        student = self.model(x)
        with torch.no_grad():
            anchor = self.anchor(x).softmax(-1).amax(-1).mean()
            teacher = self.teacher(x)
            if self.augmentations and float(anchor) < self.threshold:
                teacher = torch.stack([self.teacher(tta_view(x, self.generator, self.flip))
                                       for _ in range(self.augmentations)]).mean(0)
        self.descend(-(teacher.softmax(-1) * student.log_softmax(-1)).sum(-1).mean())
        ema_update(self.teacher, self.model, self.ema)
        with torch.no_grad():
            if self.restore:
                for name, p in self.model.named_parameters():
                    keep = torch.rand(p.shape, generator=self.generator,
                                      device=p.device) >= self.restore
                    p.copy_(torch.where(keep, p, self.initial[name].to(p.device)))
        return teacher

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.teacher(x)


class RobustBatchNorm(nn.BatchNorm2d):
    """RoTTA's robust batch norm (``RobustBN`` of ``core/utils/bn_layers.py``,
    github.com/BIT-DA/RoTTA): in training mode the statistics become ``(1 - alpha)`` x the
    stored ones + ``alpha`` x the batch's, the batch normalised by them (gradients flow
    through the batch's part) and the stored ones replaced (detached); in evaluation mode
    the stored statistics. Batch-norm layers of any dimension (every axis but the channel's
    is reduced)."""

    alpha = 0.05

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1, -1] + [1] * (x.dim() - 2)
        mean, var = self.running_mean, self.running_var
        if self.training:
            dims = [0] + list(range(2, x.dim()))
            var_b, mean_b = torch.var_mean(x, dims, unbiased=False)
            mean = (1 - self.alpha) * mean + self.alpha * mean_b
            var = (1 - self.alpha) * var + self.alpha * var_b
            with torch.no_grad():
                self.running_mean.copy_(mean.detach())
                self.running_var.copy_(var.detach())
        norm = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
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
    2023; ``core/adapter/rotta.py`` and ``core/utils/memory.py`` of github.com/BIT-DA/RoTTA):
    the teacher, in evaluation mode, predicts each test batch; each sample enters a
    category-balanced memory of ``capacity`` samples with the teacher's pseudo-label and
    uncertainty (entropy), as the reference's ``CSTU``: a class under its quota takes a free
    place, else replaces the highest-scored (oldest, most uncertain) sample of the majority
    classes; a class at its quota replaces one of its own; a new sample whose score is not
    lower is refused; every age then grows by one. Every ``update_every`` samples the
    student, its robust batch norms (:class:`RobustBatchNorm`, momentum ``alpha``) in
    training mode, fits the teacher's softmax on the memory under one :func:`tta_view`,
    each sample weighted by its timeliness ``exp(-a)/(1 + exp(-a))`` (``a`` = age /
    capacity); the teacher, also in training mode there, follows by EMA (``ema``) of the
    parameters."""

    def __init__(self, model, *, name: str, capacity: int = 64, alpha: float = 0.05,
                 ema: float = 0.999, update_every: int = 64, flip: bool = True,
                 **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.capacity, self.alpha, self.ema = capacity, alpha, ema
        self.update_every, self.flip = update_every, flip
        self.teacher = copy.deepcopy(model)
        self.memory: list[list] = []  # [x, label, uncertainty, age]
        self.seen = 0

    def configure(self) -> None:
        for net in (self.model, self.teacher):
            robust_norms(net.eval())
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

    def score(self, age: float, uncertainty: float, classes: int) -> float:
        return 1 / (1 + math.exp(-age / self.capacity)) + uncertainty / math.log(classes)

    def remember(self, x: torch.Tensor, label: int, uncertainty: float, classes: int) -> None:
        counts = np.bincount([m[1] for m in self.memory], minlength=classes)
        if counts[label] < self.capacity / classes and len(self.memory) < self.capacity:
            add = True
        else:
            pool = np.flatnonzero(counts == counts.max()) if counts[label] < \
                self.capacity / classes else [label]
            worst, top = None, None
            for i, m in enumerate(self.memory):  # the last of the highest scores
                if m[1] in pool and (top is None or self.score(m[3], m[2], classes) >= top):
                    worst, top = i, self.score(m[3], m[2], classes)
            add = worst is None or top > self.score(0, uncertainty, classes)
            if add and worst is not None:
                del self.memory[worst]
        if add:
            self.memory.append([x, label, uncertainty, 0])
        for item in self.memory:
            item[3] += 1

    def step(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = self.teacher(x)
        probs = logits.softmax(-1)
        uncertainty = -(probs * torch.log(probs + 1e-6)).sum(-1)
        labels, uncertainty = probs.argmax(-1).tolist(), uncertainty.tolist()
        for i in range(len(x)):
            self.remember(x[i], labels[i], uncertainty[i], logits.shape[-1])
            self.seen += 1
            if self.seen % self.update_every == 0:
                self.learn()
        return logits

    def learn(self) -> None:
        self.model.train()
        self.teacher.train()
        batch = torch.stack([m[0] for m in self.memory])
        ages = torch.tensor([m[3] / self.capacity for m in self.memory], device=batch.device)
        weight = torch.exp(-ages) / (1 + torch.exp(-ages))
        view = tta_view(batch, self.generator, self.flip)
        with torch.no_grad():
            target = self.teacher(batch).softmax(-1)
        self.descend((weight * -(target * self.model(view).log_softmax(-1)).sum(-1)).mean())
        ema_update(self.teacher, self.model, self.ema)
        self.configure()

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.teacher(x)
