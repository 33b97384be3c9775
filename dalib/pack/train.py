"""The packed step loops: S runs of one method trained as one, for transfer scenarios and
streams, each run seeing the batches, augmentations and evaluations of its separate run.

A run whose loss turns NaN or infinite is recorded failed (with the reason its separate run
would give) and stops training (its learning rate goes to 0); the others go on unchanged:
no packed operation mixes runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property
from types import SimpleNamespace

import numpy as np
import torch

from dalib.engine import (
    Batch,
    Budget,
    Placement,
    Sampler,
    Trace,
    check_weights,
    planned_steps,
    seen_outputs,
    stream_row,
    train_steps,
    transfer_samplers,
)
from dalib.pack.modules import unpack_into
from dalib.pack.runs import pack_methods
from dalib.settings import torch_threads
from scenarios.stream import Stream
from scenarios.transfer import TransferScenario

STACK_BYTES = 2**30  # stack the runs' data for one gather up to this size, else gather per run


class PackedSampler:
    """The samplers of a pack's runs as one: run s's permutation comes from run s's own
    generator, as in :class:`~dalib.engine.Sampler`, and batches are ``(S, B, ...)``."""

    def __init__(self, samplers: list[Sampler]) -> None:
        first = samplers[0]
        if any(s.n != first.n or s.batch_size != first.batch_size for s in samplers):
            raise ValueError("the runs of a pack need data of equal size")
        self.samplers, self.n, self.batch_size = samplers, first.n, first.batch_size
        self.device = first.device
        xs = [s.x for s in samplers]
        self.shared = all(x is xs[0] for x in xs)
        bytes_ = sum(x.element_size() * x.nelement() for x in xs)
        self.x: torch.Tensor | list[torch.Tensor] = xs[0] if self.shared else (
            torch.stack(xs) if bytes_ <= STACK_BYTES else xs)
        self.y = None if first.y is None else torch.stack([s.y for s in samplers])
        self.task = None if first.task is None else torch.stack(
            [s.task.to(self.device) for s in samplers])
        self.env = None if first.env is None else torch.stack(
            [s.env.to(self.device) for s in samplers])
        self.runs = torch.arange(len(samplers), device=self.device)[:, None]
        self._perm = torch.empty(0, dtype=torch.long)
        self._pos = self.n

    def next(self) -> Batch:
        if self._pos + self.batch_size > self.n:
            self._perm = torch.stack([torch.randperm(self.n, generator=s.generator)
                                      for s in self.samplers]).to(self.device)
            self._pos = 0
        idx = self._perm[:, self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        if self.shared:
            x = self.x[idx.to(self.x.device)]
        elif isinstance(self.x, list):
            x = torch.stack([part[i.to(part.device)] for part, i in zip(self.x, idx, strict=True)])
        else:
            x = self.x[self.runs.to(self.x.device), idx.to(self.x.device)]
        x = x.to(self.device, non_blocking=True)

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.gather(1, idx)

        return Batch(x, pick(self.y), pick(self.task), pick(self.env))


class Pack:
    """The runs' own methods, their lead (:func:`~dalib.pack.runs.pack_methods`), one trace
    (one value per run) and the runs that failed, with their reasons."""

    def __init__(self, methods: list, trace: Trace | None = None) -> None:
        self.methods = methods
        self.lead = pack_methods(methods)
        self.trace = trace or Trace()
        self.failures: dict[int, str] = {}

    @property
    def alive(self) -> list[int]:
        return [s for s in range(len(self.methods)) if s not in self.failures]

    def fail(self, run: int, reason: str) -> None:
        self.failures[run] = reason
        for attr in self.lead.optimizer_modules():
            getattr(self.lead, attr).stop(run)

    def watch(self) -> None:
        """Fail the runs whose loss diverged since the last look (a host sync)."""
        for s, bad in enumerate(self.trace.diverged()):
            if bad and s not in self.failures:
                self.fail(s, f"FloatingPointError: {self.trace.divergence()}")

    def sync(self) -> list[int]:
        """Copy each live run's weights into its own modules (model, critics, heads,
        teachers; a run with NaN or infinite weights fails); returns the live runs."""
        self.watch()
        for s in self.alive:
            for packed, own in zip(self.lead.trained_modules(),
                                   self.methods[s].trained_modules(), strict=True):
                unpack_into(packed, s, own)
            try:
                check_weights(self.methods[s].model, self.trace.last_step)
            except FloatingPointError as exc:
                self.fail(s, f"FloatingPointError: {exc}")
        for m in self.methods:
            m.updates = self.lead.updates
        return self.alive

    def train(self, samplers: dict[str, PackedSampler], steps: int, offset: int, desc: str,
              checkpoint: Callable[[int], None] | None = None, checkpoints: int = 0) -> None:
        """``steps`` packed updates (:func:`~dalib.engine.train_steps`), diverged runs
        failed at every log step; ``checkpoint(step)`` sees the live runs' own models,
        synced."""
        train_steps(self.lead, samplers, steps, self.trace, offset, desc, checkpoint,
                    checkpoints, on_log=self.watch, settle=self.sync)


def fit_transfer_pack(methods: list, scenarios: list[TransferScenario], budget: Budget,
                      device: torch.device, seeds: list[int],
                      checkpoints: list[Callable[[int], None]], trace: Trace | None = None,
                      threads: int | None = None) -> tuple[int, Pack]:
    """Train ``methods[s]`` on ``scenarios[s]`` with seed ``seeds[s]`` for every s as one
    pack, as :func:`~dalib.engine.fit_transfer` would one by one: ``checkpoints[s]`` sees
    run s's model (live runs only); ``trace`` keeps one value per run; ``threads`` as in
    :func:`~dalib.engine.fit_transfer`. Returns the steps and the pack (trace, failures)."""
    with torch_threads(threads):
        return _fit_transfer_pack(methods, scenarios, budget, device, seeds, checkpoints, trace)


def _fit_transfer_pack(methods: list, scenarios: list[TransferScenario], budget: Budget,
                       device: torch.device, seeds: list[int],
                       checkpoints: list[Callable[[int], None]], trace: Trace | None
                       ) -> tuple[int, Pack]:
    feeds = [transfer_samplers(m, sc, budget, device, seed)
             for m, sc, seed in zip(methods, scenarios, seeds, strict=True)]
    steps = feeds[0][1]
    if any(n != steps for _, n in feeds):
        raise ValueError("the runs of a pack need the same number of steps")
    pack = Pack(methods, trace)
    samplers = {name: PackedSampler([f[0][name] for f in feeds]) for name in feeds[0][0]}

    def checkpoint(step: int) -> None:
        for s in pack.alive:
            checkpoints[s](step)

    pack.train(samplers, steps, 0, f"{methods[0].name} x {len(methods)}", checkpoint,
               budget.checkpoints)
    return steps, pack


class PackedTask:
    """The runs' versions of one task of a stream as one task (same id and classes; the
    training data stacked into ``(S, N, ...)`` when a method reads it)."""

    def __init__(self, tasks: list) -> None:
        self.tasks = tasks
        self.id, self.classes = tasks[0].id, tasks[0].classes

    @cached_property
    def train(self) -> SimpleNamespace:
        parts = [t.train for t in self.tasks]
        return SimpleNamespace(**{k: torch.stack([getattr(p, k) for p in parts])
                                  for k in ("x", "y", "task")})


def stream_pack_reason(streams: list[Stream]) -> str | None:
    """Why the streams of a pack's runs cannot train together, or None."""
    first = streams[0]
    if first.online:
        return "task-free streams train one run at a time"
    for st in streams[1:]:
        if st.protocol != first.protocol or len(st.tasks) != len(first.tasks) or any(
                a.classes != b.classes or len(a.train) != len(b.train)
                for a, b in zip(st.tasks, first.tasks, strict=True)):
            return "the seeds' streams differ in their tasks' classes or sizes"
    return None


def fit_stream_pack(methods: list, streams: list[Stream], budget: Budget,
                    device: torch.device, seeds: list[int],
                    validations: list[list[list[float]]], trace: Trace | None = None,
                    threads: int | None = None) -> tuple[list[np.ndarray], Pack]:
    """Train ``methods[s]`` on ``streams[s]`` task after task for every s as one pack, as
    :func:`~dalib.engine.fit_stream` would one by one (``threads`` too); returns each run's
    accuracy matrix (a failed run's holds what it reached) and the pack."""
    with torch_threads(threads):
        return _fit_stream_pack(methods, streams, budget, device, seeds, validations, trace)


def _fit_stream_pack(methods: list, streams: list[Stream], budget: Budget,
                     device: torch.device, seeds: list[int],
                     validations: list[list[list[float]]], trace: Trace | None
                     ) -> tuple[list[np.ndarray], Pack]:
    reason = stream_pack_reason(streams)
    if reason:
        raise ValueError(reason)
    first = streams[0]
    mask = first.class_mask()
    total = planned_steps(first, budget)
    for m in methods:
        m.class_mask = None if mask is None else mask.to(device)
        m.total_steps = total
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    rows: list[list[list[float]]] = [[] for _ in methods]

    def row(runs: list[int]) -> None:
        for s in runs:
            rows[s].append(stream_row(methods[s], streams[s], validations[s]))

    row(list(range(len(methods))))
    pack = Pack(methods, trace)
    lead = pack.lead
    offset = 0
    for index, task in enumerate(first.tasks):
        if lead.reset_optimizer:
            lead.optimizer.state.clear()
        packed = PackedTask([st.tasks[index] for st in streams])
        for m in (lead, *methods):
            m.active = seen_outputs(first, index, device)
        lead.before_task(packed)
        steps = budget.steps_for(len(task.train))
        samplers = {"train": PackedSampler([
            Sampler(Placement(device)(st.tasks[index].train), budget.batch_size, g)
            for st, g in zip(streams, generators, strict=True)])}
        pack.train(samplers, steps, offset, f"{lead.name} x {len(methods)} task {task.id}")
        offset += steps
        lead.after_task(packed)
        row(pack.sync())
    return [np.array(r) if r else np.full((1, len(first.tasks)), math.nan) for r in rows], pack
