"""Entropy minimisation on the test stream, with the safeguards that came after it:

* ``tent``: the mean entropy of the batch's predictions, minimised over the batch-norm
  affine parameters, batch statistics in use (Wang, Shelhamer, Liu, Olshausen & Darrell,
  "Tent: Fully Test-Time Adaptation by Entropy Minimization", ICLR 2021);
* ``eata``: only confident samples (entropy below ``margin`` x ln C) that differ from the
  recent predictions (cosine similarity to their moving average below ``redundancy``),
  weighted by ``exp(margin ln C - entropy)``, plus a Fisher-weighted pull to the source
  weights (Niu et al., "Efficient Test-Time Model Adaptation without Forgetting", ICML
  2022); the Fisher information is estimated on the source validation part, unlabelled;
* ``sar``: confident samples only, a sharpness-aware step (the gradient taken at the
  weights perturbed by ``rho`` along the first gradient), and a reset to the source model
  when the moving average of the loss falls below ``reset_below`` (Niu et al., "Towards
  Stable Test-Time Adaptation in Dynamic Wild World", ICLR 2023);
* ``shot``: information maximisation of the feature extractor with centroid pseudo-labels
  (see :class:`SHOT`);
* ``rdumb``: EATA's selection and weighting without its Fisher term, the model reset to the
  source one every ``reset_every`` batches (Press, Schneider, Kümmerer & Bethge, "RDumb: A
  simple approach that questions our progress in continual test-time adaptation", NeurIPS
  2023).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dalib.testtime.base import TestTimeMethod, confident, entropy_of


class Tent(TestTimeMethod):
    """``tent``: one optimizer step per batch on the mean entropy of its predictions (each
    run's own mean in a pack)."""

    packable = True

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        return entropy_of(logits).mean(-1).sum()

    def step(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        loss = self.loss(logits)
        if loss.requires_grad:
            self.descend(loss)
        else:  # nothing selected: no step, but the batch counts
            self.updates += 1
        return logits.detach()


class EATA(Tent):
    """``eata``: selected, weighted entropy plus ``fisher_weight`` x the Fisher-weighted
    squared distance to the source weights."""

    packable = False  # its sample selection and moving average are one run's

    def __init__(self, model, *, name: str, margin: float = 0.4, redundancy: float = 0.05,
                 fisher_weight: float = 2000.0, fisher_samples: int = 500, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.margin, self.redundancy = margin, redundancy
        self.fisher_weight, self.fisher_samples = fisher_weight, fisher_samples
        self.average: torch.Tensor | None = None
        self.fisher: list[torch.Tensor] = []
        self.anchor: list[torch.Tensor] = []

    def start(self, feeds: dict) -> None:
        super().start(feeds)
        params = self.adapted_parameters()
        self.anchor = [p.detach().clone() for p in params]
        self.fisher = [torch.zeros_like(p) for p in params]
        source = feeds.get("source_val")
        if self.fisher_weight and source is not None:
            x = source.x[:self.fisher_samples].to(self.device)
            for part in x.split(64):  # squared gradients of the entropy, source-like data
                self.optimizer.zero_grad(set_to_none=True)
                entropy_of(self.model(part)).mean().backward()
                for f, p in zip(self.fisher, params, strict=True):
                    f += p.grad.detach() ** 2 / math.ceil(len(x) / 64)
            self.model.load_state_dict(self.initial)  # the statistics those batches moved
            self.configure()

    def reset(self) -> None:
        super().reset()
        self.average = None

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        ent, keep = confident(logits, self.margin)
        probs = logits.softmax(-1).detach()
        if self.average is not None and self.redundancy > 0:
            keep &= F.cosine_similarity(probs, self.average[None], dim=-1).abs() \
                < self.redundancy
        if keep.any():
            mean = probs[keep].mean(0)
            self.average = mean if self.average is None else 0.9 * self.average + 0.1 * mean
        weight = torch.exp(self.margin * math.log(logits.shape[-1]) - ent.detach())
        loss = (ent * weight * keep).sum() / max(1, len(ent))
        if self.fisher_weight:
            loss = loss + self.fisher_weight * sum(
                (f * (p - a) ** 2).sum() for f, p, a in
                zip(self.fisher, self.adapted_parameters(), self.anchor, strict=True))
        return loss


class RDumb(EATA):
    """``rdumb``: EATA without the Fisher term, reset every ``reset_every`` batches."""

    def __init__(self, model, *, name: str, reset_every: int = 1000, **options) -> None:
        super().__init__(model, name=name, **options)
        self.reset_every = reset_every
        self.seen = 0

    def step(self, x: torch.Tensor) -> torch.Tensor:
        if self.seen and self.seen % self.reset_every == 0:
            self.reset()
        self.seen += 1
        return super().step(x)


class SAR(TestTimeMethod):
    """``sar``: the entropy of confident samples, minimised by a sharpness-aware step, with
    a reset when the loss's moving average collapses."""

    def __init__(self, model, *, name: str, margin: float = 0.4, rho: float = 0.05,
                 reset_below: float = 0.2, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.margin, self.rho, self.reset_below = margin, rho, reset_below
        self.ema: float | None = None

    def reset(self) -> None:
        super().reset()
        self.ema = None

    def confident_entropy(self, logits: torch.Tensor) -> torch.Tensor:
        ent, keep = confident(logits, self.margin)
        return (ent * keep).sum() / keep.sum().clamp_min(1)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        params = self.adapted_parameters()
        logits = self.model(x)
        first = self.confident_entropy(logits)
        self.optimizer.zero_grad(set_to_none=True)
        if not first.requires_grad:
            return logits.detach()
        first.backward()
        grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                 for p in params]
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads)).clamp_min(1e-12)
        moves = [self.rho * g / norm for g in grads]
        with torch.no_grad():
            for p, e in zip(params, moves, strict=True):
                p.add_(e)
        self.optimizer.zero_grad(set_to_none=True)
        second = self.confident_entropy(self.model(x))
        if second.requires_grad:
            second.backward()
        with torch.no_grad():
            for p, e in zip(params, moves, strict=True):
                p.sub_(e)
        self.optimizer.step()
        self.updates += 1
        value = float(second.detach())  # one host sync per batch: the reset decision
        self.ema = value if self.ema is None else 0.9 * self.ema + 0.1 * value
        if self.ema < self.reset_below:
            self.reset()
        return logits.detach()


class SHOT(Tent):
    """``shot``: the feature extractor (everything but the classifier head, which stays the
    source's) adapted by information maximisation, the mean entropy minus ``diversity`` x
    the entropy of the mean prediction, plus ``pseudo`` x the cross-entropy of pseudo-labels
    from nearest class centroids of the batch's features, the centroids weighted by the
    predictions (Liang, Hu & Feng, "Do We Really Need to Access the Source Data?", ICML
    2020; here online, one step per test batch)."""

    adapts = "features"
    packable = False  # its centroids are one run's

    def __init__(self, model, *, name: str, diversity: float = 1.0, pseudo: float = 0.3,
                 **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.diversity, self.pseudo = diversity, pseudo

    def adapted_parameters(self) -> list:
        head = {id(p) for p in self.model.head.parameters()}
        return [p for p in self.model.parameters() if id(p) not in head]

    def step(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.features(x)
        logits = self.model.head(feats)
        probs = logits.softmax(-1)
        mean = probs.mean(0)
        loss = entropy_of(logits).mean() + self.diversity * (mean * mean.clamp_min(1e-8).log()
                                                             ).sum()
        if self.pseudo:
            with torch.no_grad():
                f = F.normalize(feats.detach(), dim=-1)
                w = probs.detach()
                centroids = F.normalize(w.T @ f / w.sum(0).clamp_min(1e-8)[:, None], dim=-1)
                labels = (f @ centroids.T).argmax(-1)
            loss = loss + self.pseudo * F.cross_entropy(logits, labels)
        self.descend(loss)
        return logits.detach()
