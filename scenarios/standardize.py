"""Standardised inputs: zero mean and unit variance per feature (per channel for images),
with statistics fitted on training inputs only.

``source``: the statistics of the source training part (for a stream, of its first task's
training part) standardise every part of every domain, the target's included, as a model
deployed on the target would; ``per-domain``: each domain (each task of a stream) with the
statistics of its own training inputs (the target's unlabelled training inputs: a
transductive choice); ``none``: the inputs as read. Tables are standardised by default
(``source``): raw feature scales (an alcohol content in percent beside a proline content in
the hundreds) cripple every method alike, the target-label upper bound included. Images are
not, by default: their pixels already share one scale.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from scenarios.domain import Domain
from scenarios.stream import Stream, Task
from scenarios.transfer import TransferScenario

MODES = ("source", "per-domain", "none")


def statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation per feature (dimension 1) over every other dimension; a
    constant feature gets 1, so it maps to 0."""
    dims = [0] + list(range(2, x.dim()))
    mean, std = x.float().mean(dims, keepdim=True), x.float().std(dims, keepdim=True)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def standardized(domain: Domain | None, stats: tuple[torch.Tensor, torch.Tensor]
                 ) -> Domain | None:
    """``domain`` with its inputs standardised by ``stats`` (:func:`statistics`)."""
    if domain is None:
        return None
    mean, std = stats
    return domain.with_(x=(domain.x.float() - mean) / std)


def standardize_transfer(scenario: TransferScenario, mode: str) -> TransferScenario:
    """The scenario with standardised inputs (see the module doc for ``mode``)."""
    if mode == "none":
        return scenario
    source = statistics(scenario.source.x)
    target = source if mode == "source" else statistics(scenario.target_train.x)
    return replace(scenario, source=standardized(scenario.source, source),
                   source_val=standardized(scenario.source_val, source),
                   source_test=standardized(scenario.source_test, source),
                   target_train=standardized(scenario.target_train, target),
                   target_test=standardized(scenario.target_test, target),
                   target_labelled=standardized(scenario.target_labelled, target))


def standardize_stream(stream: Stream, mode: str) -> Stream:
    """The stream with standardised inputs: ``source`` fits on the first task's training
    part, ``per-domain`` on each task's own."""
    if mode == "none":
        return stream
    first = statistics(stream.tasks[0].train.x)
    tasks = []
    for task in stream.tasks:
        stats = first if mode == "source" else statistics(task.train.x)
        tasks.append(Task(task.id, standardized(task.train, stats),
                          standardized(task.test, stats), task.classes,
                          standardized(task.val, stats)))
    return replace(stream, tasks=tuple(tasks))
