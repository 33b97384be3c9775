"""Domain adaptation as source cross-entropy plus transfer loss terms.

A method such as ``dann`` is :class:`Adaptation` with one :class:`Term`; ``dann+mcc`` adds
two terms to the same source loss, and ``dann+mcc+pseudo-label`` three. Every term sees one
forward pass of the augmented source and target batches: joint (batch norm statistics over
both, as TLlib's DANN, CDAN, MDD, MCC and DAN do), or one pass per domain when a term says
so (``Term.joint = False``: FixMatch as TLlib's ``fixmatch.py``, mean teacher as French et
al.'s code), and then for every term of the method. Where the scenario has k labelled target samples
per class (k >= 1), they join the forward pass and their cross-entropy joins the loss
(semi-supervised adaptation, the setting of Wang et al.'s negative transfer gap, CVPR 2019).
A term may weight the source samples (:meth:`Term.source_weights`): their cross-entropy and
the source side of DANN's domain loss (as in PADA, Cao et al. 2018, and the gated DANN of Wang
et al. 2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dalib.engine import Batch
from dalib.method import Method, supervised_loss
from dalib.pack.modules import CONTAINERS, pack
from dalib.pack.runs import adopt_per_run


@dataclass
class Outputs:
    """One joint forward pass: source labels, the augmented target inputs and the target batch
    before augmentation, bottleneck features and logits per domain (and of the labelled target
    batch when there is one)."""

    ys: torch.Tensor
    xt: torch.Tensor
    xt_raw: torch.Tensor
    feat_s: torch.Tensor
    feat_t: torch.Tensor
    logits_s: torch.Tensor
    logits_t: torch.Tensor
    yl: torch.Tensor | None = None  # the labelled target batch, when k >= 1
    feat_l: torch.Tensor | None = None
    logits_l: torch.Tensor | None = None
    source_weight: torch.Tensor | None = None  # the terms' source weights (None: uniform)


class Term(nn.Module):
    """A transfer loss added to the source cross-entropy with weight ``weight``.

    A term may own parameters (discriminators, heads: trained by the method's optimizer),
    see all unlabelled target data before training (:meth:`prepare`), act after each
    optimizer step (:meth:`after_step`) and supply the network used for prediction
    (``predictor``, e.g. a mean teacher).
    """

    default_weight = 1.0
    joint = True  # False: the domains go through the model in separate forward passes
    needs: tuple[str, ...] = ()  # feeds the term cannot do without (e.g. target_labelled)
    regression = False  # True: the term applies to continuous targets (no class outputs)
    per_run: tuple[str, ...] = ("weight",)  # may differ between the runs of a pack

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

    def source_weights(self, out: Outputs) -> torch.Tensor | None:
        """Detached per-sample weights of the source cross-entropy (None: uniform)."""
        return None


class Adaptation(Method):
    """Source cross-entropy plus the weighted sum of its terms (plus the cross-entropy of the
    labelled target samples where the scenario has them)."""

    needs = ("source", "target")
    optional_needs = ("target_labelled",)
    packable = True
    regression = True  # where every term applies (:attr:`Term.regression`)

    def __init__(self, model: nn.Module, *, name: str,
                 terms: list[tuple[str, type[Term], dict]], **optim) -> None:
        super().__init__(model, **optim)
        self.name = name
        self.terms = {n: self.attach(cls(self, **params)) for n, cls, params in terms}
        self.needs = Adaptation.needs + tuple(dict.fromkeys(
            n for t in self.terms.values() for n in t.needs))

    def forward(self, batch: dict[str, Batch]) -> Outputs:
        """The joint forward pass of the batch's augmented inputs."""
        x = self.augmented(batch)
        s, t, lab = batch["source"], batch["target"], batch.get("target_labelled")
        parts = [x["source"], x["target"]] + ([x["target_labelled"]] if lab is not None else [])
        if all(t.joint for t in self.terms.values()):
            feats = self.model.features(torch.cat(parts, self.lead_dims))
        else:
            feats = torch.cat([self.model.features(p) for p in parts], self.lead_dims)
        logits = self.model.head(feats)
        n = s.x.shape[self.lead_dims]
        m = n + t.x.shape[self.lead_dims]
        out = Outputs(s.y, parts[1], t.x, feats[..., :n, :], feats[..., n:m, :],
                      logits[..., :n, :], logits[..., n:m, :])
        if lab is not None:
            out.yl, out.feat_l, out.logits_l = lab.y, feats[..., m:, :], logits[..., m:, :]
        return out

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = self.forward(batch)
        weights = [w for t in self.terms.values() if (w := t.source_weights(out)) is not None]
        if weights:
            out.source_weight = w = torch.stack(weights).prod(0)
        cls = supervised_loss(out.logits_s, out.ys, out.source_weight)
        total, logs = cls, {"cls": cls.detach()}
        if out.yl is not None:
            target_cls = supervised_loss(out.logits_l, out.yl)
            total = total + target_cls
            logs["target_cls"] = target_cls.detach()
        for name, term in self.terms.items():
            value = term(out)
            logs[name] = value.detach()
            total = total + term.weight * value
        return total, logs

    def pack_reason(self) -> str | None:
        bad = [n for n, t in self.terms.items() if type(t) not in CONTAINERS]
        if bad:
            return f"the term(s) {', '.join(bad)} are not written for packed runs"
        return None

    def trained_modules(self) -> list[nn.Module]:
        return [self.model, *self.terms.values()]

    def adopt(self, methods: list[Method]) -> None:
        self.terms = {}
        for name in methods[0].terms:
            own = [m.terms[name] for m in methods]
            term = pack(own)
            term.method_ref = [self]
            adopt_per_run(term, own, self.device)
            self.terms[name] = term

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
