"""Seeds in parallel: S seeds of one supervised method trained at once as one batched model.

Each seed keeps what its separate run would have (its data, initial weights, sampler and
augmentation generators); the S models' parameters and batch-norm buffers are stacked
(``torch.func.stack_module_state``) and one ``vmap``-ed forward serves all seeds. The loss is
the sum of the seeds' losses, so each seed's gradient is its own, and AdamW / SGD act element
by element, so one optimizer over the stacked parameters takes each seed's own step. Results
equal S separate runs up to float rounding (batched matrix products add in another order).
Exact only for :class:`~dalib.baselines.Supervised` methods (one loss, one optimizer).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from dalib.baselines import Supervised
from dalib.engine import PRECISIONS, Budget, Trace, progress, transfer_samplers
from scenarios.transfer import TransferScenario


def supports(method_class: type, joint: bool = False) -> bool:
    """Whether :func:`fit_transfer_seeds` reproduces separate runs of a method of this class
    (a registry entry's ``cls``, so the runner decides before building anything)."""
    return method_class is Supervised and not joint


def fit_transfer_seeds(methods: list, scenarios: list[TransferScenario], budget: Budget,
                       device: torch.device, seeds: list[int], traces: list[Trace],
                       checkpoints: list[Callable[[int], None]]) -> int:
    """Train ``methods[s]`` on ``scenarios[s]`` (seed ``seeds[s]``) for every s at once, as
    :func:`~dalib.engine.fit_transfer` would one by one; ``checkpoints[s]`` sees seed s's
    model with its current weights. Returns the steps."""
    if not all(supports(type(m), getattr(m, "joint", False)) for m in methods):
        raise ValueError("seeds in parallel need supervised methods (one loss, one optimizer)")
    feeds = [transfer_samplers(m, sc, budget, device, seed)
             for m, sc, seed in zip(methods, scenarios, seeds, strict=True)]
    steps = feeds[0][1]
    sizes = {tuple(len(s.domain) for s in samplers.values()) for samplers, _ in feeds}
    if len(sizes) > 1 or any(n != steps for _, n in feeds):
        raise ValueError(f"seeds in parallel need equal data sizes per seed, got {sizes}")
    models = [m.model for m in methods]
    base = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)
    params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    lead = methods[0]
    optimizer = lead.make_optimizer(list(params.values()), **lead.optim_settings)
    forward = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)))
    dtype = PRECISIONS[lead.precision]
    every = max(1, steps // max(1, budget.checkpoints))

    def sync() -> None:
        with torch.no_grad():
            for s, model in enumerate(models):
                for name, t in model.named_parameters():
                    t.copy_(params[name][s])
                for name, t in model.named_buffers():
                    t.copy_(buffers[name][s])

    with progress(steps, f"{lead.name} x {len(methods)} seeds") as bar:
        for step in range(steps):
            batches = [{n: sampler.next() for n, sampler in samplers.items()}
                       for samplers, _ in feeds]
            losses = {}
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                for n in lead.needs:
                    x = torch.stack([m.augment(b[n].x) for m, b in zip(methods, batches,
                                                                       strict=True)])
                    y = torch.stack([b[n].y for b in batches])
                    out = forward(params, buffers, x)
                    losses[n] = F.cross_entropy(out.flatten(0, 1), y.flatten(),
                                                reduction="none").view(len(methods), -1).mean(1)
            total = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            total.sum().backward()
            lead.schedule_lr(optimizer)
            optimizer.step()
            for s, (m, trace) in enumerate(zip(methods, traces, strict=True)):
                m.updates += 1
                logs = {"loss": total[s].detach()}
                if len(losses) > 1:
                    logs.update({f"cls_{n}": v[s].detach() for n, v in losses.items()})
                trace.log(step, logs)
            bar.update()
            if (step + 1) % every == 0 or step + 1 == steps:
                sync()
                for check in checkpoints:
                    check(step + 1)
    sync()
    return steps
