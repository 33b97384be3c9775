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
    run's own mean in a pack).

    Reference: DequanWang/tent ``tent.py`` (``forward_and_adapt``, ``softmax_entropy``).
    """

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


def eata_redundancy(classes: int) -> float:
    """EATA's redundancy threshold ``d_margin`` for ``classes`` classes: the authors' 0.05
    on ImageNet (1,000 classes), 0.4 on CIFAR-10/100 (their CIFAR setting); with 0.05 on 10
    classes almost every sample counts as redundant and nothing is adapted."""
    return 0.05 if classes >= 1000 else 0.4


class EATA(Tent):
    """``eata``: selected, weighted entropy plus ``fisher_weight`` x the Fisher-weighted
    squared distance to the source weights. Follows ``eata.py`` of github.com/mr-eric-niu/EATA
    (``forward_and_adapt_eata``; the Fisher of ``main.py``): the entropy term is the mean over
    the selected samples, no step when none is selected, the Fisher the squared gradients of
    the pseudo-label cross-entropy on ``fisher_samples`` source-like samples (batches of 64,
    averaged over batches). ``redundancy=None`` takes :func:`eata_redundancy`."""

    packable = False  # its sample selection and moving average are one run's

    def __init__(self, model, *, name: str, margin: float = 0.4,
                 redundancy: float | None = None, fisher_weight: float = 2000.0,
                 fisher_samples: int = 2000, **optim) -> None:
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
            for part in x.split(64):  # squared gradients of the pseudo-label cross-entropy
                self.optimizer.zero_grad(set_to_none=True)
                logits = self.model(part)
                F.cross_entropy(logits, logits.argmax(-1)).backward()
                for f, p in zip(self.fisher, params, strict=True):
                    f += p.grad.detach() ** 2 / math.ceil(len(x) / 64)
            self.model.load_state_dict(self.initial)  # the statistics those batches moved
            self.configure()

    def reset(self) -> None:
        super().reset()
        self.average = None

    def selected(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sample's entropy and whether it is reliable and non-redundant; updates the
        moving average of the selected samples' predictions."""
        ent, keep = confident(logits, self.margin)
        probs = logits.softmax(-1).detach()
        threshold = eata_redundancy(logits.shape[-1]) if self.redundancy is None \
            else self.redundancy
        if self.average is not None:
            keep &= F.cosine_similarity(probs, self.average[None], dim=-1).abs() < threshold
        if keep.any():
            mean = probs[keep].mean(0)
            self.average = mean if self.average is None else 0.9 * self.average + 0.1 * mean
        return ent, keep

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        ent, keep = self.selected(logits)
        weight = torch.exp(self.margin * math.log(logits.shape[-1]) - ent.detach())
        loss = (ent * weight * keep).sum() / keep.sum().clamp_min(1)
        if self.fisher_weight:
            loss = loss + self.fisher_weight * sum(
                (f * (p - a) ** 2).sum() for f, p, a in
                zip(self.fisher, self.adapted_parameters(), self.anchor, strict=True))
        self.chosen = int(keep.sum())
        return loss

    def step(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        loss = self.loss(logits)
        if self.chosen:
            self.descend(loss)
        else:  # nothing selected: no step (the reference's), but the batch counts
            self.updates += 1
        return logits.detach()


class RDumb(EATA):
    """``rdumb``: EATA without the Fisher term, reset every ``reset_every`` batches.

    Reference: Press et al., NeurIPS 2023 (oripress/CCC, ``models/rdumb.py``).
    """

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
    a reset when the loss's moving average collapses. Follows ``sar.py`` of
    github.com/mr-eric-niu/SAR (``forward_and_adapt_sar``, ``collect_params``): the second
    loss is the mean entropy, at the perturbed weights, of the samples reliable at both
    weights; a batch without such samples leaves the moving average as it is; the
    normalisation layers of the model's last backbone block (a ResNet's ``layer4``, a ViT's
    last three blocks and final norm) are not adapted (``top = true`` adapts them too)."""

    def __init__(self, model, *, name: str, margin: float = 0.4, rho: float = 0.05,
                 reset_below: float = 0.2, top: bool = False, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.margin, self.rho, self.reset_below, self.top = margin, rho, reset_below, top
        self.ema: float | None = None

    def adapted_parameters(self) -> list:
        params = super().adapted_parameters()
        if self.top:
            return params
        frozen = {id(p) for p in top_block(self.model).parameters()}
        return [p for p in params if id(p) not in frozen]

    def reset(self) -> None:
        super().reset()
        self.ema = None

    def step(self, x: torch.Tensor) -> torch.Tensor:
        params = self.adapted_parameters()
        logits = self.model(x)
        ent, keep = confident(logits, self.margin)
        self.optimizer.zero_grad(set_to_none=True)
        (ent * keep).sum().div(keep.sum().clamp_min(1)).backward()
        grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
                 for p in params]
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads)) + 1e-12
        moves = [self.rho * g / norm for g in grads]
        with torch.no_grad():
            for p, e in zip(params, moves, strict=True):
                p.add_(e)
        self.optimizer.zero_grad(set_to_none=True)
        second, again = confident(self.model(x), self.margin)
        again &= keep
        (second * again).sum().div(again.sum().clamp_min(1)).backward()
        with torch.no_grad():
            for p, e in zip(params, moves, strict=True):
                p.sub_(e)
        self.optimizer.step()
        self.updates += 1
        if bool(again.any()):  # one host sync per batch: the reset decision
            value = float((second.detach() * again).sum() / again.sum())
            self.ema = value if self.ema is None else 0.9 * self.ema + 0.1 * value
        if self.ema is not None and self.ema < self.reset_below:
            self.reset()
        return logits.detach()


def top_block(model) -> torch.nn.Module:
    """The last block of a model's backbone (SAR leaves its normalisation layers as they
    are): a ResNet's ``layer4``, a ViT's last three encoder blocks with its final norm,
    else the last of :func:`dalib.models.blocks` before the bottleneck and head."""
    from dalib.models import blocks

    named = [(n, b) for n, b in blocks(model) if n not in ("bottleneck", "head")]
    vit = getattr(getattr(model.backbone, "net", None), "encoder", None)
    if vit is not None and hasattr(vit, "layers") and len(vit.layers) >= 3:
        return torch.nn.ModuleList([*vit.layers[-3:], vit.ln])
    return named[-1][1] if named else torch.nn.ModuleList()


def shot_labels(feats: torch.Tensor, probs: torch.Tensor, threshold: int = 0
                ) -> torch.Tensor:
    """SHOT's pseudo-labels (``obtain_label`` of ``object/image_target.py``,
    github.com/tim-learn/SHOT): features with a constant 1 appended and L2-normalised,
    centroids weighted by the predictions, then one round with the hard labels; only
    classes predicted for more than ``threshold`` samples are candidates; the nearest
    centroid by cosine distance."""
    f = F.normalize(torch.cat([feats, torch.ones_like(feats[:, :1])], 1), dim=-1)
    classes = probs.shape[-1]
    labelset = torch.nonzero(torch.bincount(probs.argmax(-1), minlength=classes)
                             > threshold).flatten()
    weights = probs
    for _ in range(2):
        centroids = weights.T @ f / (1e-8 + weights.sum(0)[:, None])
        near = (f @ F.normalize(centroids[labelset], dim=-1).T).argmax(-1)
        labels = labelset[near]
        weights = F.one_hot(labels, classes).to(f.dtype)
    return labels


class SHOT(Tent):
    """``shot``: the feature extractor (everything but the classifier head, which stays the
    source's) adapted by information maximisation, the mean entropy minus ``diversity`` x
    the entropy of the mean prediction (entropies with SHOT's epsilon 1e-5), plus
    ``pseudo`` x the cross-entropy of :func:`shot_labels` (Liang, Hu & Feng, "Do We Really
    Need to Access the Source Data?", ICML 2020; ``object/image_target.py`` of
    github.com/tim-learn/SHOT). Differences: online, the pseudo-labels from each test batch
    (the reference labels the whole target set once per epoch: ``mode = "offline"`` with
    the stream as one batch comes closest), and the scenario's optimizer (the reference:
    SGD, momentum 0.9, rate 1e-2 decayed as (1 + 10 p)^-0.75, 0.1x on the backbone)."""

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
        loss = -(probs * torch.log(probs + 1e-5)).sum(-1).mean() \
            + self.diversity * (mean * torch.log(mean + 1e-5)).sum()
        if self.pseudo:
            with torch.no_grad():
                labels = shot_labels(feats.detach(), probs.detach())
            loss = loss + self.pseudo * F.cross_entropy(logits, labels)
        self.descend(loss)
        return logits.detach()
