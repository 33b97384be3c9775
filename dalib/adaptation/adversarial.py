"""Adversarial adaptation: features that a domain critic cannot tell apart."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from dalib.adaptation.base import Outputs, Term
from dalib.adaptation.blocks import (
    Discriminator,
    RandomizedMultilinear,
    domain_loss,
    entropy,
    grl_schedule,
    multilinear,
    reverse_grad,
)
from dalib.engine import Batch
from dalib.method import Method, cross_entropy
from dalib.pack.modules import pack, packable


@packable
class DANN(Term):
    """``dann``: a domain discriminator on the features through gradient reversal, its
    coefficient rising from 0 to ``grl_high`` (Ganin & Lempitsky, "Unsupervised Domain
    Adaptation by Backpropagation", ICML 2015; the loss of TLlib's
    ``tllib/alignment/dann.py``, the coefficient the paper's ``2 / (1 + exp(-10 p)) - 1``
    where TLlib's warm start reaches 0.46 after 1,000 steps). Source samples count by the other terms'
    source weights, when there are any (``dann+gate``). It applies to regression as to
    classification (TLlib's ``examples/domain_adaptation/image_regression/dann.py``)."""

    regression = True

    def __init__(self, method, weight: float | None = None, hidden: int = 256,
                 grl_high: float = 1.0) -> None:
        super().__init__(method, weight)
        self.discriminator = Discriminator(method.model.feature_dim, hidden)
        self.grl_high = grl_high

    def forward(self, out: Outputs) -> torch.Tensor:
        coeff = grl_schedule(self.method.progress, high=self.grl_high)
        d = self.discriminator(reverse_grad(torch.cat([out.feat_s, out.feat_t], -2), coeff))
        n = out.feat_s.shape[-2]
        return domain_loss(d[..., :n], d[..., n:], out.source_weight)


@packable
class CDAN(Term):
    """``cdan`` / ``cdan-e``: the discriminator sees the multilinear map of features and
    (detached) predictions, randomized when ``features x classes > 4096``; ``entropy=True``
    weights samples by ``1 + exp(-H(p))`` (Long et al., "Conditional Adversarial Domain
    Adaptation", NeurIPS 2018; TLlib's ``tllib/alignment/cdan.py``, which randomizes only
    when asked)."""

    def __init__(self, method, weight: float | None = None, entropy: bool = False,
                 hidden: int = 256, random_dim: int = 1024, grl_high: float = 1.0) -> None:
        super().__init__(method, weight)
        f, c = method.model.feature_dim, method.model.head.out_features
        self.map: nn.Module | None = None
        if f * c > 4096:
            self.map = RandomizedMultilinear(f, c, random_dim)
        self.discriminator = Discriminator(random_dim if self.map is not None else f * c, hidden)
        self.entropy_weighting = entropy
        self.grl_high = grl_high

    def forward(self, out: Outputs) -> torch.Tensor:
        f = torch.cat([out.feat_s, out.feat_t], -2)
        g = F.softmax(torch.cat([out.logits_s, out.logits_t], -2), -1).detach()
        h = self.map(f, g) if self.map is not None else multilinear(f, g)
        d = self.discriminator(reverse_grad(h, grl_schedule(self.method.progress,
                                                            high=self.grl_high)))
        n = out.feat_s.shape[-2]
        if not self.entropy_weighting:
            return domain_loss(d[..., :n], d[..., n:])
        # TLlib's ConditionalDomainAdversarialLoss: weights normalised to mean 1 over the
        # joint batch, one weighted mean of the binary cross-entropies
        w = 1.0 + torch.exp(-entropy(g))
        w = w / w.mean(-1, keepdim=True)
        label = torch.zeros_like(d)
        label[..., :n] = 1.0
        return (w * F.binary_cross_entropy_with_logits(d, label, reduction="none")).mean(-1)


@packable
class MDD(Term):
    """``mdd``: margin disparity discrepancy (Zhang et al., "Bridging Theory and Algorithm
    for Domain Adaptation", ICML 2019; TLlib's ``tllib/alignment/mdd.py``). An adversarial
    head, behind gradient reversal, learns to agree with the main head on source (weighted
    by the margin ``margin``) and to disagree on target; the features learn the opposite.

    Class labels: the disparities are the cross-entropy with the main head's predicted class
    on source and ``-log(1 - p)`` on target, margin 4 (``ClassificationMarginDisparity
    Discrepancy``). Continuous targets (TLlib's DD for image regression, ``Regression
    MarginDisparityDiscrepancy`` and ``examples/domain_adaptation/image_regression/dd.py``):
    the mean absolute difference between the adversarial and the (detached) main outputs,
    margin 1. TLlib bounds the adversary with a sigmoid on labels in [0, 1]; here the
    targets are standardised, so the sigmoid is stretched over each factor's range on the
    source training part (the same bound when the labels are in [0, 1]), and the
    disparities are in standardised units (each factor divided by its source deviation)."""

    regression = True
    per_run = ("weight", "low", "high")

    def __init__(self, method, weight: float | None = None, margin: float | None = None,
                 grl_high: float = 0.1) -> None:
        super().__init__(method, weight)
        self.adversary = nn.Linear(method.model.feature_dim, method.model.head.out_features)
        self.margin = margin  # None: 4 on class labels, 1 on continuous targets
        self.grl_high = grl_high
        self.low: torch.Tensor | None = None  # continuous targets: the adversary's range
        self.high: torch.Tensor | None = None

    def prepare(self, feeds: dict) -> None:
        y = feeds["source"].y
        if y.is_floating_point():
            y = y.reshape(len(y), -1)
            self.low, self.high = y.min(0).values, y.max(0).values

    def forward(self, out: Outputs) -> torch.Tensor:
        coeff = grl_schedule(self.method.progress, high=self.grl_high)
        adv = self.adversary(reverse_grad(torch.cat([out.feat_s, out.feat_t], -2), coeff))
        n = out.feat_s.shape[-2]
        if out.ys.is_floating_point():
            return self._regression(adv[..., :n, :], adv[..., n:, :], out)
        pred_s, pred_t = out.logits_s.argmax(-1).detach(), out.logits_t.argmax(-1).detach()
        agree = cross_entropy(adv[..., :n, :], pred_s)
        p_t = F.softmax(adv[..., n:, :], -1).gather(-1, pred_t.unsqueeze(-1)).squeeze(-1)
        disagree = -torch.log((1.0 - p_t).clamp_min(1e-6)).mean(-1)
        return (4.0 if self.margin is None else self.margin) * agree + disagree

    def _regression(self, adv_s: torch.Tensor, adv_t: torch.Tensor, out: Outputs
                    ) -> torch.Tensor:
        low, high = (b if b.ndim == 1 else b.unsqueeze(-2) for b in (self.low, self.high))
        adv_s, adv_t = (low + (high - low) * torch.sigmoid(a) for a in (adv_s, adv_t))
        agree = (adv_s - out.logits_s.detach()).abs().mean((-2, -1))
        disagree = (adv_t - out.logits_t.detach()).abs().mean((-2, -1))
        return (1.0 if self.margin is None else self.margin) * agree - disagree


def classifier_discrepancy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MCD's discrepancy of two classifiers: the mean absolute difference of their
    probabilities (per run of a pack)."""
    return (F.softmax(a, -1) - F.softmax(b, -1)).abs().mean((-2, -1))


class MCD(Method):
    """``mcd``: maximum classifier discrepancy (Saito et al., CVPR 2018; ``train`` of
    ``classification/solver.py`` in github.com/mil-tokyo/MCD_DA). Two heads on one feature
    extractor; each batch takes three steps, every forward pass one domain's: (A) both
    heads and the features fit the source; (B) the heads, features fixed, fit the source
    while disagreeing on the target (mean absolute difference of the probabilities); (C) the
    features, ``num_k`` times, make the heads agree on the target. Predictions average the
    two heads' probabilities (the reference scores each head and their sum of logits).
    Labelled target samples (k >= 1) join step (A)."""

    needs = ("source", "target")
    optional_needs = ("target_labelled",)
    packable = True

    def __init__(self, model: nn.Module, *, name: str, num_k: int = 4, **optim) -> None:
        super().__init__(model, **optim)
        self.name = name
        self.num_k = num_k
        self.head2 = copy.deepcopy(model.head)
        self.head2.reset_parameters()
        self.head2.to(self.device)
        extractor = list(model.backbone.parameters()) + list(model.bottleneck.parameters())
        self.optimizer = self.make_optimizer(self.rate_groups(extractor), **self.optim_settings)
        self.head_optimizer = self.make_optimizer(
            list(model.head.parameters()) + list(self.head2.parameters()), **self.optim_settings)

    def trained_modules(self) -> list[nn.Module]:
        return [self.model, self.head2]

    def optimizer_modules(self) -> dict[str, list[nn.Module]]:
        m = self.model
        return {"optimizer": [m.backbone, m.bottleneck], "head_optimizer": [m.head, self.head2]}

    def adopt(self, methods: list) -> None:
        self.head2 = pack([m.head2 for m in methods])

    def _zero(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.head_optimizer.zero_grad(set_to_none=True)

    def update(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        s, t = batch["source"], batch["target"]
        xs, xt = self.augment(s.x), self.augment(t.x)
        m, d = self.model, self.lead_dims
        self.schedule_lr(self.optimizer, self.head_optimizer)
        # (A) fit the source (and the labelled target) with both heads
        lab = batch.get("target_labelled")
        xa, ya = (xs, s.y) if lab is None else (torch.cat([xs, self.augment(lab.x)], d),
                                                 torch.cat([s.y, lab.y], -1))
        f = m.features(xa)
        loss_a = cross_entropy(m.head(f), ya) + cross_entropy(self.head2(f), ya)
        self._zero()
        loss_a.sum().backward()
        self.optimizer.step()
        self.head_optimizer.step()
        # (B) heads disagree on the target, features fixed (source and target forwarded
        # separately, as in steps A and C)
        with torch.no_grad():
            fs, ft = m.features(xs), m.features(xt)
        disc_b = classifier_discrepancy(m.head(ft), self.head2(ft))
        loss_b = cross_entropy(m.head(fs), s.y) + cross_entropy(self.head2(fs), s.y) - disc_b
        self._zero()
        loss_b.sum().backward()
        self.head_optimizer.step()
        # (C) features make the heads agree on the target
        for _ in range(self.num_k):
            ft = m.features(xt)
            disc_c = classifier_discrepancy(m.head(ft), self.head2(ft))
            self._zero()
            disc_c.sum().backward()
            self.optimizer.step()
        self.updates += 1
        return {"loss": loss_a.detach(), "discrepancy": disc_c.detach()}

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        f = self.model.features(x)
        p = 0.5 * (F.softmax(self.model.head(f), -1) + F.softmax(self.head2(f), -1))
        return torch.log(p.clamp_min(1e-12))
