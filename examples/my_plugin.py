"""An example dalib plugin: an adaptation term, a method and a backbone, registered with the
public API. Name it in a suite (``plugins = ["my_plugin.py"]``) or pass ``--plugin``.

The term and the method pack like the built-ins (many seeds and configurations trained as one
batched model): their tensors may carry a leading run dimension, so they reduce over the last
dimensions only (``dim=-1``, ``.mean(-1)``) and return one loss per run."""

import torch
import torch.nn.functional as F
from torch import nn

import dalib


@dalib.register_term("afn")
@dalib.packable  # its forward works on (B, F) features and on a pack's (S, B, F)
class AdaptiveFeatureNorm(dalib.Term):
    """Stepwise adaptive feature norm (Xu et al., "Larger Norm More Transferable", ICCV 2019):
    pull each sample's feature norm, source and target alike, ``step`` beyond its current
    value."""

    default_weight = 0.05

    def __init__(self, method, weight: float | None = None, step: float = 1.0) -> None:
        super().__init__(method, weight)
        self.step = step

    def forward(self, out: dalib.Outputs) -> torch.Tensor:
        loss = 0.0
        for feats in (out.feat_s, out.feat_t):
            norm = feats.norm(p=2, dim=-1)  # one norm per sample (and run)
            loss = loss + ((norm - (norm.detach() + self.step)) ** 2).mean(-1)
        return loss  # a scalar, or one value per run of a pack


@dalib.register_method("label-smoothing")
class LabelSmoothing(dalib.Method):
    """Source-only training with label smoothing (Szegedy et al., CVPR 2016)."""

    needs = ("source",)
    packable = True  # its loss reduces per run: (B, C) logits, or a pack's (S, B, C)

    def __init__(self, model, *, smoothing: float = 0.1, **optim) -> None:
        super().__init__(model, **optim)
        self.smoothing = smoothing

    def loss(self, batch):
        src = batch["source"]
        logits = self.logits(self.augment(src.x), src.task)
        per_sample = F.cross_entropy(logits.movedim(-1, 1), src.y, reduction="none",
                                     label_smoothing=self.smoothing)
        return per_sample.mean(-1), {}


@dalib.register_backbone("tiny-cnn")
def tiny_cnn(input_shape, width: int = 16) -> nn.Module:
    """Two 3x3 convolutions with batch norm and a 2 x 2 average pool: any nn.Module mapping
    images to feature vectors will do (its width is found by one forward pass)."""
    channels = input_shape[0]
    return nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width),
                         nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
