"""One optimizer for the stacked parameters of a pack, with a learning rate and a weight decay
per run.

The update is torch's fused AdamW (Loshchilov & Hutter, ICLR 2019) or SGD with momentum,
which act element by element, so run s takes the step its own optimizer would take, up to
float rounding. When every run has the same learning rate and weight decay one fused call
steps the whole pack; otherwise one call per run steps that run's slices (each contiguous,
since packed parameters are ``(S, ...)``).
"""

from __future__ import annotations

import torch
from torch import nn


class PackedOptimizer:
    """AdamW (``kind = "adam"``) or SGD over packed parameters; ``lr`` and ``weight_decay``
    hold one value per run. ``param_groups[0]["lr"]`` is the schedule's factor (1 at the
    start; :meth:`dalib.method.Method.schedule_lr` sets it as for any optimizer), and
    ``state.clear()`` forgets the moments, as for a torch optimizer."""

    def __init__(self, params: list[nn.Parameter], lr: torch.Tensor, weight_decay: torch.Tensor,
                 kind: str = "adam", momentum: float = 0.9,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.kind, self.momentum, self.betas, self.eps = kind, momentum, betas, eps
        self.lr, self.weight_decay = lr.tolist(), weight_decay.tolist()
        self.param_groups = [{"lr": 1.0}]
        self.state: dict[int, dict[str, torch.Tensor | int]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def add_param_group(self, group: dict) -> None:
        raise ValueError("a pack's optimizer is built over all of its parameters at once")

    def stop(self, run: int) -> None:
        """Stop training run ``run`` (a diverged run: its parameters stay as they are)."""
        self.lr[run] = 0.0

    def _state(self, p: torch.Tensor) -> dict[str, torch.Tensor | int]:
        state = self.state.get(id(p))
        if state is None:
            state = self.state[id(p)] = {"step": torch.zeros((), dtype=torch.float32,
                                                             device=p.device), "count": 0}
            if self.kind == "adam":
                state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
            else:
                state["momentum"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def step(self) -> None:
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return
        states = [self._state(p) for p in params]
        for s in states:
            s["step"] += 1
            s["count"] += 1  # the same on the host: no device sync to read it
        factor = self.param_groups[0]["lr"]
        settings = list(zip(self.lr, self.weight_decay, strict=True))
        if len(set(settings)) == 1:
            self._fused(params, [p.grad for p in params], states, None, *settings[0], factor)
            return
        for run, (lr, wd) in enumerate(settings):
            if lr:
                self._fused([p[run] for p in params], [p.grad[run] for p in params], states,
                            run, lr, wd, factor)

    def _fused(self, params: list[torch.Tensor], grads: list[torch.Tensor], states: list[dict],
               run: int | None, lr: float, wd: float, factor: float) -> None:
        if not lr:
            return

        def part(name: str) -> list[torch.Tensor]:
            return [s[name] if run is None else s[name][run] for s in states]

        if self.kind == "adam":
            torch._fused_adamw_(params, grads, part("m"), part("v"), [],
                                [s["step"] for s in states], lr=lr * factor, beta1=self.betas[0],
                                beta2=self.betas[1], weight_decay=wd, eps=self.eps,
                                amsgrad=False, maximize=False)
            return
        first = states[0]["count"] == 1
        torch._fused_sgd_(params, grads, part("momentum") if self.momentum else [],
                          weight_decay=wd, momentum=self.momentum, lr=lr * factor, dampening=0.0,
                          nesterov=False, maximize=False, is_first_step=first)
