"""Output-only adaptation: LAME (Boudiaf, Mueller, Ben Ayed & Bertinetto, "Parameter-free
Online Test-time Adaptation", CVPR 2022). The model is never changed: each batch's
predictions are corrected by a Laplacian-regularised assignment that makes samples close in
feature space (``knn`` nearest neighbours, cosine affinity) agree, solved by ``iterations``
bound-optimisation steps."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dalib.testtime.base import TestTimeMethod


def lame_assignment(probs: torch.Tensor, feats: torch.Tensor, knn: int = 5,
                    iterations: int = 100, symmetric: bool = False) -> torch.Tensor:
    """The LAME assignment of a batch (``laplacian_optimization`` and ``kNN_affinity`` of
    github.com/fiveai/LAME): ``z ∝ p * exp(W z)`` iterated ``iterations`` times (the
    reference also stops once the energy changes by under 1e-8 of itself), ``W`` the kNN
    affinity of the L2-normalised features, row i marking i's ``knn`` nearest neighbours
    (not symmetric, as the reference's default; ``symmetric`` averages it with its
    transpose)."""
    n = len(probs)
    if n < 2:
        return probs
    f = F.normalize(feats, dim=-1)
    sim = f @ f.T
    k = min(knn, n - 1)
    near = sim.topk(k + 1, dim=-1).indices[:, 1:]  # each sample's neighbours, itself left out
    w = torch.zeros_like(sim).scatter_(1, near, 1.0)
    if symmetric:
        w = (w + w.T) / 2
    log_p = torch.log(probs + 1e-10)
    z = probs
    for _ in range(iterations):
        z = (log_p + w @ z).softmax(-1)
    return z


class LAME(TestTimeMethod):
    """``lame``: the source model in evaluation mode, its outputs corrected per batch.

    Reference: fiveai/LAME ``src/adaptation/lame.py`` (``laplacian_optimization``,
    ``kNN_affinity``).
    """

    adapts = "none"

    def __init__(self, model, *, name: str, knn: int = 5, iterations: int = 100,
                 symmetric: bool = False, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.knn, self.iterations, self.symmetric = knn, iterations, symmetric

    def configure(self) -> None:
        self.model.eval()  # the source model as trained, statistics and all

    def step(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            feats = self.model.features(x)
            probs = self.model.head(feats).softmax(-1)
            z = lame_assignment(probs, feats, self.knn, self.iterations, self.symmetric)
            return z.clamp_min(1e-12).log()

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.step(x)  # the correction is the method, and it changes nothing
