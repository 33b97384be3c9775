"""Discrepancy-based adaptation: align the two domains' feature statistics."""

from __future__ import annotations

import torch

from dalib.adaptation.base import Outputs, Term
from dalib.adaptation.blocks import coral, multi_kernel_mmd
from dalib.pack.modules import packable


@packable
class MMD(Term):
    """``dan``: multi-kernel MMD between source and target bottleneck features and between
    their logits (Long et al., "Learning Transferable Features with Deep Adaptation
    Networks", ICML 2015).

    Reference: TLlib ``tllib/alignment/dan.py`` (``MultipleKernelMaximumMeanDiscrepancy``),
    thuml/Transfer-Learning-Library.
    """

    regression = True  # on a regression model's features and its outputs (one per factor)

    def forward(self, out: Outputs) -> torch.Tensor:
        return (multi_kernel_mmd(out.feat_s, out.feat_t)
                + multi_kernel_mmd(out.logits_s, out.logits_t))


@packable
class CORAL(Term):
    """``deep-coral``: match the covariances of the last layer's outputs, the logits as in
    the paper, or the bottleneck features (Sun & Saenko, "Deep CORAL", ECCV-W 2016).

    Reference: the loss of Sun & Saenko (ECCV-W 2016), eq. (1) (VisionLearningGroup/CORAL;
    TLlib's and DomainBed's form is ``coral``).
    """

    regression = True  # on a regression model's outputs (their covariance) or its features

    def __init__(self, method, weight: float | None = None, layer: str = "logits") -> None:
        super().__init__(method, weight)
        if layer not in ("logits", "features"):
            raise ValueError(f"layer is {layer!r}, expected 'logits' or 'features'")
        self.layer = layer

    def forward(self, out: Outputs) -> torch.Tensor:
        if self.layer == "logits":
            return coral(out.logits_s, out.logits_t)
        return coral(out.feat_s, out.feat_t)


def representation_subspace_distance(f_s: torch.Tensor, f_t: torch.Tensor,
                                     bmp_weight: float = 0.1) -> torch.Tensor:
    """RSD + ``bmp_weight`` x BMP (Chen et al. 2021, eqs. 7-9) of ``(..., B, D)`` feature
    batches: the left singular vectors ``U_s``, ``U_t`` of ``f^T`` span each batch's
    subspace; the SVD ``U_s^T U_t = P_s diag(cos) P_t^T`` gives the principal angles, RSD is
    the sum of their sines and BMP the Frobenius norm of ``|P_s| - |P_t|``. The sines'
    ``1 - cos^2`` is clamped at 1e-12 (a cosine rounded to 1 would make it NaN). A batch
    as large as the feature width spans the whole space (every angle 0, the SVD's gradient
    undefined): a ``ValueError`` says so."""
    if f_s.shape[-2] >= f_s.shape[-1] or f_t.shape[-2] >= f_t.shape[-1]:
        raise ValueError(f"rsd needs batches smaller than the feature width: a batch of "
                         f"{max(f_s.shape[-2], f_t.shape[-2])} samples spans all "
                         f"{f_s.shape[-1]} features (use a smaller batch_size or a wider "
                         "bottleneck)")
    u_s = torch.linalg.svd(f_s.float().mT, full_matrices=False)[0]
    u_t = torch.linalg.svd(f_t.float().mT, full_matrices=False)[0]
    p_s, cosine, p_t_h = torch.linalg.svd(u_s.mT @ u_t)
    sine = (1 - cosine ** 2).clamp_min(1e-12).sqrt()
    bmp = (p_s.abs() - p_t_h.mT.abs()).flatten(-2).norm(dim=-1)
    return sine.sum(-1) + bmp_weight * bmp


@packable
class RSD(Term):
    """``rsd``: representation subspace distance for regression (Chen et al.,
    "Representation Subspace Distance for Domain Adaptation Regression", ICML 2021): the
    principal angles between the source and target feature subspaces, plus the base
    mismatch penalty weighted by ``bmp_weight``; each domain's own forward pass, the weight
    0.001 and ``bmp_weight`` 0.1 of the reference's defaults. The batch size must be below
    the feature width (the bottleneck), so that a batch spans a proper subspace.

    Reference: TLlib ``tllib/alignment/rsd.py`` (``RepresentationSubspaceDistance``) and
    ``examples/domain_adaptation/image_regression/rsd.py``, thuml/Transfer-Learning-Library.
    """

    default_weight = 0.001
    joint = False  # the reference passes source and target through the model separately
    regression = True
    per_run = ("weight", "bmp_weight")

    def __init__(self, method, weight: float | None = None, bmp_weight: float = 0.1) -> None:
        super().__init__(method, weight)
        self.bmp_weight = bmp_weight

    def forward(self, out: Outputs) -> torch.Tensor:
        return representation_subspace_distance(out.feat_s, out.feat_t, self.bmp_weight)
