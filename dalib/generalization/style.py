"""Style across domains.

MixStyle (Zhou, Yang, Qiao & Xiang, "Domain Generalization with MixStyle", ICLR 2021): in
training, with probability ``p`` per batch, the feature maps after the first ``layers``
convolutional blocks are normalised per sample and channel and given a mixture of their own
and another environment's sample's statistics (mean and standard deviation, weight drawn
from Beta(alpha, alpha)): new styles between the source domains, the content kept. Needs a
convolutional backbone.

SagNet (Nam, Lee, Park, Yoon & Yoo, "Reducing Domain Gap by Reducing Style Bias", CVPR
2021), in DomainBed's form: a content classifier learns from features whose style
(per-sample statistics) is randomized, a style classifier from features whose content is
shuffled across the batch, and the features learn to defeat the style classifier."""

from __future__ import annotations

import copy

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


def randomize(x: torch.Tensor, what: str, generator: torch.Generator,
              eps: float = 1e-5) -> torch.Tensor:
    """DomainBed's ``SagNet.randomize`` of features ``(N, D)`` or maps ``(N, C, H, W)``:
    each sample normalised by its own mean and variance (over the features, or each
    channel's positions); ``"style"``: its statistics replaced by a random mixture (weight
    uniform in [0, 1) per sample) of its own and a random other sample's; ``"content"``:
    the normalised content of a random other sample (detached) under its own statistics."""
    sizes = x.size()
    alpha = torch.rand(sizes[0], 1, generator=generator).to(x.device)
    if len(sizes) == 4:
        x = x.view(sizes[0], sizes[1], -1)
        alpha = alpha.unsqueeze(-1)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True)
    x = (x - mean) / (var + eps).sqrt()
    swap = torch.randperm(sizes[0], generator=generator).to(x.device)
    if what == "style":
        mean = alpha * mean + (1 - alpha) * mean[swap]
        var = alpha * var + (1 - alpha) * var[swap]
    else:
        x = x[swap].detach()
    return (x * (var + eps).sqrt() + mean).view(*sizes)


class SagNet(EnvironmentMethod):
    """``sagnet``: DomainBed's ``SagNet`` (its default, randomization at the featurizer's
    output: dalib's bottleneck features). Three optimizers (features, content head, style
    head), three steps per batch: the features and the model's head on the cross-entropy of
    style-randomized features; the style head on that of content-randomized ones; the
    features on ``adversary_weight`` (0.1) times minus the mean log-probability the style
    head gives every class (pushing it towards uniform). Predictions: the head on the plain
    features.

    Reference: DomainBed ``SagNet`` in ``domainbed/algorithms.py`` (facebookresearch/DomainBed),
    ``sag_w_adv`` 0.1.
    """

    packable = False  # three optimizers stepping in turn

    def __init__(self, model, *, name: str, adversary_weight: float = 0.1, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.adversary_weight = adversary_weight
        self.style_head = copy.deepcopy(model.head)
        self.style_head.reset_parameters()
        self.style_head.to(self.device)
        extractor = [*model.normalize.parameters(), *model.backbone.parameters(),
                     *model.bottleneck.parameters()]
        self.optimizer = self.make_optimizer(self.rate_groups(extractor), **self.optim_settings)
        self.head_optimizer = self.make_optimizer(model.head.parameters(), **self.optim_settings)
        self.style_optimizer = self.make_optimizer(self.style_head.parameters(),
                                                   **self.optim_settings)
        self.draws = torch.Generator().manual_seed(torch.initial_seed() % 2**31)

    def trained_modules(self) -> list[nn.Module]:
        return [self.model, self.style_head]

    def optimizer_modules(self) -> dict[str, list[nn.Module]]:
        m = self.model
        return {"optimizer": [m.normalize, m.backbone, m.bottleneck],
                "head_optimizer": [m.head], "style_optimizer": [self.style_head]}

    def update(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        src = batch["source"]
        x, y = self.augment(src.x), src.y
        m = self.model
        self.schedule_lr(self.optimizer, self.head_optimizer, self.style_optimizer)
        # learn content
        self.optimizer.zero_grad(set_to_none=True)
        self.head_optimizer.zero_grad(set_to_none=True)
        loss_c = F.cross_entropy(m.head(randomize(m.features(x), "style", self.draws)), y)
        loss_c.backward()
        self.optimizer.step()
        self.head_optimizer.step()
        # learn style
        self.style_optimizer.zero_grad(set_to_none=True)
        loss_s = F.cross_entropy(self.style_head(randomize(m.features(x), "content",
                                                           self.draws)), y)
        loss_s.backward()
        self.style_optimizer.step()
        # learn the adversary: the features make the style head uniform
        self.optimizer.zero_grad(set_to_none=True)
        loss_adv = -F.log_softmax(self.style_head(randomize(m.features(x), "content",
                                                            self.draws)), dim=1).mean(1).mean()
        (self.adversary_weight * loss_adv).backward()
        self.optimizer.step()
        self.updates += 1
        self.after_step()
        return {"loss": loss_c.detach(), "style": loss_s.detach(),
                "adversary": (self.adversary_weight * loss_adv).detach()}
