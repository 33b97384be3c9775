"""Normalisation statistics at test time: each test batch normalised by its own batch-norm
statistics (Schneider et al., "Improving robustness against common corruptions by
covariate shift adaptation", NeurIPS 2020; Nado et al. 2020), the test-time form of AdaBN
(Li et al. 2017); no parameter moves."""

from __future__ import annotations

import torch

from dalib.testtime.base import TestTimeMethod


class NormAdapt(TestTimeMethod):
    """``bn``: predictions with the batch's own statistics; nothing is learnt."""

    adapts = "none"
    packable = True

    def step(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x)
