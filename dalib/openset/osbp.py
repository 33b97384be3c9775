"""OSBP: open set domain adaptation by backpropagation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dalib.adaptation.blocks import reverse_grad
from dalib.engine import Batch
from dalib.method import Method, cross_entropy


def unknown_bce(logits: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """OSBP's adversarial loss on target logits over ``K + 1`` classes (the last unknown):
    ``-t log p_u - (1 - t) log(1 - p_u)``, each term averaged over the batch (TLlib's
    ``UnknownClassBinaryCrossEntropy``, its 1e-6 inside the logarithms)."""
    p_unknown = F.softmax(logits, -1)[..., -1]
    return -(t * torch.log(p_unknown + 1e-6)).mean(-1) \
        - ((1 - t) * torch.log(1 - p_unknown + 1e-6)).mean(-1)


class OSBP(Method):
    """``osbp``: Saito et al., "Open Set Domain Adaptation by Backpropagation", ECCV 2018, as
    TLlib computes it (thuml/Transfer-Learning-Library ``tllib/alignment/osbp.py`` and
    ``examples/domain_adaptation/openset_domain_adaptation/osbp.py``). The classifier gets a
    ``K + 1``-th output, ``unknown``; the loss is the source cross-entropy over the ``K + 1``
    outputs plus :func:`unknown_bce` of the target's outputs with target ``t``, the target
    features passing a gradient reversal layer (coefficient 1): the classifier pulls the
    target's unknown probability to ``t``, the feature extractor pushes it to 0 or 1, which
    separates known from unknown target samples. Source and target go through the model in
    separate passes, as in the reference. The open-set prediction is the argmax over the
    ``K + 1`` outputs."""

    needs = ("source", "target")

    def __init__(self, model: nn.Module, *, name: str = "osbp", t: float = 0.5, **optim) -> None:
        super().__init__(model, **optim)
        self.name, self.t = name, t
        self.unknown = self.attach(nn.Linear(model.feature_dim, 1))

    def outputs(self, feats: torch.Tensor) -> torch.Tensor:
        """The ``K + 1`` logits: the model's head and the unknown output."""
        return torch.cat([self.model.head(feats), self.unknown(feats)], -1)

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = self.augmented(batch)
        logits_s = self.outputs(self.model.features(x["source"]))
        logits_t = self.outputs(reverse_grad(self.model.features(x["target"]), 1.0))
        cls = cross_entropy(logits_s, batch["source"].y)
        adv = unknown_bce(logits_t, self.t)
        return cls + adv, {"cls": cls.detach(), "unknown_bce": adv.detach()}

    def trained_modules(self) -> list[nn.Module]:
        return [self.model, self.unknown]

    def open_scores(self, x: torch.Tensor) -> torch.Tensor:
        return F.softmax(self.outputs(self.model.features(x)), -1)
