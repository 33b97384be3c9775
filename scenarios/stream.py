"""Streams of tasks for continual learning, under the task-, domain- or class-incremental protocol.

* ``split``: the classes are cut into groups, one task each (Split MNIST: 5 x 2 classes).
* ``permuted``: task 0 is the data as is, every later task a fixed pixel permutation of it.
* ``rotated``: one task per angle.
* ``domains``: one task per domain (classes stay, the domain moves).
* ``task-array``: the ``task`` field of an ``.npz`` file says which task a sample is in.

Protocols (van de Ven & Tolias 2019): ``task-il`` gives the task id at test time (the model's
outputs are masked to the task's classes, equivalent to one head per task); ``class-il`` asks
for the class among all seen; ``domain-il`` keeps the output space fixed across tasks (for a
``split`` stream the label becomes the class's position within its task, e.g. odd / even).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from scenarios import checks
from scenarios.datasets import stratified_split
from scenarios.domain import Domain, concat
from scenarios.errors import InputError
from scenarios.shifts import permute, rotate
from scenarios.transfer import shifted_split

PROTOCOLS = ("task-il", "domain-il", "class-il")
STREAMS = ("split", "permuted", "rotated", "domains", "task-array")


@dataclass(frozen=True)
class Task:
    id: int
    train: Domain
    test: Domain
    classes: tuple[int, ...]
    val: Domain | None = None  # held out of train (val_fraction): for model selection only


@dataclass(frozen=True)
class Stream:
    name: str
    tasks: tuple[Task, ...]
    protocol: str
    classes: tuple[str, ...]
    outputs: str = "seen"
    # task-free: one pass over the tasks' samples in order, boundaries never announced, the
    # model evaluated ``anytime`` times per task (see dalib.taskfree)
    online: bool = False
    anytime: int = 4

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.tasks[0].train.input_shape

    def class_mask(self) -> torch.Tensor | None:
        """(tasks x classes) bool: the outputs each task may use (task-IL only, else None)."""
        if self.protocol != "task-il":
            return None
        mask = torch.zeros(len(self.tasks), self.num_classes, dtype=torch.bool)
        for t in self.tasks:
            mask[t.id, list(t.classes)] = True
        return mask


    def active_mask(self, index: int) -> torch.Tensor | None:
        """(classes,) bool: the outputs trained and evaluated while and after training task
        ``index`` under class-IL with ``outputs = "seen"`` (the classes of tasks 0 ..
        ``index``, as Hsu et al. 2018 and van de Ven et al. 2022 do); None otherwise (every
        output)."""
        if self.protocol != "class-il" or self.outputs != "seen":
            return None
        mask = torch.zeros(self.num_classes, dtype=torch.bool)
        for t in self.tasks[:index + 1]:
            mask[list(t.classes)] = True
        return mask


def _tagged(domain: Domain, task_id: int) -> Domain:
    return domain.with_(task=torch.full((len(domain),), task_id, dtype=torch.long))


def _task(task_id: int, train: Domain, test: Domain, stream: str) -> Task:
    for part in (train, test):
        if len(part) == 0:
            raise InputError("tasks", f"task {task_id} of the {stream!r} stream has an empty "
                             f"{'train' if part is train else 'test'} set",
                             expected="samples in every task")
    classes = tuple(int(c) for c in torch.unique(torch.cat([train.y, test.y])).tolist())
    return Task(task_id, _tagged(train, task_id), _tagged(test, task_id), classes)


def class_groups(num_classes: int, tasks: int | None, classes: list[list[int]] | None,
                 ) -> list[list[int]]:
    if classes is not None:
        flat = [c for g in classes for c in g]
        if len(set(flat)) != len(flat) or not all(0 <= c < num_classes for c in flat) or \
                not all(classes):
            raise InputError("classes", f"is {classes}",
                             expected=f"disjoint non-empty groups of labels in [0, {num_classes})")
        return [list(g) for g in classes]
    tasks = 5 if tasks is None else tasks
    if not 2 <= tasks <= num_classes:
        raise InputError("tasks", f"is {tasks}", expected=f"2..{num_classes} (the number of "
                         "classes) for a split stream")
    return [list(g) for g in np.array_split(np.arange(num_classes), tasks)]


def blur(tasks: list[Task], percent: float, rng: np.random.Generator) -> list[Task]:
    """Blurry task boundaries (Bang et al., "Rainbow Memory", CVPR 2021: Blurry-M): each
    training sample moves, with probability ``percent`` / 100, to another task drawn
    uniformly, so every task's training part mixes in samples of the others' classes. Test
    parts stay as they are; each sample keeps the id of the task it came from."""
    if not percent:
        return tasks
    owner = [np.full(len(t.train), i) for i, t in enumerate(tasks)]
    for i, o in enumerate(owner):
        moved = rng.random(len(o)) < percent / 100
        others = rng.integers(0, len(tasks) - 1, int(moved.sum()))
        o[moved] = others + (others >= i)  # a task other than i
    out = []
    for i, t in enumerate(tasks):
        parts = [tasks[j].train.subset(np.flatnonzero(owner[j] == i)) for j in range(len(tasks))]
        train = concat([p for p in parts if len(p)], t.train.name)
        out.append(Task(t.id, train, t.test, t.classes, t.val))
    return out


def build_stream(name: str, kind: str, domains: list[Domain], *, seed: int, protocol: str | None = None,
                 tasks: int | None = None, classes: list[list[int]] | None = None,
                 angles: list[float] | None = None, shifts: list[list[dict]] | None = None,
                 test_fraction: float = 0.2, val_fraction: float = 0.0,
                 outputs: str = "seen", online: bool = False, blurry: float = 0.0,
                 anytime: int = 4) -> Stream:
    """Build a stream for one seed.

    ``domains`` holds one domain, or one per task for the ``domains`` kind; ``shifts`` holds
    one list of shift specs per domain. ``online``: a task-free single pass (``anytime``
    evaluations per task), with ``blurry`` percent of each task's training samples moved to
    other tasks (:func:`blur`).
    """
    classes, angles = checks.plain(classes), checks.plain(angles)
    if kind not in STREAMS:
        raise InputError("stream", f"is {kind!r}", expected=f"one of {', '.join(STREAMS)}")
    protocol = protocol or ("class-il" if kind == "split" else "domain-il")
    if protocol not in PROTOCOLS:
        raise InputError("protocol", f"is {protocol!r}", expected=f"one of {', '.join(PROTOCOLS)}")
    rng = np.random.default_rng(seed)
    if kind != "domains" and len(domains) != 1:
        raise InputError("data", f"{kind!r} streams take one data table",
                         expected="data = {dataset = ...} (domains = [...] is for kind 'domains')")
    splitter = split_by_task if kind == "task-array" else None
    shifts = shifts or [[] for _ in domains]
    parts = []
    for i, (d, s) in enumerate(zip(domains, shifts, strict=True)):
        try:
            parts.append(shifted_split(d, list(s), test_fraction, rng, splitter))
        except InputError as exc:
            raise exc.within("", f"domains[{i}]" if kind == "domains" else "data") from None
    class_names = domains[0].classes
    out: list[Task] = []
    if kind == "split":
        train, test = parts[0]
        groups = class_groups(train.num_classes, tasks, classes)
        for i, group in enumerate(groups):
            sel = [torch.nonzero(torch.isin(d.y, torch.as_tensor(group))).flatten()
                   for d in (train, test)]
            tr, te = train.subset(sel[0]), test.subset(sel[1])
            if protocol == "domain-il":
                lookup = torch.full((train.num_classes,), -1, dtype=torch.long)
                lookup[torch.as_tensor(group)] = torch.arange(len(group))
                tr, te = tr.with_(y=lookup[tr.y]), te.with_(y=lookup[te.y])
            out.append(_task(i, tr, te, kind))
        if protocol == "domain-il":
            width = max(len(g) for g in groups)
            class_names = tuple(f"position {j}" for j in range(width))
            out = [Task(t.id, t.train.with_(classes=class_names),
                        t.test.with_(classes=class_names), t.classes) for t in out]
    elif kind == "permuted":
        train, test = parts[0]
        for i in range(10 if tasks is None else tasks):
            if i == 0:
                out.append(_task(0, train, test, kind))
                continue
            perm_seed = int(rng.integers(2**31))
            out.append(_task(i, permute(train, rng, perm_seed), permute(test, rng, perm_seed), kind))
    elif kind == "rotated":
        train, test = parts[0]
        for i, angle in enumerate(angles if angles is not None else [0, 30, 60, 90, 120, 150]):
            out.append(_task(i, rotate(train, rng, angle), rotate(test, rng, angle), kind))
    elif kind == "domains":
        if len(domains) < 2:
            raise InputError("domains", f"has {len(domains)} entry", expected="two or more domains")
        for i, (train, test) in enumerate(parts):
            if train.input_shape != parts[0][0].input_shape or train.num_classes != len(class_names):
                raise InputError(f"domains[{i}]", f"{domains[i].name!r} has shape "
                                 f"{train.input_shape} and {train.num_classes} classes",
                                 expected=f"shape {parts[0][0].input_shape} and "
                                          f"{len(class_names)} classes, like domains[0]")
            out.append(_task(i, train, test, kind))
    else:  # task-array
        train, test = parts[0]
        ids = torch.unique(domains[0].task).tolist()
        for i, t in enumerate(ids):
            out.append(_task(i, train.subset(torch.nonzero(train.task == t).flatten()),
                             test.subset(torch.nonzero(test.task == t).flatten()), kind))
    if kind in ("permuted", "rotated") and len(out) < 2:
        raise InputError("tasks", f"gives {len(out)} task", expected="two or more tasks")
    if val_fraction:  # a stratified validation part of each task's training data
        held = []
        for t in out:
            rest, part = stratified_split(t.train.y.numpy(), val_fraction, rng)
            held.append(Task(t.id, t.train.subset(rest), t.test, t.classes,
                             t.train.subset(part, f"{t.train.name}/val")))
        out = held
    out = blur(out, blurry, rng)
    return Stream(name=name, tasks=tuple(out), protocol=protocol, classes=class_names,
                  outputs=outputs, online=online, anytime=anytime)


def split_by_task(domain: Domain, test_fraction: float, rng: np.random.Generator,
                  ) -> tuple[Domain, Domain]:
    """Train/test split stratified by (task, class), for streams given by a task array."""
    if domain.task is None:
        raise InputError("task", "missing", expected="an array named task in the .npz file "
                                                      "(one task id per sample)")
    strata = (domain.task * domain.num_classes + domain.y).numpy()
    train, test = stratified_split(strata, test_fraction, rng)
    return domain.subset(train), domain.subset(test)
