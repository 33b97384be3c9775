"""Which runs of a sweep train together: runs of one scenario and method whose settings
differ only in the seed and in hyperparameters a pack holds per run (learning rate, weight
decay, loss weights and the method's own ``per_run`` ones)."""

from __future__ import annotations

import json

from dalib.registry import TERMS, check_method
from dalib.runspec import RunSpec

AUTO = 64  # the largest pack ``--pack auto`` forms

OPTIM_PER_RUN = ("lr", "weight_decay")


def pack_key(run: RunSpec) -> str:
    """Runs with equal keys may train as one pack (a test-time scenario's source runs: each
    its own key, they train one at a time)."""
    if run.saves_model:
        return run.run_id
    entry = check_method(run.method.name, run.params, run.kind)
    params = entry.resolved(run.params)
    free = {*OPTIM_PER_RUN, *entry.cls.per_run}
    if len(entry.terms) == 1:
        free |= set(TERMS[entry.terms[0]].cls.per_run)
    kept = {k: v for k, v in params.items() if k not in free}
    for t in entry.terms if len(entry.terms) > 1 else ():
        kept[t] = {k: v for k, v in params[t].items() if k not in TERMS[t].cls.per_run}
    return json.dumps([run.scenario.name, run.method.name, kept], sort_keys=True, default=str)


def plan(runs: list[RunSpec], size: int) -> list[list[RunSpec]]:
    """The runs in units of at most ``size`` runs that may pack (in the order of their
    first run); ``size = 1``: one unit per run."""
    if size <= 1:
        return [[run] for run in runs]
    groups: dict[str, list[RunSpec]] = {}
    for run in runs:
        groups.setdefault(pack_key(run), []).append(run)
    return [group[i:i + size] for group in groups.values()
            for i in range(0, len(group), size)]
