"""Feature alignment across domains: the source environments' features (and, in multi-source
adaptation, the unlabelled target's) are made alike while the pooled sources are classified.

* ``coral``: the distance of every pair of environments' feature means and covariances
  (Sun & Saenko, "Deep CORAL", ECCV-W 2016; DomainBed's form, Gulrajani & Lopez-Paz 2021);
* ``mmd``: multi-kernel MMD between every pair (Li, Pan, Wang & Kot, "Domain Generalization
  with Adversarial Feature Learning", CVPR 2018, MMD-AAE's penalty);
* ``m3sda``: moment matching of every pair of domains, each source with the target and the
  sources with each other (Peng et al., "Moment Matching for Multi-Source Domain
  Adaptation", ICCV 2019, without its per-source classifier pairs);
* ``dann-domains`` / ``cdan-domains``: one discriminator over all domains, behind gradient
  reversal (Ganin et al., JMLR 2016, with as many outputs as domains; conditioned on the
  labels, or on the target's predictions, as in Li et al., "Deep Domain Generalization via
  Conditional Invariant Adversarial Networks", ECCV 2018, and CDAN, Long et al. 2018).

Where the scenario has unlabelled target data (``target_data = "unlabelled"``) it is one
more domain of the alignment; without (domain generalization) only the sources are aligned.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from dalib.adaptation.blocks import (
    Discriminator,
    grl_schedule,
    multi_kernel_mmd,
    multilinear,
    reverse_grad,
)
from dalib.engine import Batch
from dalib.generalization.base import EnvironmentMethod


def mean_covariance_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The mean squared difference of two samples' feature means plus that of their
    covariances."""
    def cov(x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(0, keepdim=True)
        return x.T @ x / max(len(x) - 1, 1)

    return (a.mean(0) - b.mean(0)).pow(2).mean() + (cov(a) - cov(b)).pow(2).mean()


def moment_distance(a: torch.Tensor, b: torch.Tensor, order: int = 2) -> torch.Tensor:
    """The sum over ``k = 1 .. order`` of the Euclidean distance between the two samples'
    k-th moments per feature (raw means, then moments of the centred features)."""
    total = (a.mean(0) - b.mean(0)).norm()
    ca, cb = a - a.mean(0), b - b.mean(0)
    for k in range(2, order + 1):
        total = total + (ca.pow(k).mean(0) - cb.pow(k).mean(0)).norm()
    return total


class DomainAlignment(EnvironmentMethod):
    """Cross-entropy on the pooled sources plus ``weight`` x the mean
    :meth:`pair_distance` over the pairs of domains present in the batch (each source
    environment, and the target where it is fed)."""

    optional_needs = ("target",)

    def __init__(self, model, *, name: str, weight: float = 1.0, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.weight = weight

    def pair_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        src, env = batch["source"], self.environments(batch["source"])
        parts = [self.augment(src.x)]
        if "target" in batch:
            parts.append(self.augment(batch["target"].x))
        feats = self.model.features(torch.cat(parts))
        n = len(src.y)
        cls = F.cross_entropy(self.model.head(feats[:n]), src.y)
        groups = [feats[:n][env == e] for e in torch.unique(env)]
        if "target" in batch:
            groups.append(feats[n:])
        groups = [g for g in groups if len(g) >= 2]
        pairs = list(itertools.combinations(range(len(groups)), 2))
        if not pairs:
            return cls, {"cls": cls.detach()}
        penalty = torch.stack([self.pair_distance(groups[i], groups[j]) for i, j in pairs]).mean()
        return cls + self.weight * penalty, {"cls": cls.detach(), "align": penalty.detach()}


class CORALAlignment(DomainAlignment):
    """``coral``: :func:`mean_covariance_distance` between every pair of domains."""

    def pair_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return mean_covariance_distance(a, b)


class MMDAlignment(DomainAlignment):
    """``mmd``: multi-kernel MMD (:func:`~dalib.adaptation.blocks.multi_kernel_mmd`) between
    every pair of domains."""

    def pair_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return multi_kernel_mmd(a, b)


class MomentMatching(DomainAlignment):
    """``m3sda``: :func:`moment_distance` up to ``order`` between every pair of domains, the
    target one of them (multi-source adaptation: it needs unlabelled target data)."""

    needs = ("source", "target")

    def __init__(self, model, *, name: str, weight: float = 1.0, order: int = 2,
                 **optim) -> None:
        super().__init__(model, name=name, weight=weight, **optim)
        self.order = order

    def pair_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return moment_distance(a, b, self.order)


class DomainAdversarial(EnvironmentMethod):
    """Cross-entropy on the pooled sources plus ``weight`` x the cross-entropy of a
    discriminator that tells every domain apart (the source environments, then the target
    where it is fed), seen through gradient reversal whose coefficient rises from 0 to
    ``grl_high``. ``conditional``: the discriminator sees the features times the one-hot
    label (sources) or the detached prediction (target)."""

    optional_needs = ("target",)

    def __init__(self, model, *, name: str, weight: float = 1.0, hidden: int = 256,
                 grl_high: float = 1.0, conditional: bool = False, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.weight, self.hidden, self.grl_high = weight, hidden, grl_high
        self.conditional = conditional
        self.discriminator: Discriminator | None = None

    def prepare(self, feeds: dict) -> None:
        """The discriminator has one output per domain: the sources' environments (one when
        the data has none), plus the target when it is fed."""
        domains = max(1, len(feeds["source"].envs)) + ("target" in feeds)
        width = self.model.feature_dim
        if self.conditional:
            width *= self.model.head.out_features
        self.discriminator = self.attach(Discriminator(width, self.hidden, outputs=domains))

    def trained_modules(self) -> list:
        return [self.model, self.discriminator]

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        src, env = batch["source"], self.environments(batch["source"])
        parts, domain = [self.augment(src.x)], [env]
        if "target" in batch:
            parts.append(self.augment(batch["target"].x))
            domain.append(torch.full((len(parts[1]),), self.discriminator.outputs - 1,
                                     device=env.device))
        feats = self.model.features(torch.cat(parts))
        logits = self.model.head(feats)
        n = len(src.y)
        cls = F.cross_entropy(logits[:n], src.y)
        if self.conditional:
            condition = F.one_hot(src.y, logits.shape[-1]).to(feats.dtype)
            if "target" in batch:
                condition = torch.cat([condition, F.softmax(logits[n:], -1).detach()])
            feats = multilinear(feats, condition)
        coeff = grl_schedule(self.progress, high=self.grl_high)
        adversarial = F.cross_entropy(self.discriminator(reverse_grad(feats, coeff)),
                                      torch.cat(domain))
        return cls + self.weight * adversarial, {"cls": cls.detach(),
                                                 "domain": adversarial.detach()}
