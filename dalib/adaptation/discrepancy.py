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

    def __init__(self, method, weight: float | None = None, layer: str = "logits") -> None:
        super().__init__(method, weight)
        if layer not in ("logits", "features"):
            raise ValueError(f"layer is {layer!r}, expected 'logits' or 'features'")
        self.layer = layer

    def forward(self, out: Outputs) -> torch.Tensor:
        if self.layer == "logits":
            return coral(out.logits_s, out.logits_t)
        return coral(out.feat_s, out.feat_t)
