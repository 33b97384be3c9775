"""Target-prediction regularisers: class confusion, entropy minimisation and information
maximisation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dalib.adaptation.base import Outputs, Term
from dalib.adaptation.blocks import entropy
from dalib.pack.modules import packable


@packable
class MCC(Term):
    """``mcc``: minimum class confusion (Jin et al., ECCV 2020). Temperature-scaled target
    probabilities, samples weighted by ``1 + exp(-entropy)``, the class correlation matrix
    row-normalised; the loss is its off-diagonal mass over the number of classes.

    Reference: TLlib ``tllib/self_training/mcc.py`` (``MinimumClassConfusionLoss``),
    thuml/Transfer-Learning-Library.
    """


    def __init__(self, method, weight: float | None = None, temperature: float = 2.5) -> None:
        super().__init__(method, weight)
        self.temperature = temperature

    def forward(self, out: Outputs) -> torch.Tensor:
        p = F.softmax(out.logits_t / self.temperature, -1)
        w = 1.0 + torch.exp(-entropy(p.detach()))
        w = p.shape[-2] * w / w.sum(-1, keepdim=True)
        confusion = (p * w.unsqueeze(-1)).mT @ p
        confusion = confusion / confusion.sum(-1, keepdim=True)
        off = confusion.sum((-2, -1)) - confusion.diagonal(dim1=-2, dim2=-1).sum(-1)
        return off / p.shape[-1]


@packable
class EntropyMin(Term):
    """``entmin``: mean entropy of the target predictions (Grandvalet & Bengio, NeurIPS 2004).

    Reference: the paper's objective, the mean Shannon entropy of the softmax predictions (as
    TLlib's ``entropy`` in ``tllib/modules/entropy.py``).
    """

    default_weight = 0.1

    def forward(self, out: Outputs) -> torch.Tensor:
        return entropy(F.softmax(out.logits_t, -1)).mean(-1)


@packable
class InfoMax(Term):
    """``im``: information maximisation on the target (Liang et al., "Do We Really Need to
    Access the Source Data?", ICML 2020, the objective of SHOT; Gomes et al. 2010): the mean
    entropy of the target predictions (each confident) minus ``diversity`` times the entropy
    of their mean (all classes used), so it cannot collapse to one class as entropy
    minimisation alone can.

    Reference: tim-learn/SHOT ``object/image_target.py`` (entropy minus the diversity term).
    """

    default_weight = 0.3

    def __init__(self, method, weight: float | None = None, diversity: float = 1.0) -> None:
        super().__init__(method, weight)
        self.diversity = diversity

    def forward(self, out: Outputs) -> torch.Tensor:
        p = F.softmax(out.logits_t, -1)
        return entropy(p).mean(-1) - self.diversity * entropy(p.mean(-2))
