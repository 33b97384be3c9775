"""Task-free online continual learning: one pass over a stream whose task boundaries the
method is never told, evaluated at any time.

The tasks' training samples arrive in order (each task's shuffled, and with blurry
boundaries mixed with other tasks' samples: :func:`scenarios.stream.blur`), in batches of
the budget's ``batch_size`` (a task's remainder spread over its batches), each batch seen
once: one ``update`` per batch (the setting of
Aljundi et al., "Online Continual Learning with Maximally Interfered Retrieval", NeurIPS
2019, and Prabhu et al., "GDumb", ECCV 2020). Under class-IL the model's outputs are those of
the classes seen so far in the stream. The evaluator, not the method, knows the boundaries:
after each task a row of the accuracy matrix (ACC, BWT and forgetting as for other streams),
and ``anytime`` times per task the accuracy on the test samples of the classes (and tasks)
seen so far (Koh et al., "Online Continual Learning on Class Incremental Blurry Task
Configuration with Anytime Inference", ICLR 2022), whose mean over the stream is the average
anytime accuracy.
"""

from __future__ import annotations

import numpy as np
import torch

from dalib.engine import (
    Batch,
    Budget,
    Placement,
    Trace,
    accuracy,
    ready_for_evaluation,
    stream_row,
    train_steps,
)
from dalib.settings import torch_threads
from scenarios.domain import Domain, concat
from scenarios.stream import Stream


class InOrder:
    """A domain's samples in their order, in ``steps`` batches, each sample once; ``seen``
    marks the classes and tasks of every batch handed out."""

    def __init__(self, domain: Domain, steps: int, seen: dict[str, torch.Tensor],
                 method) -> None:
        self.domain, self.seen, self.method = domain, seen, method
        self.steps, self.pos, self.step = steps, 0, 0

    def next(self) -> Batch:
        self.step += 1
        d, end = self.domain, self.step * len(self.domain) // self.steps
        x, y, task = d.x[self.pos:end], d.y[self.pos:end], d.task[self.pos:end]
        self.pos = end
        self.seen["classes"][y] = True
        self.seen["tasks"][task] = True
        if self.method.active is not None:
            self.method.active = self.seen["classes"].clone()
        return Batch(x, y, task)


def anytime_accuracy(method, stream: Stream, seen: dict[str, torch.Tensor]) -> float:
    """Accuracy (%) on the test samples of the tasks and (except under domain-IL, where
    every task holds every class) the classes seen so far, the method
    :func:`~dalib.engine.ready_for_evaluation` first."""
    ready_for_evaluation(method)
    tests = [t.test for t in stream.tasks if bool(seen["tasks"][t.id])]
    pool = concat(tests, f"{stream.name}/seen")
    if stream.protocol != "domain-il":
        pool = pool.subset(torch.nonzero(seen["classes"].cpu()[pool.y]).flatten())
    if stream.protocol != "task-il":
        return accuracy(method, pool)
    parts = [pool.subset(torch.nonzero(pool.task == t).flatten())  # each with its task's outputs
             for t in pool.task.unique().tolist()]
    return float(np.average([accuracy(method, p, int(p.task[0])) for p in parts],
                            weights=[len(p) for p in parts]))


def fit_taskfree(method, stream: Stream, budget: Budget, device: torch.device, seed: int,
                 trace: Trace, curve: list[list[float]], threads: int | None = None
                 ) -> np.ndarray:
    """One pass over ``stream`` (see the module doc); returns the accuracy matrix (a row
    before training and after each task) and appends ``[samples seen, anytime accuracy]``
    to ``curve`` at every evaluation."""
    with torch_threads(threads):
        return _fit(method, stream, budget, device, seed, trace, curve)


def _fit(method, stream: Stream, budget: Budget, device: torch.device, seed: int, trace: Trace,
         curve: list[list[float]]) -> np.ndarray:
    method.class_mask = None if stream.class_mask() is None else stream.class_mask().to(device)
    generator = torch.Generator().manual_seed(seed)
    seen = {"classes": torch.zeros(stream.num_classes, dtype=torch.bool, device=device),
            "tasks": torch.zeros(len(stream.tasks), dtype=torch.bool, device=device)}
    method.active = seen["classes"].clone() if stream.active_mask(0) is not None else None
    segments = [t.train.subset(torch.randperm(len(t.train), generator=generator))
                for t in stream.tasks]
    if getattr(method, "joint", False):  # the i.i.d. reference: the whole stream shuffled
        whole = concat(segments, f"{stream.name}/joint")
        segments = [whole.subset(torch.randperm(len(whole), generator=generator))]
    steps = [budget.single_pass(len(s)) for s in segments]
    method.total_steps = sum(steps)
    rows = [stream_row(method, stream)]
    place, offset, samples = Placement(device), 0, 0
    for segment, n in zip(segments, steps, strict=True):
        feed = InOrder(place(segment), n, seen, method)
        points = stream.anytime * (len(stream.tasks) if len(segments) == 1 else 1)
        cuts = [k * n // points for k in range(points + 1)]  # evenly spaced evaluations
        for a, b in zip(cuts, cuts[1:], strict=False):
            if b == a:
                continue
            train_steps(method, {"train": feed}, b - a, trace, offset + a, method.name)
            curve.append([samples + feed.pos, anytime_accuracy(method, stream, seen)])
        offset, samples = offset + n, samples + len(segment)
        rows.append(stream_row(method, stream))
    return np.array(rows)
