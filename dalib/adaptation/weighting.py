"""Source weighting against negative transfer: the discriminator gate and partial adaptation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dalib.adaptation.adversarial import DANN
from dalib.adaptation.base import Outputs, Term
from dalib.adaptation.blocks import Discriminator, domain_loss
from dalib.pack.modules import packable


@packable
class Gate(Term):
    """``gate``: the discriminator gate of Wang et al. ("Characterizing and Avoiding Negative
    Transfer", CVPR 2019). A discriminator on (features, one-hot label) pairs, trained on
    detached features, tells labelled source from labelled target samples; each source
    sample's cross-entropy is weighted by the density ratio ``p_T(x, y) / p_S(x, y) =
    exp(logit)`` it implies, normalised to mean 1 in the batch and clipped at ``max_weight``,
    so source samples unlike the target (a wrong label, an unrelated image) stop counting.
    Needs the k labelled target samples per class; combines with any method (``dann+gate``).

    Reference: the paper's equations (Wang et al., CVPR 2019); no code was published.
    """

    needs = ("target_labelled",)

    def __init__(self, method, weight: float | None = None, hidden: int = 256,
                 max_weight: float = 5.0) -> None:
        super().__init__(method, weight)
        c = method.model.head.out_features
        self.discriminator = Discriminator(method.model.feature_dim + c, hidden)
        self.num_classes = c
        self.max_weight = max_weight

    def _pairs(self, feat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([feat.detach(), F.one_hot(y, self.num_classes).float()], -1)

    def forward(self, out: Outputs) -> torch.Tensor:
        # logit > 0: target-like. domain_loss labels its first argument 1.
        d = self.discriminator(torch.cat([self._pairs(out.feat_l, out.yl),
                                          self._pairs(out.feat_s, out.ys)], -2))
        n = out.yl.shape[-1]
        return domain_loss(d[..., :n], d[..., n:])

    @torch.no_grad()
    def source_weights(self, out: Outputs) -> torch.Tensor:
        ratio = self.discriminator(self._pairs(out.feat_s, out.ys)).clamp(-10, 10).exp()
        return (ratio / ratio.mean(-1, keepdim=True).clamp_min(1e-8)).clamp_max(
            self.max_weight)


@packable
class PADA(DANN):
    """``pada``: partial adversarial domain adaptation (Cao et al., ECCV 2018; TLlib's
    ``examples/domain_adaptation/partial_domain_adaptation/pada.py`` with
    ``AutomaticUpdateClassWeightModule``). Class weights ``gamma`` = the mean target
    prediction at softmax temperature ``temperature``, normalised by its maximum,
    down-weight source classes the target lacks: the source cross-entropy is
    ``sum(gamma_y ce) / sum(gamma_y)`` over the batch (torch's class-weighted
    cross-entropy) and DANN's domain loss weighs source samples by ``gamma_y`` rescaled to
    mean 1 (both: the weights normalised to mean 1 in the batch). The references average
    predictions over the whole target set every few hundred steps; here an exponential
    moving average over target batches (``ema``) keeps ``gamma`` current."""

    def __init__(self, method, weight: float | None = None, hidden: int = 256,
                 grl_high: float = 1.0, ema: float = 0.99, temperature: float = 0.1) -> None:
        super().__init__(method, weight, hidden, grl_high)
        self.ema, self.temperature = ema, temperature
        self.register_buffer("class_mass", torch.ones(method.model.head.out_features,
                                                      device=method.device))

    def gamma(self) -> torch.Tensor:
        return self.class_mass / self.class_mass.amax(-1, keepdim=True).clamp_min(1e-8)

    def source_weights(self, out: Outputs) -> torch.Tensor:
        with torch.no_grad():
            self.class_mass.mul_(self.ema).add_(
                F.softmax(out.logits_t / self.temperature, -1).mean(-2), alpha=1 - self.ema)
            w = self.gamma().gather(-1, out.ys)
            return w / w.mean(-1, keepdim=True).clamp_min(1e-8)
