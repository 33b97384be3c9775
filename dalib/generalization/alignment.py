"""Feature alignment across domains: the source environments' features (and, in multi-source
adaptation, the unlabelled target's) are made alike while the pooled sources are classified.

* ``coral``: the distance of every pair of domains' feature means and covariances (Sun &
  Saenko, "Deep CORAL", ECCV-W 2016; DomainBed's form, Gulrajani & Lopez-Paz 2021);
* ``mmd``: multi-kernel MMD between every pair (Li, Pan, Wang & Kot, "Domain Generalization
  with Adversarial Feature Learning", CVPR 2018, MMD-AAE's penalty), DomainBed's form (its
  ``MMD`` algorithm: Gaussian kernels of fixed widths ``gamma`` = 1e-3 ... 1e3);
  ``bandwidth = "batch"`` sizes the kernels from each batch's mean distance instead (about
  3x the pull at weight 1 on digit features);
* ``m3sda``: moment matching of every pair of domains, each source with the target and the
  sources with each other (Peng et al., "Moment Matching for Multi-Source Domain
  Adaptation", ICCV 2019, without its per-source classifier pairs);
* ``dann-domains`` / ``cdan-domains``: one discriminator over all domains, behind gradient
  reversal (Ganin et al., JMLR 2016, with as many outputs as domains; conditioned on the
  labels, or on the target's predictions, as in Li et al., "Deep Domain Generalization via
  Conditional Invariant Adversarial Networks", ECCV 2018, and CDAN, Long et al. 2018).

Where the scenario has unlabelled target data (``target_data = "unlabelled"``) it is one
more domain of the alignment; without (domain generalization) only the sources are aligned.
Domains are one-hot masks over the batch, so packed runs compute what separate runs do.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from dalib.adaptation.blocks import (
    Discriminator,
    fixed_gaussian_kernels,
    gaussian_kernels,
    grl_schedule,
    multilinear,
    reverse_grad,
)
from dalib.engine import Batch
from dalib.generalization.base import EnvironmentMethod
from dalib.method import cross_entropy
from dalib.pack.modules import pack


class Groups:
    """The samples of a batch (``(..., N, D)`` features) in ``count`` groups: sizes, means
    and the features centred on their own group's mean."""

    def __init__(self, feats: torch.Tensor, groups: torch.Tensor, count: int) -> None:
        self.onehot = F.one_hot(groups, count).to(feats.dtype)
        self.sizes = self.onehot.sum(-2)
        self.weights = self.onehot / self.sizes.clamp_min(1).unsqueeze(-2)
        self.means = self.weights.mT @ feats
        self.centred = feats - self.onehot @ self.means
        self.count = count

    def pairs(self) -> list[tuple[int, int]]:
        return list(itertools.combinations(range(self.count), 2))

    def valid(self, i: int, j: int) -> torch.Tensor:
        """Whether groups ``i`` and ``j`` both have two or more samples in the batch."""
        return (self.sizes[..., i] >= 2) & (self.sizes[..., j] >= 2)

    def covariance(self, g: int) -> torch.Tensor:
        part = self.centred * self.onehot[..., g:g + 1]
        return part.mT @ part / (self.sizes[..., g] - 1).clamp_min(1)[..., None, None]


def mean_over_pairs(groups: Groups, distance) -> torch.Tensor:
    """The mean of ``distance(i, j)`` over the pairs of groups both in the batch (0, one per
    packed run, where there is no pair: a single domain)."""
    total = count = groups.sizes.new_zeros(groups.sizes.shape[:-1])
    for i, j in groups.pairs():
        valid = groups.valid(i, j).to(groups.means.dtype)
        total = total + valid * distance(i, j)
        count = count + valid
    return total / count.clamp_min(1)


def coral_distance(groups: Groups) -> torch.Tensor:
    """Mean over pairs of the mean squared difference of the groups' feature means plus that
    of their covariances."""
    covs = [groups.covariance(g) for g in range(groups.count)]
    m = groups.means
    return mean_over_pairs(groups, lambda i, j: (m[..., i, :] - m[..., j, :]).pow(2).mean(-1)
                           + (covs[i] - covs[j]).pow(2).mean((-2, -1)))


def mmd_distance(groups: Groups, feats: torch.Tensor, bandwidth: str = "fixed"
                 ) -> torch.Tensor:
    """Mean over pairs of the squared multi-kernel MMD (biased estimate) between groups,
    kernels of DomainBed's fixed widths or sized from the batch (``bandwidth``)."""
    kernels = fixed_gaussian_kernels(feats) if bandwidth == "fixed" else gaussian_kernels(feats)
    k = groups.weights.mT @ kernels @ groups.weights
    return mean_over_pairs(groups, lambda i, j: k[..., i, i] + k[..., j, j] - 2 * k[..., i, j])


def moment_distance(groups: Groups, order: int = 2) -> torch.Tensor:
    """Mean over pairs of the sum over ``k = 1 .. order`` of the Euclidean distance of the
    groups' k-th moments per feature (raw means, then central moments)."""
    moments = [groups.means] + [groups.weights.mT @ groups.centred.pow(k)
                                for k in range(2, order + 1)]

    def distance(i: int, j: int) -> torch.Tensor:
        return sum(torch.sqrt((m[..., i, :] - m[..., j, :]).pow(2).sum(-1) + 1e-12)
                   for m in moments)

    return mean_over_pairs(groups, distance)


def target_ids(env: torch.Tensor, size: int, value: int) -> torch.Tensor:
    """``size`` domain ids ``value`` per run, beside the source environments ``env``."""
    return torch.full((*env.shape[:-1], size), value, dtype=env.dtype, device=env.device)


class DomainAlignment(EnvironmentMethod):
    """Cross-entropy on the pooled sources plus ``weight`` x the mean :meth:`distance` over
    the pairs of domains in the batch (each source environment, and the target where it is
    fed)."""

    optional_needs = ("target",)

    def __init__(self, model, *, name: str, weight: float = 1.0, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.weight = weight

    def distance(self, groups: Groups, feats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        src, env = batch["source"], self.environments(batch["source"])
        count = self.count(env)
        x, domain = [self.augment(src.x)], env
        if "target" in batch:
            x.append(self.augment(batch["target"].x))
            domain = torch.cat([env, target_ids(env, x[1].shape[self.lead_dims], count)], -1)
            count += 1
        feats = self.model.features(torch.cat(x, self.lead_dims))
        n = src.y.shape[-1]
        cls = cross_entropy(self.model.head(feats[..., :n, :]), src.y)
        penalty = self.distance(Groups(feats, domain, count), feats)
        return cls + self.weight * penalty, {"cls": cls.detach(), "align": penalty.detach()}


class CORALAlignment(DomainAlignment):
    """``coral``: :func:`coral_distance`.

    Reference: DomainBed ``CORAL`` in ``domainbed/algorithms.py`` (facebookresearch/DomainBed).
    """

    def distance(self, groups: Groups, feats: torch.Tensor) -> torch.Tensor:
        return coral_distance(groups)


class MMDAlignment(DomainAlignment):
    """``mmd``: :func:`mmd_distance` with ``bandwidth`` ``fixed`` (DomainBed's) or
    ``batch``.

    Reference: DomainBed ``MMD`` in ``domainbed/algorithms.py`` (facebookresearch/DomainBed).
    """

    def __init__(self, model, *, name: str, weight: float = 1.0, bandwidth: str = "fixed",
                 **optim) -> None:
        super().__init__(model, name=name, weight=weight, **optim)
        if bandwidth not in ("fixed", "batch"):
            raise ValueError(f"bandwidth is {bandwidth!r}, expected 'fixed' or 'batch'")
        self.bandwidth = bandwidth

    def distance(self, groups: Groups, feats: torch.Tensor) -> torch.Tensor:
        return mmd_distance(groups, feats, self.bandwidth)


class MomentMatching(DomainAlignment):
    """``m3sda``: :func:`moment_distance` up to ``order``, the target one of the domains
    (multi-source adaptation: it needs unlabelled target data).

    Reference: the moment distance of Peng et al. (ICCV 2019,
    VisionLearningGroup/VisionLearningGroup.github.io
    ``M3SDA/code_MSDA_digit/metric/msda.py``) at the weight and order of the released
    training code (``solver_MSDA.py``: 0.0005, moments up to the 5th); the per-source
    classifier pairs are ``m3sda-beta``'s. At weight 1 and order 2 the moment term outweighs
    the classification loss (12.6 points below ERM on ``multisource-digits``).
    """

    needs = ("source", "target")

    def __init__(self, model, *, name: str, weight: float = 0.0005, order: int = 5,
                 **optim) -> None:
        super().__init__(model, name=name, weight=weight, **optim)
        self.order = order

    def distance(self, groups: Groups, feats: torch.Tensor) -> torch.Tensor:
        return moment_distance(groups, self.order)


class DomainAdversarial(EnvironmentMethod):
    """Cross-entropy on the pooled sources against a discriminator that tells every domain
    apart (the source environments, then the target where it is fed), with ``weight``.

    ``steps = "alternating"`` (default) is DomainBed's ``AbstractDANN`` (``DANN`` and, with
    ``conditional``, ``CDANN`` of ``domainbed/algorithms.py``): one forward pass, then
    ``d_steps`` discriminator steps for each step of the model, taken in turn; the model
    minimises its cross-entropy minus ``weight`` x the discriminator's loss; the
    discriminator (no batch norm, two hidden layers) and the model each have an Adam with
    betas (``beta1``, 0.9); conditional: the discriminator sees the features plus a learnt
    embedding of the label (the target: of its detached prediction), its loss balanced over
    classes. ``steps = "reversal"``: Ganin et al.'s single joint step through gradient
    reversal, the coefficient rising from 0 to ``grl_high``, a batch-norm discriminator;
    conditional: the features times the one-hot label (the target: the detached
    prediction), as CDAN."""

    optional_needs = ("target",)

    def __init__(self, model, *, name: str, weight: float = 1.0, hidden: int = 256,
                 grl_high: float = 1.0, conditional: bool = False,
                 steps: str = "alternating", d_steps: int = 1, beta1: float = 0.5,
                 **optim) -> None:
        super().__init__(model, name=name, **optim)
        if steps not in ("alternating", "reversal"):
            raise ValueError(f"steps is {steps!r}, expected 'alternating' or 'reversal'")
        self.weight, self.hidden, self.grl_high = weight, hidden, grl_high
        self.conditional, self.steps, self.d_steps, self.beta1 = conditional, steps, d_steps, \
            beta1
        self.discriminator: Discriminator | None = None
        self.embedding: torch.nn.Embedding | None = None
        self.disc_optimizer: torch.optim.Optimizer | None = None

    def prepare(self, feeds: dict) -> None:
        """The discriminator has one output per domain: the sources' environments (one when
        the data has none), plus the target when it is fed."""
        super().prepare(feeds)
        width = self.model.feature_dim
        outputs = self.environment_count + ("target" in feeds)
        if self.steps == "reversal":
            if self.conditional:
                width *= self.model.head.out_features
            self.discriminator = self.attach(Discriminator(width, self.hidden,
                                                           outputs=outputs))
            return
        self.discriminator = Discriminator(width, self.hidden, batch_norm=False,
                                           outputs=outputs).to(self.device)
        self.embedding = torch.nn.Embedding(self.model.head.out_features,
                                            width).to(self.device)
        adam = dict(lr=self.optim_settings["lr"], betas=(self.beta1, 0.9))
        if self.optim_settings["optimizer"] == "adam":
            self.optimizer = torch.optim.AdamW(
                self.rate_groups(list(self.model.parameters())),
                weight_decay=self.optim_settings["weight_decay"],
                **adam)
        self.disc_optimizer = torch.optim.AdamW(
            [*self.discriminator.parameters(), *self.embedding.parameters()],
            weight_decay=0.0, **adam)

    def pack_reason(self) -> str | None:
        if self.steps == "alternating":
            return "alternating discriminator and model steps run one run at a time"
        return super().pack_reason()

    def trained_modules(self) -> list:
        # the discriminator exists once prepare knows the domains
        extra = [m for m in (self.discriminator, self.embedding) if m is not None]
        return [self.model, *extra]

    def optimizer_modules(self) -> dict:
        if self.steps == "reversal":
            return super().optimizer_modules()
        return {"optimizer": [self.model],
                "disc_optimizer": [self.discriminator, self.embedding]}

    def adopt(self, methods: list) -> None:
        self.discriminator = pack([m.discriminator for m in methods])

    def _domains(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, torch.Tensor, int]:
        src, env = batch["source"], self.environments(batch["source"])
        x, domain = [self.augment(src.x)], env
        if "target" in batch:
            x.append(self.augment(batch["target"].x))
            domain = torch.cat([env, target_ids(env, x[1].shape[self.lead_dims],
                                                self.discriminator.outputs - 1)], -1)
        return torch.cat(x, self.lead_dims), domain, src.y.shape[-1]

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The reversal form's joint loss."""
        x, domain, n = self._domains(batch)
        y = batch["source"].y
        feats = self.model.features(x)
        logits = self.model.head(feats)
        cls = cross_entropy(logits[..., :n, :], y)
        if self.conditional:
            condition = F.one_hot(y, logits.shape[-1]).to(feats.dtype)
            if "target" in batch:
                condition = torch.cat([condition, F.softmax(logits[..., n:, :], -1).detach()],
                                      -2)
            feats = multilinear(feats, condition)
        coeff = grl_schedule(self.progress, high=self.grl_high)
        adversarial = cross_entropy(self.discriminator(reverse_grad(feats, coeff)), domain)
        return cls + self.weight * adversarial, {"cls": cls.detach(),
                                                 "domain": adversarial.detach()}

    def update(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        if self.steps == "reversal":
            return super().update(batch)
        x, domain, n = self._domains(batch)
        y = batch["source"].y
        feats = self.model.features(x)
        logits = self.model.head(feats)
        disc_in = feats
        if self.conditional:
            condition = self.embedding(y)
            if len(domain) > n:  # the target: the embedding of its predicted class mass
                probs = F.softmax(logits[n:], -1).detach()
                condition = torch.cat([condition, probs @ self.embedding.weight])
            disc_in = feats + condition
        per_sample = F.cross_entropy(self.discriminator(disc_in), domain, reduction="none")
        if self.conditional:  # DomainBed's class balance over the labelled samples
            labels = torch.cat([y, logits[n:].argmax(-1)]) if len(domain) > n else y
            counts = F.one_hot(labels).sum(0)
            disc_loss = (per_sample / (counts[labels] * len(counts)).float()).sum()
        else:
            disc_loss = per_sample.mean()
        self.schedule_lr(self.optimizer, self.disc_optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        self.disc_optimizer.zero_grad(set_to_none=True)
        if (self.updates + 1) % (1 + self.d_steps) < self.d_steps:  # DomainBed's count
            disc_loss.backward()
            self.disc_optimizer.step()
            logs = {"loss": disc_loss.detach(), "domain": disc_loss.detach()}
        else:
            cls = cross_entropy(logits[:n], y)
            total = cls - self.weight * disc_loss
            total.backward()
            self.optimizer.step()
            logs = {"loss": total.detach(), "cls": cls.detach(), "domain": disc_loss.detach()}
        self.updates += 1
        self.after_step()
        return logs
