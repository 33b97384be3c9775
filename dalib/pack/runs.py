"""A pack's lead method: S runs' methods made into one over packed tensors.

Each run keeps what its separate run has: its initial weights (built from its own seed), its
augmentation generator, its learning rate, weight decay and the hyperparameters its method
lists in ``per_run`` (one value per run where they differ), and the state its method keeps
per run (``stacked`` tensors, :meth:`~dalib.method.Method.adopt`).
"""

from __future__ import annotations

import copy

import torch

from dalib.augment import shift, shift_offsets
from dalib.pack.modules import pack, pack_reason
from dalib.pack.optim import PackedOptimizer


def method_pack_reason(method) -> str | None:
    """Why ``method`` (built for one run) cannot train in a pack, or None."""
    if getattr(method, "body_rate", 1.0) != 1.0:
        return "per-layer learning rates (backbone_lr) train one run at a time"
    reason = method.pack_reason()
    if reason:
        return reason
    for module in method.trained_modules():
        reason = pack_reason(module)
        if reason:
            return reason
    return None


def per_run(values: list, device: torch.device) -> object:
    """One value when the runs agree (a separate run's exact value), else a tensor of one
    value per run (of tensors: stacked, the runs first)."""
    if isinstance(values[0], torch.Tensor):
        if all(torch.equal(v, values[0]) for v in values):
            return values[0]
        return torch.stack(values).to(device)
    if all(v == values[0] for v in values):
        return values[0]
    return torch.tensor([float(v) for v in values], device=device)


def adopt_per_run(target, sources: list, device: torch.device) -> None:
    """Set each of ``target.per_run``'s attributes from ``sources`` (one object per run)."""
    for name in type(target).per_run:
        setattr(target, name, per_run([getattr(s, name) for s in sources], device))


def _stack(values: list):
    if isinstance(values[0], torch.Tensor):
        return torch.stack(values)
    return [_stack(list(parts)) for parts in zip(*values, strict=True)]


class Augment:
    """The runs' augmentations of a packed batch ``(S, B, ...)``, each run drawing from its
    own generator as its separate run would: random shifts as one gather for all runs,
    other augmentations run by run."""

    def __init__(self, methods: list) -> None:
        self.methods = methods

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        first = self.methods[0]
        if first.augmentation == "shift":
            if first.shift <= 0 or x.dim() != 5:
                return x
            offsets = [shift_offsets(x.shape[1], first.shift, x.device, m.generator)
                       for m in self.methods]
            dy, dx = (torch.cat(parts) for parts in zip(*offsets, strict=True))
            return shift(x.flatten(0, 1), first.shift, dy, dx).view_as(x)
        return self.draw(lambda part, method: method.augment(part), x)

    def draw(self, fn, x: torch.Tensor) -> torch.Tensor:
        """``fn(part, method)`` on each run's part of ``x`` with the run's own method."""
        return torch.stack([fn(part, m) for m, part in zip(self.methods, x, strict=True)])


def pack_methods(methods: list):
    """The lead method of a pack: ``methods[0]``'s kind, with every trained module packed
    over ``methods`` (one per run, built alike), per-run hyperparameters and state, one
    :class:`~dalib.pack.optim.PackedOptimizer` and the runs' own augmentations."""
    first = methods[0]
    reason = method_pack_reason(first)
    if reason:
        raise ValueError(f"{type(first).__name__} cannot train in a pack: {reason}")
    lead = copy.copy(first)
    lead.lead_dims = 1
    lead.runs = len(methods)
    lead.model = pack([m.model for m in methods])
    for name in type(first).stacked:
        setattr(lead, name, _stack([getattr(m, name) for m in methods]))
    adopt_per_run(lead, methods, first.device)
    lead.adopt(methods)
    settings = first.optim_settings
    for attr, modules in lead.optimizer_modules().items():
        params = list({id(p): p for module in modules for p in module.parameters()}.values())
        setattr(lead, attr, PackedOptimizer(
            params, torch.tensor([m.optim_settings["lr"] for m in methods]),
            torch.tensor([m.optim_settings["weight_decay"] for m in methods]),
            settings["optimizer"], settings["momentum"]))
    lead.augment = Augment(methods)
    lead.draw = lead.augment.draw
    return lead
