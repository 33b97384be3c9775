"""The training engine: seeds, devices, tensor-resident batches, evaluation and the step loops.

Batches are index gathers into tensors already on the device: no DataLoader, no per-sample
Python, no host sync inside the step loop (losses are read back every ``log_every`` steps).
The engine knows no method by name: it feeds each method the data it ``needs``.
"""

from __future__ import annotations

import math
import os
import platform
import random
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from dalib.settings import torch_threads
from scenarios.domain import Domain, concat
from scenarios.errors import InputError
from scenarios.pixels import Pixels
from scenarios.stream import Stream
from scenarios.transfer import TransferScenario


class Batch(NamedTuple):
    """A mini-batch: inputs, labels (None when unlabelled), task ids (streams), and each
    sample's environment (its source domain, in data pooled from several)."""

    x: torch.Tensor
    y: torch.Tensor | None
    task: torch.Tensor | None
    env: torch.Tensor | None = None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def versions() -> dict[str, str]:
    """Library versions a result depends on."""
    from dalib import __version__

    return {"dalib": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "numpy": np.__version__}


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; asking for a CUDA device this machine lacks is an
    input error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d{1,3})?", device):
        raise InputError("--device", f"is {device!r}", expected="auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device[5:] or 0)
        if index >= count:
            raise InputError("--device", f"is {device!r} but this machine has "
                             f"{count} CUDA device(s)", expected="auto or cpu"
                             + (f", or cuda:0..cuda:{count - 1}" if count else ""))
    return torch.device(device)


def memory_budget(device: torch.device) -> float:
    """Bytes of input data one run may keep on ``device``: ``$DALIB_DEVICE_MEMORY`` when set,
    else half the free memory of a CUDA device; unbounded on the CPU."""
    if os.environ.get("DALIB_DEVICE_MEMORY"):
        return float(os.environ["DALIB_DEVICE_MEMORY"])
    if device.type == "cuda":
        return 0.5 * torch.cuda.mem_get_info(device)[0]
    return math.inf


def host_budget() -> float:
    """Bytes of decoded images (:class:`~scenarios.pixels.Pixels`) a run reads into host
    memory at once: ``$DALIB_HOST_MEMORY`` when set, else a quarter of the machine's memory;
    larger sets are read a batch at a time from their (memory-mapped) arrays."""
    if os.environ.get("DALIB_HOST_MEMORY"):
        return float(os.environ["DALIB_HOST_MEMORY"])
    try:
        return 0.25 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4e9


class Placement:
    """Where a run's domains live: on the device while their inputs fit the budget
    (:func:`memory_budget`), else inputs on the host (pinned for CUDA) with labels on the
    device; a :class:`Sampler` gathers host batches and copies them over."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.left = memory_budget(device)
        self.host = host_budget()

    def __call__(self, domain: Domain) -> Domain:
        size = domain.x.element_size() * domain.x.nelement()
        lazy = isinstance(domain.x, Pixels)
        if size <= self.left and (not lazy or not domain.x.streamed and size <= self.host):
            self.left -= size
            if lazy:
                self.host -= size
            return domain.to(self.device)
        x = domain.x.cpu()  # images too large to read at once stay unread (Pixels)
        if self.device.type == "cuda":
            x = x.pin_memory()

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(self.device)

        return domain.with_(x=x, y=move(domain.y), task=move(domain.task),
                            env=move(domain.env))


class Sampler:
    """Endless shuffled mini-batches of a domain (a new permutation each epoch): index gathers
    on the device, or for inputs held on the host (:class:`Placement`) a gather into one of
    two pinned buffers and a non-blocking copy, with the same permutation either way."""

    def __init__(self, domain: Domain, batch_size: int, generator: torch.Generator,
                 labelled: bool = True) -> None:
        self.domain = domain if labelled else domain.unlabelled()
        self.x, self.task, self.env = domain.x, domain.task, domain.env
        self.y = domain.y if labelled else None
        self.device = domain.y.device if domain.y is not None else domain.x.device
        self.host = self.x.device != self.device
        self.n = len(domain)
        self.batch_size = min(batch_size, self.n)
        self.generator = generator
        self._perm = torch.empty(0, dtype=torch.long)
        self._perm_x = self._perm
        self._pos = self.n
        self._buffers: list[tuple[torch.Tensor, torch.cuda.Event | None]] = []

    def next(self) -> Batch:
        if self._pos + self.batch_size > self.n:
            perm = torch.randperm(self.n, generator=self.generator)
            self._perm, self._perm_x = perm.to(self.device), perm.to(self.x.device)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + self.batch_size]
        x = self._gather(self._perm_x[self._pos:self._pos + self.batch_size])
        self._pos += self.batch_size
        if isinstance(self.x, Pixels) and self._pos + self.batch_size <= self.n:
            self.x.prefetch(self._perm_x[self._pos:self._pos + self.batch_size])  # files
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx]

        return Batch(x, pick(self.y), pick(self.task), pick(self.env))

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        if not self.host:
            return self.x[idx]
        if self.device.type != "cuda":
            return self.x[idx].to(self.device)
        if len(self._buffers) < 2:  # double buffering: gather one while the other copies
            shape = (self.batch_size, *self.x.shape[1:])
            self._buffers.append((torch.empty(shape, dtype=self.x.dtype).pin_memory(), None))
        buffer, done = self._buffers.pop(0)
        if done is not None:
            done.synchronize()  # its last copy has left the buffer
        if isinstance(self.x, Pixels):
            buffer.copy_(self.x[idx])
        else:
            torch.index_select(self.x, 0, idx, out=buffer)
        out = buffer.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._buffers.append((buffer, event))
        return out


def progress(total: int, desc: str) -> tqdm:
    """A progress bar on a terminal, silent otherwise and in worker processes (which set
    ``DALIB_NO_PROGRESS``)."""
    quiet = not sys.stdout.isatty() or bool(os.environ.get("DALIB_NO_PROGRESS"))
    return tqdm(total=total, desc=desc, leave=False, disable=quiet)


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model`` in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.inference_mode()
def predict_logits(method, domain: Domain, task_id: int | None = None,
                   batch_size: int = 4096, fn: Callable | None = None) -> torch.Tensor:
    """Logits of ``method.predict`` (or of ``fn(method, x, task)``) on a domain (every sample
    of task ``task_id`` when given), in eval mode and large batches, returned on the CPU."""
    fn = fn or (lambda m, x, task: m.predict(x, task))
    device = next(method.model.parameters()).device
    logits = []
    # chunks of at most 256 MB of inputs (large images), whichever path holds them
    per_sample = 4 * int(math.prod(domain.x.shape[1:]))
    batch_size = min(batch_size, max(64, (256 << 20) // max(per_sample, 1)))
    with eval_mode(method.model):
        for start in range(0, len(domain), batch_size):
            x = domain.x[start:start + batch_size].to(device)
            task = None if task_id is None else torch.full((len(x),), task_id, device=device)
            logits.append(fn(method, x, task).float().cpu())
    return torch.cat(logits)


def accuracy(method, domain: Domain, task_id: int | None = None, batch_size: int = 4096,
             ) -> float:
    """Accuracy (%) of ``method.predict`` on a labelled domain; NaN or infinite outputs raise
    ``FloatingPointError`` (a diverged model has no accuracy)."""
    logits = predict_logits(method, domain, task_id, batch_size)
    finite = torch.isfinite(logits)
    if not finite.all() and not (logits[~finite] == float("-inf")).all():  # -inf: masked classes
        raise FloatingPointError(f"the model's outputs on {domain.name!r} are NaN or infinite: "
                                 "the run diverged")
    correct = int((logits.argmax(1) == domain.y.cpu()).sum())
    return 100.0 * correct / len(domain)


@dataclass
class Budget:
    """Training length: ``steps``, or ``epochs`` over a reference set, and the batch size."""

    epochs: float | None = None
    steps: int | None = None
    batch_size: int = 64
    checkpoints: int = 10

    def steps_for(self, n: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil((self.epochs or 1) * n / self.batch_size))

    def single_pass(self, n: int) -> int:
        """The batches of one pass over ``n`` samples in a task-free stream (:mod:`dalib.
        taskfree`): ``n // batch_size`` (at least 1), the remainder spread over them, so no
        batch holds one sample (which batch norm cannot train on)."""
        return max(1, n // self.batch_size)


def planned_steps(data: TransferScenario | Stream, budget: Budget) -> int:
    """The steps a run on ``data`` trains for: over the source of a transfer scenario, summed
    over the tasks of a stream (methods that pretrain before fine-tuning train longer)."""
    if isinstance(data, Stream) and data.online:  # one pass (dalib.taskfree)
        return sum(budget.single_pass(len(t.train)) for t in data.tasks)
    if isinstance(data, Stream):
        return sum(budget.steps_for(len(t.train)) for t in data.tasks)
    return budget.steps_for(len(data.source))


LOG_EVERY = 50  # steps between logged losses unless the budget's log_every says otherwise


class Trace:
    """Losses kept as device tensors every ``log_every`` steps, read back once at the end.

    Divergence is watched without a host sync per step: every step's loss ORs a non-finite
    flag kept on the device, which :meth:`check` reads at each log step, at the end of
    training (each task of a stream) and before every evaluation."""

    def __init__(self, log_every: int = LOG_EVERY,
                 on_log: Callable[[int, dict[str, torch.Tensor]], None] | None = None) -> None:
        self.log_every = log_every
        self.on_log = on_log  # sees each log step's values (live loggers)
        self.steps: list[int] = []
        self.values: dict[str, list[torch.Tensor]] = {}
        self.bad: torch.Tensor | None = None
        self.last_step = -1
        self._interval: torch.Tensor | None = None  # the loss summed since the last mark
        self._steps = 0
        self.marks: list[torch.Tensor] = []  # the mean loss of each checkpoint interval

    def log(self, step: int, logs: dict[str, torch.Tensor]) -> None:
        """Keep ``logs`` (scalars, or one value per run of a pack) every ``log_every`` steps;
        a single run's trace raises there if its loss has diverged (a pack's loop asks
        :meth:`diverged` instead). Every step's loss also adds to the current checkpoint
        interval's mean (:meth:`mark`)."""
        loss = logs.get("loss")
        if loss is not None:
            flag = ~torch.isfinite(loss.detach())
            self.bad = flag if self.bad is None else self.bad | flag
            value = loss.detach().float()
            self._interval = value if self._interval is None else self._interval + value
            self._steps += 1
        self.last_step = step
        if step % self.log_every:
            return
        self.steps.append(step)
        for k, v in logs.items():
            self.values.setdefault(k, []).append(v.detach().float())
        if self.on_log is not None:
            self.on_log(step, logs)
        if self.bad is None or self.bad.dim() == 0:
            self.check()

    def last(self, name: str = "loss") -> float | None:
        """The latest logged mean of ``name`` (a host sync)."""
        values = self.values.get(name)
        return None if not values else float(values[-1].mean())

    def diverged(self) -> list[bool]:
        """Per run of a pack: whether its loss has been NaN or infinite (a host sync)."""
        return [] if self.bad is None else self.bad.tolist()

    def divergence(self) -> str:
        return f"the loss became NaN or infinite by step {self.last_step}: the run diverged"

    def check(self, model: torch.nn.Module | None = None) -> None:
        """Raise ``FloatingPointError`` if a loss so far, or a weight or buffer of ``model``,
        is NaN or infinite (the run diverged)."""
        if self.bad is not None and bool(self.bad.any()):
            raise FloatingPointError(self.divergence())
        if model is not None:
            check_weights(model, self.last_step)

    def mark(self) -> None:
        """Close a checkpoint interval: keep the mean training loss of its steps (on the
        device, read back by :meth:`interval_losses`)."""
        if self._interval is not None:
            self.marks.append(self._interval / self._steps)
        self._interval, self._steps = None, 0

    def interval_losses(self, run: int | None = None) -> list[float]:
        """The mean training loss of each checkpoint interval (of run ``run`` of a pack)."""
        if not self.marks:
            return []
        values = torch.stack(self.marks)
        return (values if run is None else values[:, run]).cpu().tolist()

    def to_dict(self, run: int | None = None) -> dict[str, list[float]]:
        """The kept curves (of run ``run`` of a pack)."""
        out: dict[str, list] = {"step": self.steps}
        for k, v in self.values.items():
            values = torch.stack(v)
            out[k] = (values if run is None else values[:, run]).cpu().tolist()
        return out


def check_weights(model: torch.nn.Module, step: int) -> None:
    """Raise ``FloatingPointError`` if a weight or buffer of ``model`` is NaN or infinite."""
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
        raise FloatingPointError(f"the model's weights are NaN or infinite after step "
                                 f"{step}: the run diverged")


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def check_logs(logs: dict, lead_dims: int) -> None:
    """What ``update`` returned is one loss value per run: a dict of scalar tensors (one
    value per run of a pack, ``lead_dims = 1``); a loss or term that kept the batch
    dimension raises ``ValueError`` naming it (the run is recorded failed)."""
    if not isinstance(logs, dict):
        raise ValueError(f"update() returned {type(logs).__name__}, expected a dict of loss "
                         "tensors")
    for name in sorted(logs, key=lambda n: n == "loss"):  # a term before the total it makes
        value = logs[name]
        if not isinstance(value, torch.Tensor) or value.dim() != lead_dims:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"the loss {name!r} is {shape}, expected a scalar tensor per run "
                             "(a term or loss reduces over the batch, e.g. with .mean())")


def checkpoint_due(step: int, steps: int, checkpoints: int) -> bool:
    """Whether a checkpoint follows step ``step`` (from 0) of ``steps``: ``checkpoints`` of
    them, evenly spaced, the last after the final step."""
    every = max(1, steps // max(1, checkpoints))
    return (step + 1) % every == 0 or step + 1 == steps


def train_steps(method, samplers: dict[str, Sampler], steps: int, trace: Trace, offset: int,
                desc: str, checkpoint: Callable[[int], None] | None = None,
                checkpoints: int = 0, *, on_log: Callable[[], None] | None = None,
                settle: Callable[[], None] | None = None) -> None:
    """The step loop of one run or of a pack (:class:`dalib.pack.train.Pack`): ``steps``
    calls of ``method.update`` on the samplers' batches (under autocast at the method's
    ``precision``), each step's losses to ``trace``, the latest loss on the progress bar
    every ``log_every`` steps, where ``on_log`` is called too. Before each of ``checkpoints``
    calls of ``checkpoint(step)`` and at the end, ``settle`` (default: check the model for
    divergence) makes the model ready to be read."""
    settle = settle or (lambda: trace.check(method.model))
    method.model.train()
    dtype = PRECISIONS[getattr(method, "precision", "fp32")]
    device_type = next(method.model.parameters()).device.type
    with progress(steps, desc) as bar:
        for step in range(steps):
            with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
                logs = method.update({name: s.next() for name, s in samplers.items()})
            if step == 0:
                check_logs(logs, getattr(method, "lead_dims", 0))
            trace.log(offset + step, logs)
            if (offset + step) % trace.log_every == 0:
                if on_log is not None:
                    on_log()
                if not bar.disable:
                    bar.set_postfix(loss=f"{trace.last():.4g}", refresh=False)
            bar.update()
            if checkpoint is not None and checkpoint_due(step, steps, checkpoints):
                settle()
                trace.mark()
                checkpoint(step + 1)
                method.model.train()
    settle()


def transfer_samplers(method, scenario: TransferScenario, budget: Budget, device: torch.device,
                      seed: int) -> tuple[dict[str, Sampler], int]:
    """The method's samplers (one generator seeded with ``seed``, feeds in ``needs`` order)
    and its number of steps; sets the method's budget and calls its ``prepare``."""
    seen = scenario.target_data != "none"  # domain generalization: no target data at all
    feeds = {"source": (scenario.source, True),
             "target": (scenario.target_train if seen else None, False),
             "target_labelled": (scenario.target_labelled, True),
             "target_oracle": (scenario.target_train, True)}
    generator = torch.Generator().manual_seed(seed)
    place = Placement(device)
    samplers = {}
    optional = [n for n in getattr(method, "optional_needs", ()) if feeds[n][0] is not None]
    for need in dict.fromkeys([*method.needs, *optional]):
        domain, labelled = feeds[need]
        if domain is None:
            raise ValueError(f"{method.name} needs labelled target samples: set k >= 1"
                             if seen else f"{method.name} needs target data, which "
                             "target_data = 'none' withholds")
        samplers[need] = Sampler(place(domain), budget.batch_size, generator, labelled)
    steps = planned_steps(scenario, budget)
    method.total_steps = steps
    method.prepare({need: samplers[need].domain for need in samplers})
    return samplers, steps


def fit_transfer(method, scenario: TransferScenario, budget: Budget, device: torch.device,
                 seed: int, trace: Trace, checkpoint: Callable[[int], None] | None = None,
                 threads: int | None = None) -> int:
    """Train ``method`` on what it needs of the scenario (and on its ``optional_needs`` where
    the scenario has them); every method gets the same number of
    steps (``epochs`` count passes over the source). ``checkpoint(step)`` is called
    ``budget.checkpoints`` times, evenly spaced, the last after the final step. Trains with
    ``threads`` torch threads (default: ``dalib run``'s,
    :func:`~dalib.settings.default_threads`). Returns the steps."""
    with torch_threads(threads):
        samplers, steps = transfer_samplers(method, scenario, budget, device, seed)
        train_steps(method, samplers, steps, trace, 0, method.name, checkpoint,
                    budget.checkpoints)
    return steps


def ready_for_evaluation(method) -> None:
    """Let a method that prepares itself for evaluation do so (``before_eval``: GDumb trains
    on its memory)."""
    if hasattr(method, "before_eval"):
        method.before_eval()


def stream_row(method, stream: Stream, validation: list[list[float]] | None = None
               ) -> list[float]:
    """One row of the accuracy matrix: ``method``'s accuracy on each task's test part (with
    the task's id under task-IL); where every task has a validation part, the same row
    measured on it is appended to ``validation``; the method is
    :func:`ready_for_evaluation` first."""
    ready_for_evaluation(method)
    tasks = stream.tasks
    ids = [t.id if stream.protocol == "task-il" else None for t in tasks]
    if validation is not None and all(t.val is not None for t in tasks):
        validation.append([accuracy(method, t.val, tid) for t, tid in zip(tasks, ids, strict=True)])
    return [accuracy(method, t.test, tid) for t, tid in zip(tasks, ids, strict=True)]


def seen_outputs(stream: Stream, index: int, device: torch.device) -> torch.Tensor | None:
    """The outputs a class-IL model trains and is evaluated on from task ``index`` on
    (:meth:`~scenarios.stream.Stream.active_mask`), on the device; None for all."""
    mask = stream.active_mask(index)
    return None if mask is None else mask.to(device)


def fit_stream(method, stream: Stream, budget: Budget, device: torch.device, seed: int,
               trace: Trace, validation: list[list[float]] | None = None,
               threads: int | None = None) -> np.ndarray:
    """Train task after task and return the accuracy matrix ``R`` (percent).

    ``R[0, j]`` is the accuracy on task ``j`` before training; ``R[i, j]`` after training
    tasks ``0 .. i-1``. With tasks that hold a validation part, ``validation`` receives the
    same rows measured on it (for model selection). A ``joint`` method trains once on all
    tasks (with the summed budget), so its matrix has two rows: before and after. Trains
    with ``threads`` torch threads (default: ``dalib run``'s,
    :func:`~dalib.settings.default_threads`).
    """
    with torch_threads(threads):
        return _fit_stream(method, stream, budget, device, seed, trace, validation)


def _fit_stream(method, stream: Stream, budget: Budget, device: torch.device, seed: int,
                trace: Trace, validation: list[list[float]] | None) -> np.ndarray:
    method.class_mask = None if stream.class_mask() is None else stream.class_mask().to(device)
    generator = torch.Generator().manual_seed(seed)
    tasks = stream.tasks
    rows = [stream_row(method, stream, validation)]
    sizes = (method.task_sizes(tasks) if hasattr(method, "task_sizes")
             else [len(t.train) for t in tasks])
    method.total_steps = sum(budget.steps_for(n) for n in sizes)
    if getattr(method, "joint", False):
        data = Placement(device)(concat([t.train for t in tasks], f"{stream.name}/joint"))
        steps = method.total_steps
        train_steps(method, {"train": Sampler(data, budget.batch_size, generator)}, steps,
                    trace, 0, method.name)
        rows.append(stream_row(method, stream, validation))
        return np.array(rows)
    offset = 0
    for index, task in enumerate(tasks):
        if method.reset_optimizer:
            method.optimizer.state.clear()
        if not hasattr(method, "train_task"):  # Avalanche's bridge trains every output
            method.active = seen_outputs(stream, index, device)
        method.before_task(task)
        steps = budget.steps_for(sizes[index])
        if hasattr(method, "train_task"):  # a bridge that trains whole tasks itself
            method.train_task(stream, index, steps, budget.batch_size)
            trace.check(method.model)
        else:
            data = method.task_data(task) if hasattr(method, "task_data") else task.train
            train_steps(method, {"train": Sampler(Placement(device)(data),
                                                  budget.batch_size, generator)},
                        steps, trace, offset, f"{method.name} task {task.id}")
        offset += steps
        method.after_task(task)
        rows.append(stream_row(method, stream, validation))
    return np.array(rows)
