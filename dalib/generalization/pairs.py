"""Multi-source adaptation with classifier pairs: M3SDA-beta (Peng et al., "Moment Matching
for Multi-Source Domain Adaptation", ICCV 2019, section 4): moment matching of the sources
and the target, plus MCD's three steps (Saito et al., CVPR 2018) on pairs of classifiers.

``pairs = "per-source"`` (the default) gives each source domain its own pair ``(C_i, C_i')``,
as the paper describes M3SDA-beta; ``pairs = "shared"`` is the authors' released digit code
(``M3SDA/code_MSDA_digit/solver_MSDA.py``, ``train_MSDA``), one pair shared by every source.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from dalib.adaptation.adversarial import classifier_discrepancy
from dalib.engine import Batch
from dalib.generalization.alignment import Groups, moment_distance, target_ids
from dalib.generalization.base import EnvironmentMethod, group_means, per_sample_cross_entropy
from dalib.pack.modules import pack

PAIRS = ("per-source", "shared")


class MomentMatchingPairs(EnvironmentMethod):
    """``m3sda-beta``: every batch of the pooled sources and the target takes three steps.
    (A) the features and every classifier fit the sources (classifier pair ``i`` the
    samples of source ``i``; a shared pair all of them, each source's cross-entropy
    summed) plus ``weight`` x the moment distance of the sources and the target up to
    ``order``; (B) the classifiers, features fixed, fit their sources while each pair
    disagrees on the target (MCD's mean absolute difference of probabilities); (C) the
    features, ``num_k`` times, make every pair agree on the target. Predictions average the
    probabilities of all classifiers (the released code predicts with its first classifier).

    Reference: VisionLearningGroup/VisionLearningGroup.github.io
    ``M3SDA/code_MSDA_digit/solver_MSDA.py`` (``train_MSDA``: the weight 0.0005, moments up
    to the 5th, 4 feature steps) and ``metric/msda.py``; its step (B) fits classifier 1 to
    the first source and classifier 2 to the second only, where dalib fits each classifier
    to its own sources (per-source pairs) or to every source (shared).
    """

    needs = ("source", "target")

    def __init__(self, model, *, name: str, weight: float = 0.0005, order: int = 5,
                 num_k: int = 4, pairs: str = "per-source", **optim) -> None:
        super().__init__(model, name=name, **optim)
        if pairs not in PAIRS:
            raise ValueError(f"pairs is {pairs!r}, expected one of {', '.join(PAIRS)}")
        self.weight, self.order, self.num_k, self.pairs = weight, order, num_k, pairs
        self.heads = nn.ModuleList()  # every classifier after the model's own head
        self.head_optimizer: torch.optim.Optimizer | None = None
        extractor = list(model.backbone.parameters()) + list(model.bottleneck.parameters())
        self.optimizer = self.make_optimizer(self.rate_groups(extractor), **self.optim_settings)

    def prepare(self, feeds: dict) -> None:
        """One pair per source domain (or one shared pair): the model's head and
        ``2 x pairs - 1`` fresh copies of it, trained by their own optimizer."""
        super().prepare(feeds)
        count = 2 * (self.environment_count if self.pairs == "per-source" else 1)
        self.heads = nn.ModuleList(self._fresh_head() for _ in range(count - 1))
        self.head_optimizer = self.make_optimizer(
            list(self.model.head.parameters()) + list(self.heads.parameters()),
            **self.optim_settings)

    def _fresh_head(self) -> nn.Module:
        head = copy.deepcopy(self.model.head)
        head.reset_parameters()
        return head.to(self.device)

    def classifiers(self) -> list[nn.Module]:
        return [self.model.head, *self.heads]

    def trained_modules(self) -> list[nn.Module]:
        return [self.model, self.heads]

    def optimizer_modules(self) -> dict[str, list[nn.Module]]:
        m = self.model
        return {"optimizer": [m.backbone, m.bottleneck], "head_optimizer": self.classifiers()}

    def pack_reason(self) -> str | None:
        return None

    def adopt(self, methods: list) -> None:
        self.heads = nn.ModuleList(pack([m.heads[j] for m in methods])
                                   for j in range(len(methods[0].heads)))
        self.head_optimizer = self.make_optimizer(
            list(self.model.head.parameters()) + list(self.heads.parameters()),
            **self.optim_settings)

    def _zero(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.head_optimizer.zero_grad(set_to_none=True)

    def source_loss(self, feats: torch.Tensor, y: torch.Tensor, env: torch.Tensor
                    ) -> torch.Tensor:
        """Each classifier's cross-entropy on its sources: pair ``i`` on source ``i``'s
        samples of the batch, a shared pair on every source's (each source's mean, summed
        over the sources in the batch, as the released code sums them)."""
        count = self.count(env)
        total = feats.new_zeros(feats.shape[:-2])
        for k, head in enumerate(self.classifiers()):
            means, present = group_means(per_sample_cross_entropy(head(feats), y), env, count)
            if self.pairs == "per-source":
                source = k // 2
                total = total + means[..., source] * present[..., source]
            else:
                total = total + (means * present).sum(-1)
        return total

    def disagreement(self, feats_t: torch.Tensor) -> torch.Tensor:
        """The sum over pairs of their discrepancy on the target."""
        heads = self.classifiers()
        return sum(classifier_discrepancy(heads[2 * i](feats_t), heads[2 * i + 1](feats_t))
                   for i in range(len(heads) // 2))

    def update(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        src, tgt = batch["source"], batch["target"]
        env = self.environments(src)
        xs, xt = self.augment(src.x), self.augment(tgt.x)
        m, d = self.model, self.lead_dims
        self.schedule_lr(self.optimizer, self.head_optimizer)
        # (A) features and classifiers fit the sources; moments of sources and target match
        feats = m.features(torch.cat([xs, xt], d))
        n = src.y.shape[-1]
        count = self.count(env)
        domains = torch.cat([env, target_ids(env, xt.shape[d], count)], -1)
        moments = moment_distance(Groups(feats, domains, count + 1), self.order)
        loss_a = self.source_loss(feats[..., :n, :], src.y, env) + self.weight * moments
        self._zero()
        loss_a.sum().backward()
        self.optimizer.step()
        self.head_optimizer.step()
        # (B) classifiers fit their sources and each pair disagrees on the target
        with torch.no_grad():
            fs, ft = m.features(xs), m.features(xt)
        loss_b = self.source_loss(fs, src.y, env) - self.disagreement(ft)
        self._zero()
        loss_b.sum().backward()
        self.head_optimizer.step()
        # (C) the features make every pair agree on the target
        for _ in range(self.num_k):
            disc = self.disagreement(m.features(xt))
            self._zero()
            disc.sum().backward()
            self.optimizer.step()
        self.updates += 1
        return {"loss": loss_a.detach(), "moments": moments.detach(),
                "discrepancy": disc.detach()}

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        f = self.model.features(x)
        p = torch.stack([F.softmax(h(f), -1) for h in self.classifiers()]).mean(0)
        return torch.log(p.clamp_min(1e-12))
