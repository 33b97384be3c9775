"""A teacher on the test stream: CoTTA (Wang, Fink, Van Gool & Dai, "Continual Test-Time
Domain Adaptation", CVPR 2022). A mean teacher (EMA of the student) gives the pseudo-labels,
averaged over ``augmentations`` augmented views when the source model is not confident
(its top probability below ``threshold``); the student, every parameter trainable, fits
them; after each step every weight returns to its source value with probability
``restore``. The teacher's predictions are the method's."""

from __future__ import annotations

import copy

import torch

from dalib.augment import random_shift
from dalib.testtime.base import TestTimeMethod, batch_statistics


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
        loss = -(teacher * student.log_softmax(-1)).sum(-1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.updates += 1
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.model.parameters(), strict=True):
                t.mul_(self.ema).add_(s, alpha=1 - self.ema)
            if self.restore:
                for name, p in self.model.named_parameters():
                    keep = torch.rand(p.shape, generator=self.generator,
                                      device=p.device) >= self.restore
                    p.copy_(torch.where(keep, p, self.initial[name].to(p.device)))
        return teacher.log()

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.teacher(x)
