"""Rehearsal: keep some past samples (and logits) on the device and train on them again."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dalib.continual.base import Continual
from dalib.continual.buffers import Buffer, Buffers
from dalib.engine import Batch
from dalib.method import cross_entropy
from scenarios.domain import concat


class Replay(Continual):
    """``replay``: experience replay (Chaudhry et al. 2019, "On Tiny Episodic Memories"), as
    mammoth's ``models/er.py``: every step draws a batch as large as the current one from a
    buffer of ``memory`` samples (``policy`` reservoir or class-balanced), trains on the
    cross-entropy of the two batches concatenated (one mean over both), then offers the
    current batch to the buffer."""

    packable = True
    task_free = True  # the buffer fills batch by batch: no boundary is needed

    def __init__(self, model, *, name: str, memory: int = 500, policy: str = "reservoir",
                 **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.buffer: Buffer | Buffers = Buffer(memory, policy, self.cpu_generator)

    def adopt(self, methods) -> None:
        self.buffer = Buffers([m.buffer for m in methods])

    def loss(self, batch: dict[str, Batch]):
        current = batch["train"]
        past = self.buffer.sample(current.y.shape[-1]) if len(self.buffer) else None
        self.buffer.add(current.x, current.y, current.task)
        if past is None:
            return self.classification_loss(current), {}
        d = self.lead_dims
        x, y, t = (torch.cat([a, b], d) for a, b in
                   zip((current.x, current.y, current.task), past[:3], strict=True))
        return self.classification_loss(Batch(x, y, t)), {}


class Rehearsal(Continual):
    """``rehearsal``: naive rehearsal as Hsu et al. run it ("Re-evaluating Continual Learning
    Scenarios", 2018). Each task trains its epochs on the union of its data and the memory,
    the memory repeated ``max(1, N_task // memory)`` times (old : new about 1 : 1), shuffled
    together; after the task each task seen keeps ``memory // tasks seen`` samples (the
    first ones it kept, and a random draw of the new task's). The union makes a task's
    steps grow with the memory, unlike ``replay``'s fixed steps with mixed batches.

    Reference: GT-RIPL/Continual-Learning-Benchmark ``agents/exp_replay.py``
    (``Naive_Rehearsal``, ``learn_batch``).
    """

    def __init__(self, model, *, name: str, memory: int = 1000, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.memory = memory
        self.stored: list = []  # one Domain per task seen

    def copies(self, size: int) -> int:
        return max(size // self.memory, 1)

    def task_data(self, task):
        if not self.stored:
            return task.train
        return concat([*self.stored] * self.copies(len(task.train)) + [task.train],
                      f"{task.train.name}+memory")

    def task_sizes(self, tasks: list) -> list[int]:
        sizes, kept = [], []
        for seen, task in enumerate(tasks, 1):
            n = len(task.train)
            sizes.append(n + sum(kept) * self.copies(n) if kept else n)
            per_task = min(self.memory // seen, n)
            kept = [min(k, per_task) for k in kept] + [per_task]
        return sizes

    def after_task(self, task) -> None:
        per_task = min(self.memory // (len(self.stored) + 1), len(task.train))
        self.stored = [d.subset(torch.arange(min(per_task, len(d)))) for d in self.stored]
        pick = torch.randperm(len(task.train), generator=self.cpu_generator)[:per_task]
        self.stored.append(task.train.subset(pick))


class DER(Replay):
    """``der`` / ``der++``: dark experience replay (Buzzega et al., NeurIPS 2020). The buffer
    also keeps the logits the model gave each sample when stored; replayed logits are matched
    by mean squared error (weight ``alpha``), and ``der++`` (``beta > 0``) adds the
    cross-entropy on a second replayed batch."""

    per_run = ("alpha",)
    loss = Continual.loss  # the current batch's cross-entropy plus the replay terms

    def __init__(self, model, *, name: str, alpha: float = 0.3, beta: float = 0.0,
                 **kw) -> None:
        super().__init__(model, name=name, **kw)
        self.alpha, self.beta = alpha, beta

    def extra_loss(self, batch: Batch):
        n = batch.y.shape[-1]
        loss, logs = None, {}
        if len(self.buffer):
            x, _, t, z = self.buffer.sample(n)
            mse = self.run_mean(F.mse_loss(self.model(self.augment(x)), z, reduction="none"))
            loss, logs = self.alpha * mse, {"logit_mse": mse.detach()}
            if self.beta > 0:
                x2, y2, t2, _ = self.buffer.sample(n)
                ce = cross_entropy(self.logits(self.augment(x2), t2), y2)
                loss, logs = loss + self.beta * ce, {**logs, "replay": ce.detach()}
        with torch.no_grad():
            z_now = self.model(batch.x)
        self.buffer.add(batch.x, batch.y, batch.task, z_now.float())
        return loss, logs


class Cumulative(Continual):
    """``cumulative``: retrain on everything seen so far (an upper-bound-like reference).
    Past tasks' training data stay on the device; each batch is drawn uniformly from the
    union of past and current data (a binomial share of it from the past).

    Reference: Avalanche's ``Cumulative`` strategy
    (``avalanche/training/supervised/cumulative.py``, ContinualAI/avalanche).
    """

    def __init__(self, model, *, name: str, **optim) -> None:
        super().__init__(model, name=name, **optim)
        self.past: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.current_size = 1

    def before_task(self, task) -> None:
        self.current_size = len(task.train)

    def after_task(self, task) -> None:
        d = task.train
        self.past.append((d.x.to(self.device), d.y.to(self.device), d.task.to(self.device)))
        if len(self.past) > 1:
            self.past = [tuple(torch.cat(parts) for parts in zip(*self.past, strict=True))]

    def loss(self, batch: dict[str, Batch]):
        current = batch["train"]
        if not self.past:
            return super().loss(batch)
        x, y, t = self.past[0]
        n = len(current.y)
        share = len(y) / (len(y) + self.current_size)
        k = int(torch.binomial(torch.tensor(float(n)), torch.tensor(share),
                               generator=self.cpu_generator))
        idx = torch.randint(0, len(y), (k,), generator=self.cpu_generator).to(self.device)
        mixed = Batch(torch.cat([current.x[k:], x[idx]]), torch.cat([current.y[k:], y[idx]]),
                      torch.cat([current.task[k:], t[idx]]))
        return self.classification_loss(mixed), {}
