"""Seeds in parallel: S seeds of one transfer method trained at once as one batched model.

Each seed keeps what its separate run would have (its data, initial weights, sampler and
augmentation generators: each seed's inputs are augmented by its own method, outside the
batched part); the S methods' parameters and buffers (model, and the terms' discriminators
and heads) are stacked (``torch.func.stack_module_state``) and one ``vmap``-ed call of the
method's loss serves all seeds. The summed loss gives each seed its own gradient, and AdamW /
SGD act element by element, so one optimizer over the stacked parameters takes each seed's
own step. Results equal S separate runs up to float rounding (batched matrix products add in
another order). Exact for the supervised baselines and for adaptation built from terms that
are pure functions of the forward pass (``Term.parallel_seeds``: DANN, CDAN, MDD, DAN, Deep
CORAL, MCC, entropy minimisation, and their combinations).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from dalib.adaptation.base import Adaptation
from dalib.baselines import Supervised
from dalib.engine import (
    PRECISIONS,
    Batch,
    Budget,
    Trace,
    checkpoint_due,
    progress,
    transfer_samplers,
)
from dalib.registry import TERMS, Entry
from scenarios.transfer import TransferScenario


def _exact(method_class: type, joint: bool, term_classes: Iterable[type]) -> bool:
    if method_class is Supervised:
        return not joint
    return method_class is Adaptation and all(c.parallel_seeds for c in term_classes)


def supports(entry: Entry) -> bool:
    """Whether :func:`fit_transfer_seeds` reproduces separate runs of a registry entry's
    method (the runner decides before building anything)."""
    return _exact(entry.cls, entry.fixed.get("joint", False), [TERMS[t].cls for t in entry.terms])


def _supported(method) -> bool:
    return _exact(type(method), getattr(method, "joint", False),
                  [type(t) for t in getattr(method, "terms", {}).values()])


class _Stacked(nn.Module):
    """A method's model and terms as one module whose forward is the method's loss on given
    inputs (raw feeds ``xs``, their labels ``ys``, augmented inputs ``aug``)."""

    def __init__(self, method) -> None:
        super().__init__()
        self.method_ref = [method]  # a list, so the method is not registered as a submodule
        self.model = method.model
        self.terms = nn.ModuleDict(getattr(method, "terms", {}))

    def forward(self, xs: dict[str, torch.Tensor], ys: dict[str, torch.Tensor],
                aug: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = {n: Batch(x, ys.get(n), None) for n, x in xs.items()}
        return self.method_ref[0].loss(batch, aug)


def fit_transfer_seeds(methods: list, scenarios: list[TransferScenario], budget: Budget,
                       device: torch.device, seeds: list[int], traces: list[Trace],
                       checkpoints: list[Callable[[int], None]]) -> int:
    """Train ``methods[s]`` on ``scenarios[s]`` (seed ``seeds[s]``) for every s at once, as
    :func:`~dalib.engine.fit_transfer` would one by one; ``checkpoints[s]`` sees seed s's
    model with its current weights. Returns the steps."""
    if not all(_supported(m) for m in methods):
        raise ValueError("seeds in parallel need a supervised baseline or adaptation terms "
                         "without random draws or state (Term.parallel_seeds)")
    feeds = [transfer_samplers(m, sc, budget, device, seed)
             for m, sc, seed in zip(methods, scenarios, seeds, strict=True)]
    steps = feeds[0][1]
    sizes = {tuple(len(s.domain) for s in samplers.values()) for samplers, _ in feeds}
    if len(sizes) > 1 or any(n != steps for _, n in feeds):
        raise ValueError(f"seeds in parallel need equal data sizes per seed, got {sizes}")
    stacks = [_Stacked(m) for m in methods]
    params, buffers = stack_module_state(stacks)
    params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    lead = methods[0]
    base = stacks[0]  # the lead's own modules, holding the stacked tensors during each call
    optimizer = lead.make_optimizer(list(params.values()), **lead.optim_settings)
    loss = vmap(lambda p, b, xs, ys, aug: functional_call(base, (p, b), (xs, ys, aug)))
    dtype = PRECISIONS[lead.precision]

    def sync() -> None:
        with torch.no_grad():
            for s, stack in enumerate(stacks):
                for name, t in stack.named_parameters():
                    t.copy_(params[name][s])
                for name, t in stack.named_buffers():
                    t.copy_(buffers[name][s])

    def stacked(values: list[dict[str, torch.Tensor | None]]) -> dict[str, torch.Tensor]:
        return {n: torch.stack([v[n] for v in values]) for n in values[0]
                if values[0][n] is not None}

    with progress(steps, f"{lead.name} x {len(methods)} seeds") as bar:
        for step in range(steps):
            batches = [{n: sampler.next() for n, sampler in samplers.items()}
                       for samplers, _ in feeds]
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                aug = stacked([m.augmented(b) for m, b in zip(methods, batches, strict=True)])
                total, logs = loss(params, buffers, stacked([{n: b.x for n, b in batch.items()}
                                                             for batch in batches]),
                                   stacked([{n: b.y for n, b in batch.items()}
                                            for batch in batches]), aug)
            optimizer.zero_grad(set_to_none=True)
            total.sum().backward()
            lead.schedule_lr(optimizer)
            optimizer.step()
            for s, (m, trace) in enumerate(zip(methods, traces, strict=True)):
                m.updates += 1
                trace.log(step, {"loss": total[s].detach(),
                                 **{k: v[s] for k, v in logs.items()}})
            bar.update()
            if checkpoint_due(step, steps, budget.checkpoints):
                sync()
                for check, m, trace in zip(checkpoints, methods, traces, strict=True):
                    trace.check(m.model)
                    check(step + 1)
    sync()
    for m, trace in zip(methods, traces, strict=True):
        trace.check(m.model)
    return steps
