"""Unsupervised domain adaptation as source cross-entropy plus transfer loss terms.

A method such as ``dann`` is :class:`Adaptation` with one :class:`Term`; ``dann+mcc`` adds
two terms to the same source loss, and ``dann+mcc+pseudo-label`` three. Every term sees one
joint forward pass of the augmented source and target batches (batch norm statistics over
both, as in the reference implementations).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dalib.engine import Batch
from dalib.method import Method


@dataclass
class Outputs:
    """One joint forward pass: source labels, the augmented target inputs and the target batch
    before augmentation, bottleneck features and logits per domain."""

    ys: torch.Tensor
    xt: torch.Tensor
    xt_raw: torch.Tensor
    feat_s: torch.Tensor
    feat_t: torch.Tensor
    logits_s: torch.Tensor
    logits_t: torch.Tensor


class Term(nn.Module):
    """A transfer loss added to the source cross-entropy with weight ``weight``.

    A term may own parameters (discriminators, heads: trained by the method's optimizer),
    see all unlabelled target data before training (:meth:`prepare`), act after each
    optimizer step (:meth:`after_step`) and supply the network used for prediction
    (``predictor``, e.g. a mean teacher).
    """

    default_weight = 1.0

    def __init__(self, method: Adaptation, weight: float | None = None) -> None:
        super().__init__()
        self.method_ref = [method]  # a list, so the method is not registered as a submodule
        self.weight = self.default_weight if weight is None else weight
        self.predictor: nn.Module | None = None

    @property
    def method(self) -> Adaptation:
        return self.method_ref[0]

    def forward(self, out: Outputs) -> torch.Tensor:
        raise NotImplementedError

    def prepare(self, feeds: dict) -> None:
        """See the device-resident training domains once before training."""

    def after_step(self) -> None:
        """Act after each optimizer step."""


class Adaptation(Method):
    """Source cross-entropy plus the weighted sum of its terms."""

    needs = ("source", "target")

    def __init__(self, model: nn.Module, *, name: str,
                 terms: list[tuple[str, type[Term], dict]], **optim) -> None:
        super().__init__(model, **optim)
        self.name = name
        self.terms = {n: self.attach(cls(self, **params)) for n, cls, params in terms}

    def forward(self, batch: dict[str, Batch]) -> Outputs:
        s, t = batch["source"], batch["target"]
        xs, xt = self.augment(s.x), self.augment(t.x)
        feats = self.model.features(torch.cat([xs, xt]))
        logits = self.model.head(feats)
        n = len(xs)
        return Outputs(s.y, xt, t.x, feats[:n], feats[n:], logits[:n], logits[n:])

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.forward(batch)
        cls = F.cross_entropy(out.logits_s, out.ys)
        total, logs = cls, {"cls": cls.detach()}
        for name, term in self.terms.items():
            value = term(out)
            logs[name] = value.detach()
            total = total + term.weight * value
        return total, logs

    def prepare(self, feeds: dict) -> None:
        for term in self.terms.values():
            term.prepare(feeds)

    def after_step(self) -> None:
        for term in self.terms.values():
            term.after_step()

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        predictor = next((t.predictor for t in self.terms.values() if t.predictor), None)
        if predictor is None:
            return super().predict(x, task)
        predictor.train(self.model.training)
        return predictor(x)
