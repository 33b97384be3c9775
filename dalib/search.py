"""Hyperparameter search: spaces in a suite's method tables become configurations, and each
scenario, method and seed gets the configuration an unsupervised criterion selects among the
finished runs (never target test labels).

A hyperparameter is a space when it is a list (each value a grid point, or a choice for random
search) or a one-key table: ``{ log_uniform = [lo, hi] }``, ``{ uniform = [lo, hi] }``,
``{ int_uniform = [lo, hi] }``, ``{ choice = [...] }``. Term tables of a combination may hold
spaces too (``{ name = "dann+mcc", mcc = { weight = [0.1, 1.0] } }``). A ``[search]`` table
(suite-wide, or ``search = {...}`` per scenario) sets ``kind`` (``grid``, or ``random`` with
``trials`` configurations drawn with ``seed``: the same ones for every run seed), ``select``
(the criterion: ``bnm`` by default, as for checkpoints; ``dev``, ``snd``, ``entropy``,
``source-val``, ``im`` or ``iwcv``, see :mod:`dalib.selection`) and ``level`` (``seed``:
each seed picks its own configuration; ``mean``: one configuration for all seeds, by the
criterion averaged over seeds).

Each configuration x seed is a run labelled ``name[key=value,...]``; the selection adds rows
under the method's own label: ``target_acc`` and ``source_acc`` of the selected configuration's
selected checkpoint, ``selected_trial`` (its index), ``target_acc_oracle_hp`` (the best
configuration by target test accuracy: an upper bound, never a result) and
``selection_regret`` (oracle minus selected). A stream scenario needs ``val_fraction`` (a
validation part of each task's training data): its configurations are chosen by the final
accuracy on those parts, and the rows are the chosen run's ACC, BWT, FWT and forgetting, with
``acc_oracle_hp`` and ``selection_regret``.
"""

from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np

from dalib.domain_validation import lodo_picks
from dalib.selection import HIGHER_IS_BETTER, pick
from scenarios import checks
from scenarios.errors import InputError, reject_unknown
from scenarios.multidomain import LODO
from scenarios.suite import DEFAULT_SELECTION, MethodSpec, spaces

SEARCH_KEYS = {"kind", "trials", "seed", "select", "level"}
CRITERIA = ("dev", "snd", "entropy", "source-val", "im", "bnm", "iwcv", LODO)
MAX_CONFIGURATIONS = 10_000
DEFAULTS = {"kind": "grid", "seed": 0, "select": DEFAULT_SELECTION, "level": "seed"}


def check_options(table) -> dict:
    """A ``[search]`` table with its defaults, checked."""
    if not isinstance(table, dict):
        raise InputError("search", f"is {table!r}", expected="a table of search settings")
    reject_unknown(table, SEARCH_KEYS, what="search setting", field="search")
    options = {**DEFAULTS, **table}
    checks.string(options["kind"], "search.kind", ("grid", "random"))
    checks.string(options["select"], "search.select", CRITERIA)
    checks.string(options["level"], "search.level", ("seed", "mean"))
    checks.integer(options["seed"], "search.seed", 0, 2**32 - 1)
    if options["kind"] == "random":
        if "trials" not in options:
            raise InputError("search.trials", "missing", expected="the number of random "
                             "configurations per method (the same for every method)")
        checks.integer(options["trials"], "search.trials", 1, MAX_CONFIGURATIONS)
    elif "trials" in options:
        raise InputError("search.trials", "is set for a grid", expected="kind = 'random'")
    return options


def _check_space(space, field: str, kind: str) -> None:
    if isinstance(space, list):
        if not space:
            raise InputError(field, "is an empty list", expected="values to search")
        return
    (dist, bounds), = space.items()
    if kind == "grid":
        raise InputError(field, f"is a {dist} distribution in a grid search",
                         expected="a list of values, or [search] kind = 'random'")
    if dist == "choice":
        if not isinstance(bounds, list) or not bounds:
            raise InputError(f"{field}.choice", f"is {bounds!r}", expected="a list of values")
        return
    lo, hi = checks.number_list(bounds, f"{field}.{dist}", min_length=2, max_length=2,
                                integer=dist == "int_uniform",
                                low=0 if dist == "log_uniform" else None)
    if not lo < hi or (dist == "log_uniform" and lo <= 0):
        raise InputError(f"{field}.{dist}", f"is {bounds!r}", expected="[low, high] with low < "
                         "high" + (", low > 0" if dist == "log_uniform" else ""))


def _draw(space, rng: np.random.Generator):
    if isinstance(space, list):
        return space[int(rng.integers(len(space)))]
    (dist, bounds), = space.items()
    if dist == "choice":
        return bounds[int(rng.integers(len(bounds)))]
    if dist == "int_uniform":
        return int(rng.integers(bounds[0], bounds[1] + 1))
    if dist == "log_uniform":
        value = math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1])))
    else:
        value = rng.uniform(bounds[0], bounds[1])
    return float(f"{value:.4g}")  # 4 significant digits: the label is the value


def _assign(params: dict, path: tuple[str, ...], value) -> dict:
    out = dict(params)
    if len(path) == 1:
        out[path[0]] = value
    else:
        out[path[0]] = {**out.get(path[0], {}), path[1]: value}
    return out


def configurations(method: MethodSpec, options: dict | None
                   ) -> list[tuple[MethodSpec, dict | None]]:
    """The configurations of a method table and, for a searched method, each one's search
    info (``group``: the method's label without the searched keys, ``trial``, ``select``,
    ``level``); a method without spaces is itself."""
    searched = spaces(method.params)
    if not searched:
        return [(method, None)]
    options = check_options(options or {})
    base = method.without_spaces()
    fixed = base.params
    for path, space in searched:
        _check_space(space, ".".join(path), options["kind"])
    group = base.label
    if options["kind"] == "grid":
        values = list(itertools.product(*(space for _, space in searched)))
        if len(values) > MAX_CONFIGURATIONS:
            raise InputError("", f"{method.name!r} has a grid of {len(values)} configurations",
                             expected=f"at most {MAX_CONFIGURATIONS}")
    else:
        # the same draws for every run seed, different ones per method
        salt = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng([options["seed"], salt])
        values = [tuple(_draw(space, rng) for _, space in searched)
                  for _ in range(options["trials"])]
    out = []
    for trial, combo in enumerate(values):
        params = fixed
        for (path, _), value in zip(searched, combo, strict=True):
            params = _assign(params, path, value)
        info = {"group": group, "trial": trial, "select": options["select"],
                "level": options["level"]}
        out.append((MethodSpec(method.name, params, method.selection), info))
    labels = [m.label for m, _ in out]
    if len(set(labels)) < len(labels):  # a random search drew a configuration twice
        seen: set[str] = set()
        out = [(m, i) for m, i in out if not (m.label in seen or seen.add(m.label))]
    return out


def _score(record: dict, criterion: str, lodo: dict) -> float:
    """A configuration's score, higher is better: its checkpoint pick's criterion (signed;
    -inf when not finite), its leave-one-domain-out validation accuracy (``lodo``: the
    picks of :func:`dalib.domain_validation.lodo_picks`), or for a stream the final accuracy
    on the tasks' validation parts."""
    if criterion == LODO:
        return lodo[record["run_id"]]["val"] if record["run_id"] in lodo else -math.inf
    if "accuracy_matrix_val" in record:
        return float(np.mean(record["accuracy_matrix_val"][-1]))
    value = pick(record["checkpoints"], criterion)[criterion]
    if not np.isfinite(value):
        return -math.inf
    return value if HIGHER_IS_BETTER[criterion] else -value


def _result(record: dict, criterion: str, lodo: dict) -> dict[str, float]:
    """What the selection reports of a chosen run: the checkpoint pick's accuracies for a
    transfer run, the stream metrics for a stream."""
    if "accuracy_matrix_val" in record:
        return {k: v for k, v in record["metrics"].items() if k != "acc_val"}
    ckpt = lodo.get(record["run_id"]) if criterion == LODO else pick(record["checkpoints"],
                                                                     criterion)
    if ckpt is None:
        return {}
    return {"target_acc": ckpt["target_acc"], "source_acc": ckpt["source_acc"],
            "target_acc_last": pick(record["checkpoints"], "last")["target_acc"]}


def selection_rows(records: list[dict], lodo: dict[str, dict] | None = None) -> list[dict]:
    """The selected result of every searched method, scenario and seed (see the module
    doc), as rows of the results table. Transfer runs are chosen by the criterion columns of
    their checkpoints, streams by the accuracy on their tasks' validation parts; test
    accuracies are read for the reported rows and the oracle alone. ``lodo``: the
    leave-one-domain-out picks of the records, when the caller has them
    (:func:`dalib.domain_validation.lodo_picks`)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        info = r.get("search")
        if r["status"] == "ok" and isinstance(info, dict) and (
                r.get("checkpoints") or "accuracy_matrix_val" in r):
            groups.setdefault((r["suite"], r["scenario"], info["group"]), []).append(r)
    rows = []
    lodo = lodo_picks(records) if lodo is None else lodo
    for (suite, scenario, group), runs in groups.items():
        info = runs[0]["search"]
        criterion, by_seed = info["select"], {}
        if criterion == LODO and "validation_domain" in runs[0]["config"]["data"]:
            continue  # a validation run of the protocol: it picks nothing itself
        for r in runs:
            by_seed.setdefault(r["seed"], []).append(r)
        if info["level"] == "mean":  # one configuration for every seed
            scores: dict[int, list[float]] = {}
            for r in runs:
                scores.setdefault(r["search"]["trial"], []).append(_score(r, criterion, lodo))
            complete = {t: v for t, v in scores.items() if len(v) == len(by_seed)}
            best = max(sorted(complete), key=lambda t: float(np.mean(complete[t])))
        primary = "acc" if "accuracy_matrix_val" in runs[0] else "target_acc"
        for seed, seed_runs in by_seed.items():
            seed_runs = sorted(seed_runs, key=lambda r: r["search"]["trial"])
            if info["level"] == "mean":
                chosen = next((r for r in seed_runs if r["search"]["trial"] == best), None)
                if chosen is None:
                    continue
            else:  # the best score (ties: the first configuration)
                chosen = max(seed_runs, key=lambda r: _score(r, criterion, lodo))
            values = _result(chosen, criterion, lodo)
            if not values:  # its leave-one-domain-out validation runs are not all done
                continue
            oracle = max(_result(r, criterion, lodo).get(primary, -math.inf)
                         for r in seed_runs)
            values.update({"selected_trial": chosen["search"]["trial"],
                           f"{primary}_oracle_hp": oracle,
                           "selection_regret": oracle - values[primary]})
            base = {"suite": suite, "scenario": scenario, "method": group, "seed": seed,
                    "run_id": chosen["run_id"], "config_hash": chosen["config_hash"],
                    "status": "ok"}
            rows += [{**base, "metric": k, "value": float(v)} for k, v in values.items()]
    return rows
