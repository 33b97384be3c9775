"""Online, task-free strategies: maximally interfered retrieval and GDumb."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch.func import functional_call

from dalib.continual.base import Continual
from dalib.continual.buffers import Buffer
from dalib.continual.replay import Replay
from dalib.engine import Batch
from dalib.method import cross_entropy


class MIR(Replay):
    """``mir``: experience replay with maximally interfered retrieval (Aljundi et al.,
    "Online Continual Learning with Maximally Interfered Retrieval", NeurIPS 2019; ER-MIR as
    optimass/Maximally_Interfered_Retrieval ``mir.py``, ``retrieve_replay_update``). For
    each incoming batch: its cross-entropy's gradient; ``subsample`` buffer rows drawn
    without replacement; a virtual SGD step of ``virtual_lr`` (default: the learning rate)
    along that gradient; the ``replay`` rows (default: as many as the batch) whose loss
    that step raises most are replayed: the loss is the incoming batch's cross-entropy plus
    theirs (two means), one step; then the batch is offered to the reservoir buffer."""

    packable = False

    def __init__(self, model, *, name: str, memory: int = 500, subsample: int = 50,
                 replay: int | None = None, virtual_lr: float | None = None, **optim) -> None:
        super().__init__(model, name=name, memory=memory, **optim)
        self.subsample, self.replay = subsample, replay
        self.virtual_lr = virtual_lr if virtual_lr is not None else self.optim_settings["lr"]

    def retrieve(self, incoming: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
        """The ``n`` buffer rows (x, y, task) the virtual step on ``incoming`` (the incoming
        batch's loss, its graph kept) interferes with most."""
        names, params = zip(*[(name, p) for name, p in self.model.named_parameters()
                              if p.requires_grad], strict=True)
        grads = torch.autograd.grad(incoming, params, retain_graph=True, allow_unused=True)
        idx = self.buffer.distinct(self.subsample)
        x, y, t = self.buffer.x[idx], self.buffer.y[idx], self.buffer.task[idx]
        with torch.no_grad():
            virtual = {name: p if g is None else p - self.virtual_lr * g
                       for name, p, g in zip(names, params, grads, strict=True)}
            pre = F.cross_entropy(self.logits(x, t), y, reduction="none")
            post = F.cross_entropy(self.mask_logits(functional_call(self.model, virtual, (x,)),
                                                    t), y, reduction="none")
            top = (post - pre).sort(descending=True)[1][:n]
        return x[top], y[top], t[top]

    def loss(self, batch: dict[str, Batch]):
        current = batch["train"]
        ce = self.classification_loss(current)
        if not len(self.buffer):
            self.buffer.add(current.x, current.y, current.task)
            return ce, {}
        x, y, t = self.retrieve(ce, self.replay or len(current.y))
        self.buffer.add(current.x, current.y, current.task)
        replayed = cross_entropy(self.logits(self.augment(x), t), y)
        return ce + replayed, {"ce": ce.detach(), "replay": replayed.detach()}


def pass_rates(passes: int, lr: float, min_lr: float) -> list[float]:
    """GDumb's learning rate in each pass over its memory (``src/main.py``'s
    ``experiment``): a tenth of ``lr`` in the first pass (warm start), ``lr`` in the second,
    then cosine annealing with warm restarts (torch's ``CosineAnnealingWarmRestarts``,
    ``T_0 = 1``, ``T_mult = 2``, down to ``min_lr``), stepped from the third pass on."""
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(probe, T_0=1, T_mult=2,
                                                                    eta_min=min_lr)
    rates = []
    for epoch in range(passes):
        if epoch == 0:
            probe.param_groups[0]["lr"] = lr * 0.1
        elif epoch == 1:
            probe.param_groups[0]["lr"] = lr
        else:
            schedule.step()
        rates.append(probe.param_groups[0]["lr"])
    return rates


class GDumb(Continual):
    """``gdumb``: Prabhu, Torr & Dokania, "GDumb: A Simple Approach that Questions Our
    Progress in Continual Learning", ECCV 2020 (drimpossible/GDumb ``src/main.py``,
    ``src/opts.py``). The stream only fills a greedy class-balanced memory of ``memory``
    samples (:class:`~dalib.continual.buffers.Buffer`, ``policy="greedy"``); before every
    evaluation a model trained from scratch (the run's initial weights) on the memory alone
    predicts: ``passes`` passes in batches of ``batch_size`` (16), SGD with momentum 0.9 and
    weight decay 1e-6 at the rates of :func:`pass_rates` (``lr`` 0.05, ``min_lr`` 0.0005),
    the gradient norm clipped at ``clip`` (10). ``passes`` is 128 as the reference's MNIST
    runs (256 for CIFAR)."""

    task_free = True

    def __init__(self, model, *, name: str, memory: int = 500, passes: int = 128,
                 batch_size: int = 16, lr: float = 0.05, min_lr: float = 0.0005,
                 clip: float = 10.0, **optim) -> None:
        super().__init__(model, name=name, lr=lr, **optim)
        self.initial = copy.deepcopy(model.state_dict())
        self.buffer = Buffer(memory, "greedy", self.cpu_generator)
        self.batch_size, self.clip = batch_size, clip
        self.rates = pass_rates(passes, lr, min_lr)
        self.trained_on = -1  # samples seen when the model was last trained on the memory

    def update(self, batch: dict[str, Batch]) -> dict[str, torch.Tensor]:
        current = batch["train"]
        self.buffer.add(current.x, current.y, current.task)
        self.updates += 1
        return {"loss": torch.zeros((), device=self.device)}

    def before_eval(self) -> None:
        if self.trained_on == self.buffer.seen or not len(self.buffer):
            return
        self.trained_on = self.buffer.seen
        self.model.load_state_dict(self.initial)
        optimizer = torch.optim.SGD(self.model.parameters(), lr=self.rates[0], momentum=0.9,
                                    weight_decay=1e-6)
        n = len(self.buffer)
        x, y, t = self.buffer.x[:n], self.buffer.y[:n], self.buffer.task[:n]
        self.model.train()
        for rate in self.rates:
            optimizer.param_groups[0]["lr"] = rate
            order = torch.randperm(n, generator=self.cpu_generator).to(x.device)
            for i in range(0, n, self.batch_size):
                idx = order[i:i + self.batch_size]
                loss = cross_entropy(self.logits(self.augment(x[idx]), t[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
                optimizer.step()
