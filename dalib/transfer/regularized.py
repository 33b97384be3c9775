"""Regularised fine-tuning: keep what the source taught while fitting a few target labels."""

from __future__ import annotations

import torch

from dalib.transfer.finetune import FineTune


class L2SP(FineTune):
    """``l2-sp``: ``alpha / 2 ||w - w0||^2`` on the pretrained weights ``w0`` (the starting
    point) and ``beta / 2 ||w||^2`` on the new head (Li et al., "Explicit Inductive Bias for
    Transfer Learning with Convolutional Networks", ICML 2018); no weight decay towards 0 on
    the pretrained part.

    Reference: TLlib ``tllib/regularization/delta.py`` (``L2Regularization``,
    ``SPRegularization``), thuml/Transfer-Learning-Library.
    """

    def __init__(self, model, *, alpha: float = 0.01, beta: float = 0.01, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.alpha, self.beta = alpha, beta
        self.start: list[tuple[torch.Tensor, torch.Tensor]] = []

    def start_finetuning(self) -> None:
        super().start_finetuning()
        head = {id(p) for p in self.model.head.parameters()}
        self.start = [(p, p.detach().clone()) for p in self.model.parameters()
                      if p.requires_grad and id(p) not in head]

    def body_weight_decay(self) -> float:
        return 0.0

    def penalty(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        sp = sum(((p - p0) ** 2).sum() for p, p0 in self.start) if self.start else \
            features.new_zeros(())
        head = (self.model.head.weight ** 2).sum()
        return {"l2_sp": 0.5 * self.alpha * sp, "l2_head": 0.5 * self.beta * head}


class BSS(FineTune):
    """``bss``: batch spectral shrinkage (Chen et al., "Catastrophic Forgetting Meets Negative
    Transfer: Batch Spectral Shrinkage for Safe Transfer Learning", NeurIPS 2019): ``eta``
    times the sum of the ``k`` smallest squared singular values of the batch's feature matrix,
    which carry the source features least useful (and most harmful) to the target.

    Reference: TLlib ``tllib/regularization/bss.py`` (``BatchSpectralShrinkage``),
    thuml/Transfer-Learning-Library.
    """

    def __init__(self, model, *, eta: float = 0.001, k: int = 1, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.eta, self.k = eta, k

    def penalty(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        s = torch.linalg.svdvals(features)
        return {"bss": self.eta * (s[-self.k:] ** 2).sum()}
