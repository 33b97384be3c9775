"""One optimizer for the stacked parameters of a pack, with a learning rate and a weight decay
per run.

The parameters are moved into one flat buffer (each stays a contiguous ``(S, ...)`` view of
it) and so are their gradients, so a step is a handful of element-wise operations on the
whole pack however many layers it has. The update is torch's AdamW (Loshchilov & Hutter,
ICLR 2019) or SGD with momentum, element by element, so run s takes exactly the step its own
optimizer would take, up to float rounding.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PackedOptimizer:
    """AdamW (``kind = "adam"``) or SGD over packed parameters; ``lr`` and ``weight_decay``
    hold one value per run. ``param_groups[0]["lr"]`` is the schedule's factor (1 at the
    start; :meth:`dalib.method.Method.schedule_lr` sets it as for any optimizer), and
    ``state.clear()`` forgets the moments, as for a torch optimizer."""

    def __init__(self, params: list[nn.Parameter], lr: torch.Tensor, weight_decay: torch.Tensor,
                 kind: str = "adam", momentum: float = 0.9, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.kind, self.momentum, self.betas, self.eps = kind, momentum, betas, eps
        ref = self.params[0]
        sizes = [p.numel() for p in self.params]
        self.flat = torch.empty(sum(sizes), dtype=ref.dtype, device=ref.device)
        self.grad = torch.zeros_like(self.flat)
        self.views: list[torch.Tensor] = []
        self.per_run = [n // len(p) for p, n in zip(self.params, sizes, strict=True)]
        offset = 0
        for p, n in zip(self.params, sizes, strict=True):
            view = self.flat[offset:offset + n].view_as(p)
            view.copy_(p.detach())
            p.data = view
            self.views.append(self.grad[offset:offset + n].view_as(p))
            offset += n
        self.run_lr = lr.to(ref.device, ref.dtype)
        self.lr, self.weight_decay = self._expand(self.run_lr), self._expand(weight_decay)
        self.param_groups = [{"lr": 1.0}]
        self.state: dict[str, torch.Tensor | int] = {}
        self.zero_grad()

    def _expand(self, values: torch.Tensor) -> torch.Tensor:
        """Per-run values as one per element of the flat buffer."""
        values = values.to(self.flat.device, self.flat.dtype)
        return torch.cat([values.repeat_interleave(n) for n in self.per_run])

    def stop(self, run: int) -> None:
        """Stop training run ``run`` (a diverged run: its parameters stay as they are)."""
        self.run_lr[run] = 0.0
        self.lr = self._expand(self.run_lr)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.grad.zero_()
        for p, view in zip(self.params, self.views, strict=True):
            p.grad = view

    def add_param_group(self, group: dict) -> None:
        raise ValueError("a pack's optimizer is built over all of its parameters at once")

    @torch.no_grad()
    def step(self) -> None:
        for p, view in zip(self.params, self.views, strict=True):
            if p.grad is None:
                view.zero_()
            elif p.grad.data_ptr() != view.data_ptr():  # a gradient set elsewhere
                view.copy_(p.grad)
        lr = self.lr * self.param_groups[0]["lr"]
        g, x = self.grad, self.flat
        if self.kind == "sgd":
            g = g.add(x * self.weight_decay)
            if self.momentum:
                buf = self.state.get("momentum")
                if buf is None:
                    buf = self.state["momentum"] = g.clone()
                else:
                    buf.mul_(self.momentum).add_(g)
                g = buf
            x.sub_(lr * g)
            return
        b1, b2 = self.betas
        if not self.state:
            self.state.update(step=0, m=torch.zeros_like(x), v=torch.zeros_like(x))
        self.state["step"] += 1
        t, m, v = self.state["step"], self.state["m"], self.state["v"]
        x.mul_(1 - lr * self.weight_decay)
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(self.eps)
        x.sub_(lr / (1 - b1 ** t) * m / denom)
