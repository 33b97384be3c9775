"""OVANet: one-vs-all classifiers for open-set and universal domain adaptation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dalib.engine import Batch
from dalib.method import Method, cross_entropy
from dalib.openset.base import rejection_scores


def ova_losses(out_open: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """OVANet's hard-negative one-vs-all loss on ``(N, 2, K)`` outputs (index 1: "is class
    c", 0: "is not"): the mean of ``-log p(positive)`` of each sample's class, and the mean
    of the largest ``-log p(negative)`` over its other classes (1e-8 inside the logs)."""
    p = F.softmax(out_open, 1)
    positive = F.one_hot(y, out_open.shape[-1]).to(p.dtype)
    pos = (-torch.log(p[:, 1, :] + 1e-8) * positive).sum(1).mean()
    neg = (-torch.log(p[:, 0, :] + 1e-8) * (1 - positive)).max(1).values.mean()
    return pos, neg


def open_entropy(out_open: torch.Tensor) -> torch.Tensor:
    """The mean over samples and classes of each one-vs-all classifier's binary entropy."""
    p = F.softmax(out_open, 1)
    return (-p * torch.log(p + 1e-8)).sum(1).mean()


class OVANet(Method):
    """``ovanet``: Saito & Saenko, "OVANet: One-vs-All Network for Universal Domain
    Adaptation", ICCV 2021 (VisionLearningGroup/OVANet ``train.py``, ``utils/loss.py`` and
    ``eval.py``). Beside the closed-set head, ``K`` one-vs-all binary classifiers (a
    bias-free linear layer of ``2 K`` outputs whose weight rows are rescaled to unit norm
    before every step, the reference's ``weight_norm``). Loss: the source cross-entropy, half
    the sum of :func:`ova_losses` on the source, and ``weight`` (the reference's ``multi``,
    0.1) times :func:`open_entropy` of the target's one-vs-all outputs; source and target
    in separate passes. Prediction: the closed-set argmax ``c``, ``unknown`` where the
    ``c``-th one-vs-all classifier says "not c" with probability above 0.5."""

    needs = ("source", "target")

    def __init__(self, model: nn.Module, *, name: str = "ovanet", weight: float = 0.1,
                 **optim) -> None:
        super().__init__(model, **optim)
        self.name, self.weight = name, weight
        self.num_classes = model.head.out_features
        self.ova = self.attach(nn.Linear(model.feature_dim, 2 * self.num_classes, bias=False))

    def open_outputs(self, feats: torch.Tensor) -> torch.Tensor:
        return self.ova(feats).view(len(feats), 2, self.num_classes)

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        with torch.no_grad():
            w = self.ova.weight
            w.div_(w.norm(dim=1, keepdim=True))
        x, ys = self.augmented(batch), batch["source"].y
        feats = self.model.features(x["source"])
        cls = cross_entropy(self.model.head(feats), ys)
        pos, neg = ova_losses(self.open_outputs(feats), ys)
        ent = open_entropy(self.open_outputs(self.model.features(x["target"])))
        return cls + 0.5 * (pos + neg) + self.weight * ent, {
            "cls": cls.detach(), "ova": (0.5 * (pos + neg)).detach(), "open_entropy": ent.detach()}

    def trained_modules(self) -> list[nn.Module]:
        return [self.model, self.ova]

    def open_scores(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.features(x)
        probs = F.softmax(self.model.head(feats), -1)
        pred = probs.argmax(-1)
        not_class = F.softmax(self.open_outputs(feats), 1)[torch.arange(len(x)), 0, pred]
        return rejection_scores(probs, not_class > 0.5)
