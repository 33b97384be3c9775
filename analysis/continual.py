"""Continual-learning metrics from an accuracy matrix.

``R`` has shape ``(T + 1, T)``: ``R[0, j]`` is the accuracy on task ``j`` before any training
(the random-init baseline ``b_j``), ``R[i, j]`` the accuracy on task ``j`` after training tasks
``0 .. i-1``. Task ``j`` is learned at row ``j + 1``; the last row is the final model.
ACC, BWT and FWT follow Lopez-Paz & Ranzato (2017); forgetting and intransigence follow
Chaudhry et al. (2018). Values are in the units of ``R`` (percent in dalib's records).
"""

from __future__ import annotations

import numpy as np


def _check(R) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1] + 1 or R.shape[1] < 1:
        raise ValueError(f"accuracy matrix has shape {R.shape}, expected (T + 1, T) with row 0 "
                         "measured before training")
    return R


def average_accuracy(R) -> float:
    """ACC = mean_j R[T, j]: accuracy on all tasks after the last one."""
    return float(_check(R)[-1].mean())


def backward_transfer(R) -> float:
    """BWT = mean_{j < T-1} (R[T, j] - R[j+1, j]); negative means forgetting."""
    R = _check(R)
    T = R.shape[1]
    if T < 2:
        return float("nan")
    return float(np.mean([R[T, j] - R[j + 1, j] for j in range(T - 1)]))


def forward_transfer(R) -> float:
    """FWT = mean_{j >= 1} (R[j, j] - R[0, j]): accuracy on a task before training on it,
    against the untrained model."""
    R = _check(R)
    T = R.shape[1]
    if T < 2:
        return float("nan")
    return float(np.mean([R[j, j] - R[0, j] for j in range(1, T)]))


def forgetting(R) -> float:
    """Average forgetting: mean over ``j < T-1`` of the best accuracy on ``j`` at any row after
    it was learned and before the end, minus its final accuracy."""
    R = _check(R)
    T = R.shape[1]
    if T < 2:
        return float("nan")
    return float(np.mean([R[j + 1:T, j].max() - R[T, j] for j in range(T - 1)]))


def intransigence(R, reference) -> float:
    """Mean over tasks of ``reference[j] - R[j+1, j]``: how much less the learner knows of a task
    right after learning it than a reference model (dalib uses the ``joint`` run of the same
    scenario and seed, i.e. the joint model's final accuracy per task)."""
    R = _check(R)
    reference = np.asarray(reference, dtype=float)
    if reference.shape != (R.shape[1],):
        raise ValueError(f"reference has shape {reference.shape}, expected ({R.shape[1]},)")
    return float(np.mean(reference - np.diag(R[1:])))


FWT_UNDEFINED = ("undefined under class-IL: a task's classes are new to the model before it "
                 "is trained on them, so its accuracy there is ~0 for every method")


def fwt_defined(protocol: str, task_classes: list[list[int]]) -> bool:
    """Whether FWT measures anything: not under class-IL when a later task brings classes no
    earlier task had (an untrained output cannot predict them, whatever the method)."""
    if protocol != "class-il":
        return True
    seen: set[int] = set()
    for j, classes in enumerate(task_classes):
        if j and not set(classes) <= seen:
            return False
        seen |= set(classes)
    return True


def summarize(R, protocol: str, task_classes: list[list[int]] | None = None
              ) -> dict[str, float]:
    """ACC, BWT, FWT and forgetting of one accuracy matrix of a stream run under ``protocol``
    (``task-il``, ``domain-il`` or ``class-il``). FWT is NaN where it measures nothing
    (:func:`fwt_defined`; under class-IL without ``task_classes`` each task is taken to
    bring new classes, as in Split streams)."""
    if protocol not in ("task-il", "domain-il", "class-il"):
        raise ValueError(f"protocol is {protocol!r}, expected task-il, domain-il or class-il")
    fwt = protocol != "class-il" if task_classes is None else fwt_defined(protocol, task_classes)
    return {"acc": average_accuracy(R), "bwt": backward_transfer(R),
            "fwt": forward_transfer(R) if fwt else float("nan"), "forgetting": forgetting(R)}
