"""Inductive transfer: pretrain on the labelled source, then fine-tune on the k labelled target
samples per class, with layers frozen and discriminative learning rates.

One run does both phases: the first ``pretrain`` fraction of the budget trains on the source
(cross-entropy); then the head is re-initialised (``new_head``), the blocks named by
``freeze`` are frozen (no gradients, batch norm in eval mode) and the rest trains on the
labelled target samples, the backbone at ``backbone_lr`` x the head's learning rate
(Yosinski et al., "How transferable are features in deep neural networks?", NeurIPS 2014;
Howard & Ruder 2018 for discriminative learning rates).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dalib.adaptation.base import Outputs
from dalib.adaptation.weighting import Gate
from dalib.engine import Batch
from dalib.method import Method
from dalib.models import blocks, frozen_count
from dalib.models import freeze as freeze_blocks


class FineTune(Method):
    """``linear-probe`` (``freeze = "all"``: a new head on frozen features), ``finetune-top``
    (``freeze = 1``: the first block frozen, the "mid-layer" case; a count or a block name such
    as ``layer2``) and ``finetune-full`` (``freeze = 0``). ``gate = true`` weights the source
    samples of the pretraining phase by the discriminator gate (:class:`Gate`).

    Reference: the fine-tuning baselines of TLlib
    (``examples/task_adaptation/image_classification/erm.py``,
    thuml/Transfer-Learning-Library): target cross-entropy, frozen blocks excluded from the
    optimizer.
    """

    needs = ("source", "target_labelled")

    def __init__(self, model: nn.Module, *, name: str, freeze: int | str = 0,
                 backbone_lr: float = 0.1, pretrain: float = 0.5, new_head: bool = True,
                 gate: bool = False, **optim) -> None:
        super().__init__(model, **optim)
        if not 0.0 <= pretrain < 1.0:
            raise ValueError(f"pretrain is {pretrain}, expected a fraction in [0, 1)")
        frozen_count(blocks(model), freeze)  # a bad block name fails now, not mid-run
        self.name = name
        self.freeze = freeze
        self.backbone_lr = backbone_lr
        self.pretrain = pretrain
        self.new_head = new_head
        self.frozen: list[nn.Module] = []
        self.tuning = False
        self.gate = self.attach(Gate(self)) if gate else None

    @property
    def selectable(self) -> bool:
        """Only checkpoints of the fine-tuning phase are candidates for selection (the
        pretrained model is not a fine-tuned one)."""
        return self.tuning

    def start_finetuning(self) -> None:
        """Switch from source pretraining to fine-tuning on the labelled target samples."""
        self.tuning = True
        if self.new_head:
            self.model.head.reset_parameters()
        self.frozen = freeze_blocks(self.model, self.freeze)
        self.model.zero_grad(set_to_none=True)  # no stale source gradients on frozen blocks
        head = list(self.model.head.parameters())
        ids = {id(p) for p in head}
        body = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        lr = self.optim_settings["lr"]
        groups = [{"params": head, "lr": lr}]
        if body:
            groups.append({"params": body, "lr": lr * self.backbone_lr,
                           "weight_decay": self.body_weight_decay()})
        self.optimizer = self.make_optimizer(groups, **self.optim_settings)

    def body_weight_decay(self) -> float:
        return self.optim_settings["weight_decay"]

    def penalty(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Regularisers of the fine-tuning phase, from the batch's features (none here)."""
        return {}

    def pretraining_loss(self, batch: dict[str, Batch]
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Source cross-entropy; with ``gate``, each source sample weighted by the
        discriminator gate of Wang et al. (2019), trained on the labelled target samples."""
        if self.gate is None:
            return self.classification_loss(batch["source"]), {}
        s, lab = batch["source"], batch["target_labelled"]
        feats = self.model.features(torch.cat([self.augment(s.x), self.augment(lab.x)]))
        n = len(s.x)
        logits = self.model.head(feats[:n])
        out = Outputs(s.y, None, None, feats[:n], None, logits, None, lab.y, feats[n:])
        weights = self.gate.source_weights(out)
        cls = (F.cross_entropy(logits, s.y, reduction="none") * weights).mean()
        critic = self.gate(out)
        return cls + critic, {"gate": critic.detach()}

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if not self.tuning and self.progress >= self.pretrain:
            self.start_finetuning()
        if not self.tuning:
            return self.pretraining_loss(batch)
        for m in self.frozen:
            m.eval()
        lab = batch["target_labelled"]
        feats = self.model.features(self.augment(lab.x))
        cls = F.cross_entropy(self.model.head(feats), lab.y)
        extra = self.penalty(feats)
        return cls + sum(extra.values()), {"target_cls": cls.detach(),
                                           **{k: v.detach() for k, v in extra.items()}}
