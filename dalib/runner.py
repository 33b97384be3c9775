"""Run a suite: validate it, schedule its runs (in process, a process pool, Ray), store their
records and results.

Each run writes one JSON record, atomically (temp file + rename), to ``OUT/runs/``; the tidy
``OUT/results.csv`` is rebuilt from the records alone (:mod:`dalib.store`). A run that raises
or diverges is recorded as failed with its reason and the sweep goes on; finished runs are
skipped on a re-run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from dalib import store
from dalib.engine import Budget, planned_steps, resolve_device
from dalib.models import model_for
from dalib.pack.plan import plan
from dalib.registry import OPTIM, REGISTRY, check_method, with_recipe
from dalib.runspec import RunSpec, expand, resolved_budget, scenario_methods
from dalib.settings import (
    check_resume,
    default_jobs,
    default_threads,
    resumed_threads,
    settings,
    torch_threads,
)
from dalib.status import end_sweep, write_sweep
from dalib.worker import Worker, model_kept
from scenarios.errors import InputError, reject_unknown
from scenarios.suite import REGRESSION_CRITERIA, Suite


def validate(suite: Suite, runs: list[RunSpec], data_root: str | None) -> dict[str, int]:
    """Check methods, hyperparameters, data, models and each method built on its model,
    before anything is written; returns each scenario's planned steps per run
    (:func:`~dalib.engine.planned_steps`). An error names the table its value is written in
    (:meth:`~scenarios.suite.Suite.locate`)."""
    work = {}
    for i, sc in enumerate(suite.scenarios):
        method = None  # the method whose table is being checked
        try:
            reject_unknown(sc.optim, OPTIM, what="optimizer setting", field="optim")
            configs = scenario_methods(sc)
            if sc.kind == "stream" and any(info for _, _, info in configs) and \
                    not sc.options.get("val_fraction"):
                raise InputError("val_fraction", "is not set but methods search "
                                 "hyperparameters", expected="val_fraction = 0.1 (a validation "
                                 "part of each task's training data to select on)")
            entries = []
            for j, m, _ in configs:
                method = sc.methods[j]
                if sc.kind == "stream" and m.selection:
                    raise InputError(f"methods[{j}].selection", f"is {m.selection!r} in a "
                                     "stream scenario", expected="no selection: streams are "
                                     "judged on their accuracy matrix (searches select on "
                                     "val_fraction parts)")
                kind = "transfer" if sc.kind == "test-time" and \
                    m.name == sc.options.get("init_from", "source-only") else sc.kind
                entries.append(check_method(m.name, with_recipe(sc, m.name, sc.method_params(m)), kind,
                                            f"methods[{j}]"))
            method = None
            if sc.kind == "stream" and sc.options.get("online"):
                check_task_free(sc, configs, entries)
            if sc.kind == "transfer" and sc.options.get("regression"):
                check_regression(configs, entries)
            if sc.kind == "test-time":
                check_init(sc)
            data = sc.build(runs[0].seed if runs else 0, data_root)
            budget = Budget(**resolved_budget(sc.budget))
            work[sc.name] = planned_steps(data, budget)
            check_batch(model_for(data, **sc.model), data, budget.batch_size)
            if sc.kind == "transfer" and sc.options.get("target_data") == "none":
                needing = [(j, m.name) for (j, m, _), e in zip(configs, entries, strict=True)
                           if "target" in e.needs]
                if needing:
                    method = sc.methods[needing[0][0]]
                    raise InputError(f"methods[{needing[0][0]}]", f"{needing[0][1]!r} trains on "
                                     "unlabelled target data, which target_data = 'none' "
                                     "withholds (domain generalization)", expected="a method "
                                     "that trains on the sources only (erm, irm, vrex, ...), "
                                     "or target_data = 'unlabelled' (multi-source adaptation)")
            if sc.kind == "transfer" and data.target_labelled is None:
                needing = [m.name for (_, m, _), e in zip(configs, entries, strict=True)
                           if "target_labelled" in e.needs]
                if needing:
                    raise InputError("k", f"is 0 but {needing[0]!r} trains on labelled target "
                                     "samples", expected="k >= 1 labelled target samples per class")
            for (j, m, _), entry in zip(configs, entries, strict=True):
                method = sc.methods[j]
                try:
                    built = entry.build(model_for(data, **sc.model),
                                        with_recipe(sc, m.name, sc.method_params(m)))
                    if sc.kind == "test-time" and hasattr(built, "check_model"):
                        built.check_model(smallest_batch(data))
                except InputError as exc:
                    raise exc.within("", f"methods[{j}]") from None
                except (ValueError, TypeError) as exc:
                    raise InputError(f"methods[{j}]", f"{m.label!r} cannot be built: {exc}",
                                     expected="valid hyperparameters") from None
        except InputError as exc:
            raise suite.locate(exc, i, method) from None
    return work


def smallest_batch(data) -> torch.Tensor:
    """A test-time stream's smallest batch (its last one, or a whole batch)."""
    n = len(data.stream) % data.batch_size or data.batch_size
    return data.stream.pooled[0][data.stream.order[-n:]]


def check_task_free(sc, configs: list, entries: list) -> None:
    """A task-free stream (``online = true``) is one pass of single updates: its budget
    names no steps and at most one epoch, and every method must learn without being told
    the task boundaries (a method says so with ``task_free = True``)."""
    budget = sc.budget
    if "steps" in budget or budget.get("epochs", 1) != 1:
        key = "steps" if "steps" in budget else "epochs"
        raise InputError(f"budget.{key}", f"is {budget[key]!r} in a task-free stream",
                         expected="no steps and no epochs (or epochs = 1): an online stream "
                         "is one pass, one update per batch of batch_size samples")
    for (j, m, _), entry in zip(configs, entries, strict=True):
        if not getattr(entry.cls, "task_free", False):
            raise InputError(f"methods[{j}]", f"{m.name!r} acts at task boundaries, which a "
                             "task-free stream never announces", expected="a method that "
                             "learns without them (naive, joint, replay, der, der++, mir, "
                             "gdumb), or online = false")


def check_regression(configs: list, entries: list) -> None:
    """In a regression scenario every method's losses apply to continuous targets (a
    method says so with ``regression = True``; an adaptation method when all its terms do),
    every method's selection criterion is one defined for them, and no method searches
    hyperparameters (the search ranks configurations by class predictions)."""
    for (j, m, info), entry in zip(configs, entries, strict=True):
        if info:
            raise InputError(f"methods[{j}]", f"{m.name!r} searches hyperparameters in a "
                             "regression scenario", expected="fixed hyperparameters (the "
                             "search is defined for class predictions only)")
        if not entry.regression:
            able = sorted(name for name, e in REGISTRY.items()
                          if e.kind == "transfer" and e.regression)
            raise InputError(f"methods[{j}]", f"{m.name!r} needs class labels (its losses "
                             "read class probabilities)", expected="a method for continuous "
                             f"targets ({', '.join(able)}), or regression = false")
        if m.selection and m.selection not in REGRESSION_CRITERIA:
            raise InputError(f"methods[{j}].selection", f"is {m.selection!r} in a regression "
                             "scenario", expected=f"one of {', '.join(REGRESSION_CRITERIA)}")


def check_init(sc) -> None:
    """A test-time scenario's ``init_from`` names a transfer method trained on the labelled
    source alone (its model is what the test-time methods adapt)."""
    name = sc.options.get("init_from", "source-only")
    entry = check_method(name, with_recipe(sc, name, sc.optim), "transfer", "init_from")
    if entry.needs != ("source",):
        raise InputError("init_from", f"{name!r} trains on {', '.join(entry.needs)}",
                         expected="a method trained on the labelled source alone "
                         "(source-only, erm, a user's source method)")


def check_batch(model: torch.nn.Module, data, batch_size: int) -> None:
    """One training batch of ``batch_size`` samples goes through the model: batch norm needs
    two or more samples per batch in training (a run would fail at its first step)."""
    if batch_size > 1:
        return
    first = data.source if hasattr(data, "source") else data.tasks[0].train
    model.train()
    try:
        with torch.no_grad():
            model(first.x[:1])
    except ValueError as exc:
        raise InputError("budget.batch_size", f"is 1 but the model cannot train on one "
                         f"sample per batch ({str(exc).splitlines()[0]})",
                         expected="batch_size >= 2 (batch norm needs two or more samples), or "
                         "a model without batch norm") from None


_WORKER: Worker | None = None


def _init_worker(device: str, data_root: str | None, options: dict, threads: int) -> None:
    global _WORKER
    os.environ["DALIB_NO_PROGRESS"] = "1"
    torch.set_num_threads(threads)
    _WORKER = Worker(device, data_root, **options)


def _init_pool_worker(device: str, data_root: str | None, options: dict, threads: int,
                      parent: int) -> None:
    """A pool worker: :func:`_init_worker`, and exit as soon as the main process ``parent``
    is gone (a killed sweep would otherwise leave its workers waiting for work forever)."""
    _init_worker(device, data_root, options, threads)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _pool_run(unit: list[RunSpec], done: frozenset[str]
              ) -> list[tuple[RunSpec, dict, dict | None]]:
    """A unit of runs (one run, or the runs of a pack) in a worker process."""
    assert _WORKER is not None
    return list(_WORKER.pack(unit, done))


def _ray_run(unit: list[RunSpec], done: frozenset[str], device: str, data_root: str | None,
             options: dict, threads: int) -> list[tuple[RunSpec, dict, dict | None]]:
    _init_worker(device, data_root, options, threads)
    return _pool_run(unit, done)


def _ray_results(units: list[list[RunSpec]], done: frozenset[str], address: str | None,
                 device: str, data_root: str | None, options: dict, threads: int
                 ) -> Iterator[tuple[RunSpec, dict, dict | None]]:
    """Each unit as a Ray task (``threads`` CPUs and torch threads, and one GPU with
    ``--device cuda``) on the cluster at ``address`` (or one Ray is already connected to, or a new local
    one), as they finish."""
    try:
        import ray
    except ImportError:
        raise InputError("--executor", "is 'ray' but Ray is not installed",
                         expected="pip install 'dalib-shift[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    gpus = 1 if device.startswith("cuda") else 0
    remote = ray.remote(num_cpus=threads, num_gpus=gpus)(_ray_run)
    futures = [remote.remote(unit, done, device, data_root, options, threads)
               for unit in units]
    waiting = list(futures)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        yield from ray.get(done[0])


def _results(runs: list[RunSpec], done: frozenset[str], jobs: int, device: str,
             data_root: str | None, options: dict, executor: str = "local",
             address: str | None = None, pack: int = 1, threads: int = 1
             ) -> Iterator[tuple[RunSpec, dict, dict | None]]:
    """Each run not in ``done`` with its record and features, as they finish, in units of up
    to ``pack`` runs trained as one (:mod:`dalib.pack`): in process (``jobs = 1``), in
    ``jobs`` processes (this one and ``jobs - 1`` workers, no more than there are units)
    with ``threads`` torch threads each, or as Ray tasks (``executor = "ray"``).

    The packs are those of the whole sweep (:func:`~dalib.pack.plan.plan` over ``runs``), so a
    resumed or re-run sweep trains each run in the pack it has in an uninterrupted one: a
    pack with finished runs trains whole, and their records come back again too (the caller
    keeps the stored ones)."""
    units = [u for u in plan(runs, pack) if any(r.run_id not in done for r in u)]
    jobs = min(jobs, len(units))
    if executor == "ray":  # live logs stay with local processes (cluster nodes may not
        # share OUT's file system); records and final logs come back to this one
        yield from _ray_results(units, done, address, device, data_root,
                                {**options, "out": None}, threads)
        return
    if jobs <= 1 or len(units) <= 1:
        worker = Worker(device, data_root, **options)
        with torch_threads(threads):
            for unit in units:
                yield from worker.pack(unit, done)
        return
    ctx = multiprocessing.get_context("spawn")
    worker = Worker(device, data_root, **options)
    pool = ProcessPoolExecutor(jobs - 1, mp_context=ctx, initializer=_init_pool_worker,
                               initargs=(device, data_root, options, threads, os.getpid()))
    try:
        with torch_threads(threads):
            # workers start during the submissions: they inherit an ignored Ctrl-C, which
            # is the main process's to handle (a worker still starting would print a
            # traceback)
            handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                futures = [pool.submit(_pool_run, unit, done) for unit in units]
            finally:
                signal.signal(signal.SIGINT, handler)
            waiting = set(futures)
            # this process takes units from the back of the queue while its workers start
            # up and take them from the front; a unit it takes is cancelled in the pool
            for future, unit in reversed(list(zip(futures, units, strict=True))):
                if not future.cancel():
                    break
                waiting.discard(future)
                yield from worker.pack(unit, done)
                finished = {f for f in waiting if f.done()}
                waiting -= finished
                for f in finished:
                    yield from f.result()
            for future in as_completed(waiting):
                yield from future.result()
    except BaseException:  # Ctrl-C, a full disk, ...: stop the workers now, not after their runs
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _waves(runs: list[RunSpec], done: dict, *args) -> Iterator[tuple[RunSpec, dict, dict | None]]:
    """:func:`_results` of the runs no other run starts from, then of those that start from
    another's trained model (test-time runs from their source run)."""
    first = [r for r in runs if r.init is None]
    later = [r for r in runs if r.init is not None]
    yield from _results(first, frozenset(done), *args)
    if later:
        yield from _results(later, frozenset(done), *args)


def stale_models(runs: list[RunSpec], done: dict, out: Path) -> set[str]:
    """Finished source runs to train again: a run that starts from one is not finished and
    the model file is missing, damaged or replaced (its digest is not the one its record
    keeps), so that no run ever adapts another model than its source run's."""
    return {r.init.run_id for r in runs if r.init is not None and r.run_id not in done
            and r.init.run_id in done
            and not model_kept(out / "models", r.init, done[r.init.run_id])}


def _write_log(out: Path, record: dict) -> None:
    """``OUT/logs/<run_id>.log``: the run's configuration, outcome, metrics, timings and loss
    curve, or its error and traceback, in plain text."""
    lines = [f"run {record['run_id']} ({record['status']}, finished {record['finished']})",
             f"device {record['device']}; versions {record['versions']}",
             f"config {json.dumps(record['config'], sort_keys=True, default=str)}"]
    pack = record.get("pack")
    if pack:
        lines.append(f"trained alone: {pack['reason']}" if "reason" in pack else
                     f"trained in a pack of {pack['size']} runs")
    if record["status"] == "ok":
        lines.append("metrics " + ", ".join(f"{k}={v:.4g}" for k, v in record["metrics"].items()))
        lines.append(f"timings {record['timings']}")
        # one line per logged curve (a term logged only late in a run has fewer values)
        for name, values in record.get("curves", {}).items():
            lines.append(f"{name}: " + " ".join(f"{v:.4g}" for v in values))
    else:
        lines += [f"error {record['error']}", record.get("traceback", "")]
    store.write_text(out / "logs" / f"{record['run_id']}.log", "\n".join(lines) + "\n")


def check_owner(out: Path, suite: Suite) -> None:
    """``OUT`` holds no other suite's results (one suite per output directory)."""
    other = store.owner(out)
    if other is not None and other != suite.name:
        raise InputError("--out", f"{str(out)!r} holds results of suite {other!r}, not "
                         f"{suite.name!r}", expected="a new directory, or the one of this suite "
                         "(one suite per output directory)")


def current_records(suite: Suite, found: store.Records) -> tuple[list[dict], list[Path]]:
    """The records of runs of the current suite, and the files of those that are not (a
    method removed, its settings, data or dalib changed) or are older copies of a run
    (``found.superseded``)."""
    seeds = sorted({r["seed"] for r in found.records})
    hashes = {(r.scenario.name, r.method.label, r.seed): r.config_hash
              for r in expand(suite, seeds)} if seeds else {}
    kept, aside = [], [path for path, _ in found.superseded]
    for record in found.records:
        key = (record["scenario"], record["method"], record["seed"])
        if hashes.get(key) == record["config_hash"]:
            kept.append(record)
        else:
            aside.append(found.paths[record["run_id"]])
    return kept, aside


def retire_stale(out: Path, paths: list[Path]) -> None:
    """Move records that are not runs of the current suite to ``OUT/stale/``, so results
    never mix configurations; nothing is deleted."""
    for path in paths:
        (out / "stale").mkdir(exist_ok=True)
        os.replace(path, out / "stale" / path.name)


@dataclass
class Sweep:
    """What a sweep left: the results table, the files under ``runs/`` that are not records
    (named, with the reason), runs the previous ``results.csv`` held that it no longer
    does (with ``stale``: moved aside because the suite changed), and finished runs that
    trained again with their pack and came out with other metrics than their records
    (``unrepeatable``: this machine does not repeat its own numbers)."""

    table: pd.DataFrame
    skipped: list[tuple[Path, str]]
    dropped: list[str]
    stale: list[str]
    unrepeatable: list[str] = field(default_factory=list)


def run_suite(suite: Suite, out: str | Path, *, runs: list[RunSpec], device: str = "auto",
              data_root: str | None = None,
              on_run: Callable[[RunSpec, dict, bool], None] | None = None,
              save_features: bool = False, keep_models: bool = False,
              jobs: int | None = None, executor: str = "local",
              address: str | None = None, precision: str = "fp32",
              compile: bool = False, channels_last: bool = False, pack: int = 1,
              threads: int | None = None,
              plugins: list[str] | tuple[str, ...] = (), loggers: tuple[str, ...] = (),
              work: dict[str, int] | None = None) -> Sweep:
    """Execute ``runs`` (skipping finished ones: ``on_run(run, record, cached)``) in process,
    in ``jobs`` processes (this one and ``jobs - 1`` workers; default
    :func:`~dalib.settings.default_jobs`: one per usable core) or as Ray tasks (``executor =
    "ray"``, cluster ``address``), holding ``OUT``'s writer lock; write their records and a
    log per run (only this process writes), rebuild ``results.csv``. With ``save_features``,
    transfer runs save test-set features to ``OUT/features/``; ``precision``, ``compile`` and
    ``channels_last`` as in :func:`execute`; runs that may train together do so in packs of up to ``pack``
    (:mod:`dalib.pack`; 1: every run alone); ``threads``: torch threads per process (default
    :func:`~dalib.settings.default_threads`, 1, or the count the finished runs in ``OUT``
    used). These execution settings are
    recorded in every run, and finished runs in ``OUT`` trained under others are refused
    (:func:`~dalib.settings.check_resume`, before anything is written); ``plugins``
    (resolved, see :mod:`dalib.plugins`) are loaded by every worker process; ``loggers``
    name the optional live loggers (:mod:`dalib.logging`); ``work``: planned steps per
    scenario (:func:`validate`), which weigh the runs in the time left that ``dalib status``
    estimates (equal weights without it)."""
    out = Path(out)
    store.check_out(out)
    resolved = resolve_device(device)  # fail early on a missing GPU
    check_owner(out, suite)
    with store.locked(out):
        found = store.read_records(out)
        kept, aside = current_records(suite, found)
        # a resumed sweep keeps the thread count its finished runs used unless told otherwise
        threads = threads or resumed_threads(kept) or default_threads()
        current = settings(threads, resolved, precision, compile, pack, channels_last)
        check_resume(kept, current)
        retire_stale(out, aside)
        stale = sorted(set(found.paths) - {r["run_id"] for r in kept})
        if Path(suite.path).is_file():  # a suite made in Python has no file
            store.write_atomic(out / "suite.toml",
                               lambda fh: fh.write(Path(suite.path).read_bytes()))
        done = {r["run_id"]: r for r in kept if r["status"] == "ok"}
        for run_id in stale_models(runs, done, out):
            del done[run_id]
        if keep_models:  # a finished run whose model is not kept trains again (same numbers)
            for run in runs:  # test-time runs keep none of their own
                if run.run_id in done and run.scenario.kind != "test-time" and \
                        not model_kept(out / "models", run, done[run.run_id]):
                    del done[run.run_id]
        if jobs is None:
            jobs = 1 if executor == "ray" else \
                default_jobs(sum(r.run_id not in done for r in runs), resolved)
        for run in runs:
            if run.run_id in done and on_run:
                on_run(run, done[run.run_id], True)
        options = {"features": save_features, "keep": keep_models, "precision": precision,
                   "compile": compile, "channels_last": channels_last,
                   "plugins": tuple(plugins), "out": str(out), "loggers": tuple(loggers),
                   "settings": current}
        write_sweep(out, suite.name, [r.run_id for r in runs],
                    [(work or {}).get(r.scenario.name, 1) for r in runs], jobs, pack)
        unrepeatable = []
        for run, record, sample in _waves(runs, done, jobs, device, data_root, options,
                                          executor, address, pack, threads):
            if run.run_id in done:  # trained again with its pack: the record stands
                if record.get("metrics") != done[run.run_id].get("metrics"):
                    unrepeatable.append(run.run_id)
                continue
            if sample is not None:
                store.write_atomic(out / "features" / f"{run.run_id}.npz",
                                   lambda fh, sample=sample: np.savez_compressed(fh, **sample))
            store.write_json(out / "runs" / f"{run.run_id}.json", record)
            _write_log(out, record)
            if on_run:
                on_run(run, record, False)
        end_sweep(out)
        final = store.read_records(out)
        table, dropped = store.rebuild_results(out, final.records)
    return Sweep(table, final.skipped, dropped, stale, unrepeatable)
