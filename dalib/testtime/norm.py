"""Normalisation statistics at test time: each test batch normalised by its own batch-norm
statistics (Schneider et al., "Improving robustness against common corruptions by
covariate shift adaptation", NeurIPS 2020; Nado et al. 2020), the test-time form of AdaBN
(Li et al. 2017); no parameter moves."""

from __future__ import annotations

import torch

from dalib.testtime.base import BATCH_NORMS, TestTimeMethod
from scenarios.errors import InputError


class NormAdapt(TestTimeMethod):
    """``bn``: predictions with the batch's own statistics; nothing is learnt.

    Reference: Schneider et al., NeurIPS 2020 (full adaptation, N = 0); DequanWang/tent
    ``norm.py``.
    """

    adapts = "none"
    packable = True

    def check_model(self, smallest: torch.Tensor) -> None:
        if not any(isinstance(m, BATCH_NORMS) for m in self.model.modules()):
            raise InputError("model", f"has no batch norm for {self.name!r} to renormalise "
                             "(its result would be the unadapted model's)",
                             expected="a model with batch norm (model.batch_norm = true for "
                             "the MLP; lenet and the CNNs have it)")
        super().check_model(smallest)

    def step(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x)
