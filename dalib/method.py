"""The method protocol: a method owns its model, its optimizer and its update step."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dalib.augment import random_resized_crop_flip, random_shift
from dalib.engine import Batch

OPTIMIZERS = ("adam", "sgd")
AUGMENTATIONS = ("shift", "crop-flip", "none")
# the learning-rate factor at progress p in [0, 1] after t updates: ``anneal`` is Ganin &
# Lempitsky's (1 + 10 p)^-0.75, ``inverse`` TLlib's (1 + 0.001 t)^-0.75 (its LambdaLR)
SCHEDULES = {
    "constant": lambda p, t: 1.0,
    "anneal": lambda p, t: (1.0 + 10.0 * p) ** -0.75,
    "inverse": lambda p, t: (1.0 + 0.001 * t) ** -0.75,
    "cosine": lambda p, t: 0.5 * (1.0 + math.cos(math.pi * p)),
}


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None,
                  ) -> torch.Tensor:
    """Mean cross-entropy over the batch (optionally weighted per sample): a scalar for one
    run's ``(B, C)`` logits, one value per run for a pack's ``(S, B, C)``."""
    ce = F.cross_entropy(logits.movedim(-1, 1), y, reduction="none")
    return (ce if weight is None else ce * weight).mean(-1)


def supervised_loss(out: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None,
                    ) -> torch.Tensor:
    """The supervised loss of a batch: :func:`cross_entropy` for class labels, the mean
    squared error of the outputs for continuous targets (a regression scenario's,
    standardised: :mod:`scenarios.regression`; one output, or one per factor averaged over
    the factors as ``F.mse_loss``), each optionally weighted per sample."""
    if not y.is_floating_point():
        return cross_entropy(out, y, weight)
    if out.shape[-1] > 1:  # several factors: y (..., B, d)
        se = ((out.float() - y) ** 2).mean(-1)
    else:
        se = (out[..., 0].float() - y) ** 2
    return (se if weight is None else se * weight).mean(-1)


class Method:
    """Base of every method.

    ``needs`` names the data the engine feeds to :meth:`update`, a dict from these names to
    :class:`~dalib.engine.Batch`: ``source`` (labelled source), ``target`` (unlabelled target
    train), ``target_labelled`` (the k labelled target samples per class), ``target_oracle``
    (target train with its labels: upper bounds only), ``train`` (the current task of a stream).
    Most methods define :meth:`loss`; the default :meth:`update` takes one optimizer step on it.
    Methods with several steps per batch (MCD) override :meth:`update`. ``update`` returns
    detached loss tensors (no host sync); ``predict`` returns logits.

    ``schedule`` sets the learning rate over the run's budget: ``constant``, ``anneal``
    (lr / (1 + 10 p)^0.75 at progress p, Ganin & Lempitsky 2015) or ``cosine`` (to 0 at the end).
    ``reset_optimizer`` (streams only) clears the optimizer's state (Adam's moments, SGD's
    momentum) at the start of every task, so no task's training is pushed by the last one's.
    ``augmentation`` is ``shift``, ``crop-flip`` or ``none`` (see :meth:`augment`).

    Packed runs (:mod:`dalib.pack`): a method whose losses are written for tensors with a
    leading run dimension (``(S, B, ...)``, see :func:`cross_entropy`, ``lead_dims``) sets
    ``packable``; ``per_run`` names its hyperparameters that may differ within a pack (one
    value per run), ``stacked`` its lists of per-run tensors, and :meth:`adopt` takes over
    any other state from the runs' own methods.
    """

    name = "method"
    needs: tuple[str, ...] = ("source",)
    precision = "fp32"  # "bf16": the engine runs each update under bfloat16 autocast
    packable = False
    task_free = False  # True: learns without being told the task boundaries (online streams)
    regression = False  # True: its losses apply to continuous targets (supervised_loss)
    per_run: tuple[str, ...] = ()
    stacked: tuple[str, ...] = ()
    lead_dims = 0  # 1 in a pack: tensors are (S, B, ...)

    def __init__(self, model: nn.Module, *, lr: float = 1e-3, weight_decay: float = 5e-4,
                 optimizer: str = "adam", momentum: float = 0.9, shift: int = 1,
                 schedule: str = "constant", reset_optimizer: bool = True,
                 augmentation: str = "shift", backbone_lr: float = 1.0) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule is {schedule!r}, expected one of {', '.join(SCHEDULES)}")
        self.model = model
        self.schedule = schedule
        self.shift = shift
        self.reset_optimizer = reset_optimizer
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation is {augmentation!r}, expected one of "
                             f"{', '.join(AUGMENTATIONS)}")
        self.augmentation = augmentation
        self.class_mask: torch.Tensor | None = None
        self.active: torch.Tensor | None = None
        self.total_steps = 1
        self.updates = 0
        self.device = next(model.parameters()).device
        self.optim_settings = {"lr": lr, "weight_decay": weight_decay, "optimizer": optimizer,
                               "momentum": momentum}
        self.body_rate = backbone_lr  # FineTune keeps its own backbone_lr
        self.optimizer = self.make_optimizer(self.rate_groups(list(model.parameters())),
                                             **self.optim_settings)
        self.generator = torch.Generator(device=self.device).manual_seed(
            torch.initial_seed() % 2**31)

    @staticmethod
    def make_optimizer(params, *, lr: float, weight_decay: float, optimizer: str,
                       momentum: float) -> torch.optim.Optimizer:
        if optimizer == "adam":
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        if optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        raise ValueError(f"optimizer is {optimizer!r}, expected one of {', '.join(OPTIMIZERS)}")

    def rate_groups(self, params: list) -> list:
        """``params`` as optimizer groups: the backbone's at ``backbone_lr`` x the learning
        rate, the others (bottleneck, head, auxiliary modules) at the rate (TLlib's
        per-layer rates); one plain list when ``backbone_lr`` is 1."""
        if self.body_rate == 1.0 or not hasattr(self.model, "backbone"):
            return params
        body = {id(p) for p in self.model.backbone.parameters()}
        lr = self.optim_settings["lr"]
        groups = [{"params": [p for p in params if id(p) in body],
                   "lr": lr * self.body_rate},
                  {"params": [p for p in params if id(p) not in body], "lr": lr}]
        return [g for g in groups if g["params"]]

    def attach(self, module: nn.Module) -> nn.Module:
        """Move an auxiliary module to the device and train it with the model's optimizer."""
        module.to(self.device)
        params = [p for p in module.parameters() if p.requires_grad]
        if params:
            self.optimizer.add_param_group({"params": params})
        return module

    @property
    def progress(self) -> float:
        """Fraction of the training budget done, in [0, 1]."""
        return min(1.0, self.updates / max(1, self.total_steps))

    @property
    def selectable(self) -> bool:
        """Whether a checkpoint taken now is a candidate for model selection (methods that
        train in phases offer only their final phase)."""
        return True

    def prepare(self, feeds: dict) -> None:
        """Called once before training with the device-resident domains the method may see
        (same names as ``needs``; never target test labels)."""

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """The training inputs' augmentation: ``shift`` (random translations of up to
        ``shift`` pixels, the default), ``crop-flip`` (random resized crop and horizontal flip,
        the standard for RGB images) or ``none``."""
        if self.augmentation == "crop-flip":
            return random_resized_crop_flip(x, self.generator)
        if self.augmentation == "none":
            return x
        return random_shift(x, self.shift, self.generator)

    def draw(self, fn, x: torch.Tensor) -> torch.Tensor:
        """``fn(x, method)``: a random transformation of a batch drawn with a run's own method
        (its generator); a pack draws each run's part with that run's method."""
        return fn(x, self)

    def augmented(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        """Each feed's inputs augmented, drawn in feed order (what :meth:`loss` trains on)."""
        return {name: self.augment(b.x) for name, b in batch.items()}

    def logits(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Model outputs, masked to each sample's task classes under task-IL and to the
        classes seen so far under class-IL (see :meth:`mask_logits`)."""
        return self.mask_logits(self.model(x), task)

    def mask_logits(self, out: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """``out`` with the outputs a sample may not use at -inf: those of other tasks
        under task-IL (``class_mask``), those of classes not seen yet under class-IL
        (``active``, set by the stream's loop)."""
        if self.class_mask is not None and task is not None:
            out = out.masked_fill(~self.class_mask[task], float("-inf"))
        if self.active is not None:
            out = out.masked_fill(~self.active, float("-inf"))
        return out

    def predict(self, x: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.logits(x, task)

    def schedule_lr(self, *optimizers: torch.optim.Optimizer) -> None:
        """Set every parameter group's learning rate for the current progress."""
        factor = SCHEDULES[self.schedule](self.progress, self.updates)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # a pack's runs: each run's loss gives its own gradients
        self.schedule_lr(self.optimizer)
        self.optimizer.step()

    def classification_loss(self, batch: Batch) -> torch.Tensor:
        return supervised_loss(self.logits(self.augment(batch.x), batch.task), batch.y)

    def run_mean(self, t: torch.Tensor) -> torch.Tensor:
        """The mean of each run's part of ``t`` (a scalar for one run)."""
        return t.flatten(self.lead_dims).mean(-1)

    def run_sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of each run's part of ``t`` (a scalar for one run)."""
        return t.flatten(self.lead_dims).sum(-1)

    def pack_reason(self) -> str | None:
        """Why this method cannot train in a pack, or None."""
        if not self.packable:
            return f"{type(self).__name__} is not written for packed runs"
        return None

    def trained_modules(self) -> list[nn.Module]:
        """The modules the optimizer trains (the model and auxiliary ones)."""
        return [self.model]

    def optimizer_modules(self) -> dict[str, list[nn.Module]]:
        """Each optimizer attribute with the modules it trains (one optimizer by default;
        methods with several, as MCD, name each)."""
        return {"optimizer": self.trained_modules()}

    def adopt(self, methods: list[Method]) -> None:
        """As a pack's lead: take over the per-run state of ``methods`` (one per run) that
        the generic packing does not (see :func:`dalib.pack.runs.pack_methods`)."""

    def loss(self, batch: dict[str, Batch]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of one batch (one per run in a pack) and the detached terms to
        log."""
        raise NotImplementedError

    def update(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        loss, logs = self.loss(batch)
        self.step(loss)
        self.updates += 1
        self.after_step()
        return {"loss": loss.detach(), **logs}

    def after_step(self) -> None:
        """Called after every optimizer update (EMA teachers)."""

    def before_task(self, task) -> None:
        """Called by the engine before training on a stream's task."""

    def after_task(self, task) -> None:
        """Called by the engine after training on a stream's task."""
