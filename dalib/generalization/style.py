"""Style mixing across domains: MixStyle (Zhou, Yang, Qiao & Xiang, "Domain Generalization
with MixStyle", ICLR 2021). In training, with probability ``p`` per batch, the feature maps
after the first ``layers`` convolutional blocks are normalised per sample and channel and
given a mixture of their own and another environment's sample's statistics (mean and
standard deviation, weight drawn from Beta(alpha, alpha)): new styles between the source
domains, the content kept. Needs a convolutional backbone."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dalib.engine import Batch
from dalib.generalization.base import EnvironmentMethod
from dalib.generalization.mixing import partners
from dalib.models import blocks


def mix_statistics(x: torch.Tensor, partner: torch.Tensor, lam: torch.Tensor,
                   eps: float = 1e-6) -> torch.Tensor:
    """``x`` (N, C, H, W) normalised per sample and channel, then scaled and shifted by
    ``lam`` x its own statistics + ``1 - lam`` x those of sample ``partner`` (the statistics
    detached, as in the paper)."""
    mu = x.mean((2, 3), keepdim=True).detach()
    sigma = (x.var((2, 3), keepdim=True) + eps).sqrt().detach()
    lam = lam.view(-1, 1, 1, 1)
    return ((x - mu) / sigma * (lam * sigma + (1 - lam) * sigma[partner])
            + lam * mu + (1 - lam) * mu[partner])


def convolutional_outputs(model: nn.Module, count: int) -> list[nn.Module]:
    """The modules whose outputs end the first ``count`` convolutional blocks of the
    backbone (:func:`dalib.models.blocks`), a torchvision ResNet's stem left out: MixStyle
    follows ``layer1`` and ``layer2`` there, as the paper's ResNets (``mixstyle_layers`` of
    github.com/KaiyangZhou/mixstyle-release)."""
    out = []
    for name, block in blocks(model):
        if name == "stem" or not any(isinstance(m, nn.Conv2d) for m in block.modules()):
            continue
        out.append(block[-1] if isinstance(block, nn.ModuleList) else block)
        if len(out) == count:
            break
    return out


class MixStyle(EnvironmentMethod):
    """Cross-entropy on the pooled sources with styles mixed across environments.

    Reference: KaiyangZhou/mixstyle-release, ``imcls/models/mixstyle.py``.
    """

    packable = False  # its hooks mix one run's feature maps

    def __init__(self, model, *, name: str, p: float = 0.5, alpha: float = 0.1,
                 layers: int = 2, **optim) -> None:
        super().__init__(model, name=name, **optim)
        targets = convolutional_outputs(model, layers)
        if not targets:
            raise ValueError("mixstyle mixes the statistics of feature maps: the backbone "
                             "has no convolution (use lenet, cnn, mnist-cnn or torchvision)")
        self.p, self.alpha = p, alpha
        self.rng = np.random.default_rng(torch.initial_seed() % 2**32)
        # the partner of each sample, set during a mixed forward pass only
        self.state = state = {"partner": None, "rng": self.rng}

        def hook(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
            # a closure, not a bound method: copies of the model do not copy the method
            if state["partner"] is None or output.dim() != 4:
                return output
            lam = torch.from_numpy(state["rng"].beta(alpha, alpha, len(output))).to(output)
            return mix_statistics(output, state["partner"], lam)

        for module in targets:
            module.register_forward_hook(hook)

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        src = batch["source"]
        x, env = self.augment(src.x), self.environments(src)
        if self.rng.random() < self.p:
            self.state["partner"] = partners(env, self.generator)
        try:
            logits = self.logits(x, src.task)
        finally:
            self.state["partner"] = None
        return F.cross_entropy(logits, src.y), {}
