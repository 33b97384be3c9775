"""Expand a suite into runs (scenario x method x seed), execute them, store records and results.

Each run writes one JSON record, atomically (temp file + rename), to ``OUT/runs/``; the tidy
``OUT/results.csv`` is rebuilt from the records alone. A run that raises or diverges is recorded
as failed with its reason and the sweep goes on; finished runs are skipped on a re-run.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from analysis.continual import FWT_UNDEFINED, fwt_defined, summarize
from dalib import __version__, store
from dalib.engine import (
    Budget,
    Trace,
    fit_stream,
    fit_transfer,
    resolve_device,
    seed_everything,
    versions,
)
from dalib.models import build_model
from dalib.parallel import fit_transfer_seeds, supports
from dalib.registry import OPTIM, check_method
from dalib.selection import CheckpointScorer, selection_metrics
from dalib.transferability import model_outputs, transferability_scores
from scenarios.errors import InputError, reject_unknown
from scenarios.stream import Stream
from scenarios.suite import MethodSpec, ScenarioSpec, Suite


@dataclass(frozen=True)
class RunSpec:
    suite: str
    scenario: ScenarioSpec
    method: MethodSpec
    seed: int
    order: tuple[int, int, int] = (0, 0, 0)  # (scenario, seed, method) position in the suite

    @property
    def params(self) -> dict:
        """The method's hyperparameters over the scenario's ``optim`` defaults."""
        return self.scenario.method_params(self.method)

    def config(self) -> dict:
        """Everything that determines the run's numbers (its hash is the run's identity): the
        data (with the contents of data and weights files), the resolved budget and model, every
        hyperparameter of the method (defaults included), the seed and dalib's version."""
        sc = self.scenario
        entry = check_method(self.method.name, self.params, sc.kind)
        return {"suite": self.suite, "scenario": sc.name, "kind": sc.kind, "data": sc.options,
                "files": {str(p): file_digest(p) for p in sc.files()},
                "budget": resolved_budget(sc.budget), "model": sc.model,
                "method": self.method.name, "params": entry.resolved(self.params),
                "seed": self.seed, "dalib": __version__}

    @cached_property
    def config_hash(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def slug(self) -> str:
        """The run's file-safe name without its configuration hash."""
        return f"{_file_part(self.scenario.name)}-{_file_part(self.method.label)}-s{self.seed}"

    @property
    def run_id(self) -> str:
        return f"{self.slug}-{self.config_hash[:8]}"


def _file_part(text: str, limit: int = 60) -> str:
    """``text`` as a bounded file-name part; a name that had to be changed (characters
    outside ``A-Za-z0-9.+-``, or longer than ``limit``) gets a hash of the original, so two
    names never share a file."""
    safe = re.sub(r"[^A-Za-z0-9.+-]+", "_", text)[:limit]
    if safe != text:
        safe += "~" + hashlib.sha256(text.encode()).hexdigest()[:6]
    return safe


@lru_cache(maxsize=256)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's contents (cached while its size and mtime stay)."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return _digest(str(path), st.st_size, st.st_mtime_ns)


def resolved_budget(budget: dict) -> dict:
    """A scenario's budget with the defaults filled in (batch 64, 10 checkpoints, 10 epochs
    when neither epochs nor steps is given)."""
    out = {"batch_size": 64, "checkpoints": 10, **budget}
    if "epochs" not in out and "steps" not in out:
        out["epochs"] = 10
    return out


def expand(suite: Suite, seeds: list[int] | None = None, methods: list[str] | None = None,
           ) -> list[RunSpec]:
    """All runs of a suite, ordered scenario -> seed -> method (so data is built once per seed)."""
    seeds = list(seeds) if seeds is not None else list(suite.seeds)
    if methods is not None:
        known = {m.name for s in suite.scenarios for m in s.methods} | \
                {m.label for s in suite.scenarios for m in s.methods}
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise InputError("--methods", f"{unknown[0]!r} is not in suite {suite.name!r}",
                             expected=f"some of {', '.join(sorted(known))}")
    runs = []
    for i, sc in enumerate(suite.scenarios):
        chosen = [(j, m) for j, m in enumerate(sc.methods) if methods is None
                  or m.name in methods or m.label in methods]
        runs += [RunSpec(suite.name, sc, m, seed, (i, seed, j)) for seed in seeds
                 for j, m in chosen]
    return runs


def validate(suite: Suite, runs: list[RunSpec], data_root: str | None) -> None:
    """Check methods, hyperparameters, data, models and each method built on its model,
    before anything is written."""
    for i, sc in enumerate(suite.scenarios):
        field = f"scenario[{i}]"
        try:
            reject_unknown(sc.optim, OPTIM, what="optimizer setting", field="optim")
            entries = [check_method(m.name, sc.method_params(m), sc.kind, f"methods[{j}]")
                       for j, m in enumerate(sc.methods)]
            data = sc.build(runs[0].seed if runs else 0, data_root)
            build_model(data.input_shape, data.num_classes, **sc.model)
            if sc.kind == "transfer" and data.target_labelled is None:
                needing = [m.name for m, e in zip(sc.methods, entries, strict=True)
                           if "target_labelled" in e.needs]
                if needing:
                    raise InputError("k", f"is 0 but {needing[0]!r} trains on labelled target "
                                     "samples", expected="k >= 1 labelled target samples per class")
            for j, (m, entry) in enumerate(zip(sc.methods, entries, strict=True)):
                field = f"scenario[{i}].methods[{j}]"
                try:
                    entry.build(build_model(data.input_shape, data.num_classes, **sc.model),
                                sc.method_params(m))
                except (ValueError, TypeError) as exc:
                    if isinstance(exc, InputError):
                        raise
                    raise InputError("", f"{m.label!r} cannot be built: {exc}",
                                     expected="valid hyperparameters") from None
        except InputError as exc:
            raise exc.within(suite.path, field) from None


def feature_sample(method, data, limit: int = 500) -> dict[str, np.ndarray]:
    """The model's features (``model.features``, eval mode) of up to ``limit`` samples of the
    source and target test sets, with their labels (for plots only, never for selection)."""
    out = {}
    for name, domain in (("source", data.source_test), ("target", data.target_test)):
        out[name] = model_outputs(method, domain.x[:limit])[0]
        out[f"y_{name}"] = domain.y[:limit].cpu().numpy()
    return out


def _prepare(run: RunSpec, data, device: torch.device, precision: str, compile: bool):
    """Seed, build the model (compiled when asked) and the method, and the run's budget."""
    seed_everything(run.seed)
    sc = run.scenario
    entry = check_method(run.method.name, run.params, sc.kind)
    model = build_model(data.input_shape, data.num_classes, **sc.model).to(device)
    if compile:
        model.backbone.compile()
    method = entry.build(model, run.params)
    method.precision = precision
    return entry, method, Budget(**resolved_budget(sc.budget))


def _transfer_record(run: RunSpec, entry, method, data, scorer: CheckpointScorer, steps: int,
                     features: bool) -> tuple[dict, dict | None]:
    """A trained transfer run's record (selection metrics, transferability scores of
    source-trained models, checkpoints) and, with ``features``, its feature sample."""
    # selection criteria judge training on the source; baselines trained on target labels
    # alone (target-only, target-oracle) keep their final model
    criterion = run.scenario.options.get("selection", "dev") if "source" in method.needs \
        else "last"
    metrics = selection_metrics(scorer.checkpoints, criterion)
    if entry.needs == ("source",):  # a source-trained model: score it for the target
        metrics.update(transferability_scores(method, data, seed=run.seed))
    record = {"steps": steps, "selection": criterion, "checkpoints": scorer.checkpoints,
              "metrics": metrics}
    sample = feature_sample(method, data) if features and hasattr(method.model, "features") \
        else None
    return record, sample


def execute(run: RunSpec, data, device: torch.device, features: bool = False,
            precision: str = "fp32", compile: bool = False) -> tuple[dict, dict | None]:
    """Run one method on one scenario's data for one seed; returns its record and, with
    ``features``, the :func:`feature_sample` of a transfer run's final model (no I/O).
    ``precision = "bf16"`` trains under bfloat16 autocast (evaluation stays in float32);
    ``compile`` wraps the backbone in ``torch.compile``."""
    entry, method, budget = _prepare(run, data, device, precision, compile)
    trace = Trace()
    start = time.perf_counter()
    sample = None
    if isinstance(data, Stream):
        R = fit_stream(method, data, budget, device, run.seed, trace)
        train_s = time.perf_counter() - start
        joint = getattr(method, "joint", False)
        fwt = fwt_defined(data.protocol, [list(t.classes) for t in data.tasks])
        record = {"accuracy_matrix": R.tolist(), "protocol": data.protocol,
                  "metrics": {"acc": float(np.mean(R[-1]))} if joint else summarize(R, fwt)}
        if not fwt and not joint:
            record["undefined"] = {"fwt": FWT_UNDEFINED}
    else:
        scorer = CheckpointScorer(data, run.seed)
        steps = fit_transfer(method, data, budget, device, run.seed, trace,
                             lambda step: scorer.score(method, step))
        train_s = time.perf_counter() - start
        record, sample = _transfer_record(run, entry, method, data, scorer, steps, features)
    record.update(curves=trace.to_dict(), precision=precision, compiled=compile,
                  timings={"train_s": train_s, "total_s": time.perf_counter() - start})
    return record, sample


def execute_seeds(runs: list[RunSpec], datas: list, device: torch.device,
                  features: bool = False, precision: str = "fp32", compile: bool = False
                  ) -> list[tuple[dict, dict | None]]:
    """Runs of one transfer method that differ only in their seed, trained at once
    (:mod:`dalib.parallel`); the records are those of :func:`execute`, with the parallel
    time split evenly over the seeds and ``parallel_seeds`` = S. Raises ``ValueError`` for
    methods it cannot reproduce exactly (:func:`dalib.parallel.supports`)."""
    prepared = [_prepare(r, d, device, precision, compile)
                for r, d in zip(runs, datas, strict=True)]
    methods = [m for _, m, _ in prepared]
    scorers = [CheckpointScorer(d, r.seed) for r, d in zip(runs, datas, strict=True)]
    traces = [Trace() for _ in runs]
    start = time.perf_counter()
    steps = fit_transfer_seeds(methods, datas, prepared[0][2], device, [r.seed for r in runs],
                               traces, [lambda step, sc=sc, m=m: sc.score(m, step)
                                        for sc, m in zip(scorers, methods, strict=True)])
    train_s = (time.perf_counter() - start) / len(runs)
    out = []
    for run, (entry, method, _), data, scorer, trace in zip(runs, prepared, datas, scorers,
                                                             traces, strict=True):
        record, sample = _transfer_record(run, entry, method, data, scorer, steps, features)
        record.update(curves=trace.to_dict(), precision=precision, compiled=compile,
                      parallel_seeds=len(runs), timings={"train_s": train_s,
                                                         "total_s": train_s})
        out.append((record, sample))
    return out


class Worker:
    """Runs one run at a time, building each (scenario, seed)'s data once in a row, and
    catches what a run raises: a failed run is a record with its reason, never an exception."""

    def __init__(self, device: str, data_root: str | None, features: bool,
                 precision: str = "fp32", compile: bool = False) -> None:
        self.device = resolve_device(device)
        self.data_root = data_root
        self.options = {"features": features, "precision": precision, "compile": compile}
        self.built: dict[tuple[str, int], object] = {}

    def data(self, run: RunSpec):
        """The run's scenario data, built once per (scenario, seed): the data of every seed of
        the latest scenario is kept (the runs of a sweep come scenario by scenario, seed by
        seed, or with ``--parallel-seeds`` method by method over the seeds)."""
        key = (run.scenario.name, run.seed)
        if key not in self.built:
            if any(name != run.scenario.name for name, _ in self.built):
                self.built.clear()
            self.built[key] = run.scenario.build(run.seed, self.data_root)
        return self.built[key]

    def header(self, run: RunSpec) -> dict:
        return {"run_id": run.run_id, "config_hash": run.config_hash, "config": run.config(),
                "suite": run.suite, "scenario": run.scenario.name, "kind": run.scenario.kind,
                "method": run.method.label, "seed": run.seed, "index": list(run.order),
                "device": str(self.device), "threads": torch.get_num_threads(),
                "versions": versions()}

    def __call__(self, run: RunSpec) -> tuple[dict, dict | None]:
        record = self.header(run)
        sample = None
        try:
            result, sample = execute(run, self.data(run), self.device, **self.options)
            record.update(result, status="ok")
        except Exception as exc:  # a failing run is recorded and the sweep goes on
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc(limit=8))
        record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        return record, sample

    def seeds(self, runs: list[RunSpec]) -> Iterator[tuple[RunSpec, dict, dict | None]]:
        """Runs differing only in their seed, trained at once (:func:`execute_seeds`); if
        that fails, one by one, so each failure is recorded with its own reason."""
        try:
            datas = [self.data(r) for r in runs]
            results = execute_seeds(runs, datas, self.device, **self.options)
        except Exception:  # each run on its own
            for run in runs:
                yield run, *self(run)
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        for run, (result, sample) in zip(runs, results, strict=True):
            yield run, {**self.header(run), **result, "status": "ok", "finished": stamp}, sample


_WORKER: Worker | None = None


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _init_worker(device: str, data_root: str | None, options: dict, threads: int) -> None:
    global _WORKER
    os.environ["DALIB_NO_PROGRESS"] = "1"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
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


def _pool_run(run: RunSpec) -> tuple[dict, dict | None]:
    assert _WORKER is not None
    return _WORKER(run)


def _ray_run(run: RunSpec, device: str, data_root: str | None, options: dict,
             threads: int) -> tuple[dict, dict | None]:
    _init_worker(device, data_root, options, threads)
    return _pool_run(run)


def _ray_results(pending: list[RunSpec], address: str | None, device: str,
                 data_root: str | None, options: dict
                 ) -> Iterator[tuple[RunSpec, dict, dict | None]]:
    """Each run as a Ray task (one CPU, and one GPU with ``--device cuda``) on the cluster at
    ``address`` (or one Ray is already connected to, or a new local one), as they finish."""
    try:
        import ray
    except ImportError:
        raise InputError("--executor", "is 'ray' but Ray is not installed",
                         expected="pip install 'dalib-shift[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    gpus = 1 if device.startswith("cuda") else 0
    remote = ray.remote(num_cpus=1, num_gpus=gpus)(_ray_run)
    futures = {remote.remote(run, device, data_root, options, 1): run for run in pending}
    waiting = list(futures)
    while waiting:
        done, waiting = ray.wait(waiting, num_returns=1)
        yield futures[done[0]], *ray.get(done[0])


def _results(pending: list[RunSpec], jobs: int, device: str, data_root: str | None,
             options: dict, executor: str = "local", address: str | None = None,
             parallel_seeds: bool = False) -> Iterator[tuple[RunSpec, dict, dict | None]]:
    """Each pending run with its record and features, as they finish: in process (``jobs =
    1``; with ``parallel_seeds`` the seeds of each transfer scenario and method at once), in
    ``jobs`` processes (this one and ``jobs - 1`` workers) with ``cores // jobs`` torch
    threads each, or as Ray tasks (``executor = "ray"``)."""
    if parallel_seeds:
        worker = Worker(device, data_root, **options)
        groups: dict[tuple[str, str], list[RunSpec]] = {}
        for run in pending:
            groups.setdefault((run.scenario.name, run.method.label), []).append(run)
        for group in groups.values():
            run = group[0]
            entry = check_method(run.method.name, run.params, run.scenario.kind)
            if len(group) > 1 and run.scenario.kind == "transfer" and supports(entry):
                yield from worker.seeds(group)
            else:
                for run in group:
                    yield run, *worker(run)
        return
    if executor == "ray":
        yield from _ray_results(pending, address, device, data_root, options)
        return
    if jobs <= 1 or len(pending) <= 1:
        worker = Worker(device, data_root, **options)
        for run in pending:
            yield run, *worker(run)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    ctx = multiprocessing.get_context("spawn")
    worker = Worker(device, data_root, **options)
    pool = ProcessPoolExecutor(jobs - 1, mp_context=ctx, initializer=_init_pool_worker,
                               initargs=(device, data_root, options, threads, os.getpid()))
    try:
        with _torch_threads(threads):
            # workers start during the submissions: they inherit an ignored Ctrl-C, which
            # is the main process's to handle (a worker still starting would print a
            # traceback)
            handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                futures = {pool.submit(_pool_run, run): run for run in pending}
            finally:
                signal.signal(signal.SIGINT, handler)
            waiting = set(futures)
            # this process takes runs from the back of the queue while its workers start up
            # and take them from the front; a run it takes is cancelled in the pool
            for future in reversed(list(futures)):
                if not future.cancel():
                    break
                waiting.discard(future)
                yield futures[future], *worker(futures[future])
                done = {f for f in waiting if f.done()}
                waiting -= done
                for f in done:
                    yield futures[f], *f.result()
            for future in as_completed(waiting):
                yield futures[future], *future.result()
    except BaseException:  # Ctrl-C, a full disk, ...: stop the workers now, not after their runs
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _write_log(out: Path, record: dict) -> None:
    """``OUT/logs/<run_id>.log``: the run's configuration, outcome, metrics, timings and loss
    curve, or its error and traceback, in plain text."""
    lines = [f"run {record['run_id']} ({record['status']}, finished {record['finished']})",
             f"device {record['device']}; versions {record['versions']}",
             f"config {json.dumps(record['config'], sort_keys=True, default=str)}"]
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


def retire_stale(out: Path, suite: Suite, found: store.Records) -> list[dict]:
    """Move records that are not runs of the current suite (a method removed, its settings,
    data or dalib changed) to ``OUT/stale/``, so results never mix configurations; nothing
    is deleted. Returns the records kept."""
    specs = {(sc.name, m.label): (sc, m) for sc in suite.scenarios for m in sc.methods}
    kept = []
    for record in found.records:
        pair = specs.get((record["scenario"], record["method"]))
        if pair and RunSpec(suite.name, *pair, record["seed"]).config_hash == \
                record["config_hash"]:
            kept.append(record)
            continue
        path = found.paths[record["run_id"]]
        (out / "stale").mkdir(exist_ok=True)
        os.replace(path, out / "stale" / path.name)
    return kept


@dataclass
class Sweep:
    """What a sweep left: the results table, the files under ``runs/`` that are not records
    (named, with the reason), and runs the previous ``results.csv`` held that it no longer
    does (with ``stale``: moved aside because the suite changed)."""

    table: pd.DataFrame
    skipped: list[tuple[Path, str]]
    dropped: list[str]
    stale: list[str]


def run_suite(suite: Suite, out: str | Path, *, runs: list[RunSpec], device: str = "auto",
              data_root: str | None = None,
              on_run: Callable[[RunSpec, dict, bool], None] | None = None,
              save_features: bool = False, jobs: int = 1, executor: str = "local",
              address: str | None = None, precision: str = "fp32",
              compile: bool = False, parallel_seeds: bool = False) -> Sweep:
    """Execute ``runs`` (skipping finished ones: ``on_run(run, record, cached)``) in process,
    in ``jobs`` processes (this one and ``jobs - 1`` workers) or as Ray tasks (``executor =
    "ray"``, cluster ``address``), holding ``OUT``'s writer lock; write their records and a
    log per run (only this process writes), rebuild ``results.csv``. With ``save_features``,
    transfer runs save test-set features to ``OUT/features/``; ``precision`` and ``compile``
    as in :func:`execute`; ``parallel_seeds`` as in :func:`execute_seeds` (in process)."""
    out = Path(out)
    store.check_out(out)
    resolve_device(device)  # fail early on a missing GPU
    check_owner(out, suite)
    with store.locked(out):
        found = store.read_records(out)
        kept = retire_stale(out, suite, found)
        stale = sorted(set(found.paths) - {r["run_id"] for r in kept})
        if Path(suite.path).is_file():  # a suite made in Python has no file
            store.write_atomic(out / "suite.toml",
                               lambda fh: fh.write(Path(suite.path).read_bytes()))
        done = {r["run_id"]: r for r in kept if r["status"] == "ok"}
        pending = []
        for run in runs:
            if run.run_id in done:
                if on_run:
                    on_run(run, done[run.run_id], True)
            else:
                pending.append(run)
        options = {"features": save_features, "precision": precision, "compile": compile}
        for run, record, sample in _results(pending, jobs, device, data_root, options, executor,
                                            address, parallel_seeds):
            if sample is not None:
                store.write_atomic(out / "features" / f"{run.run_id}.npz",
                                   lambda fh, sample=sample: np.savez_compressed(fh, **sample))
            store.write_json(out / "runs" / f"{run.run_id}.json", record)
            _write_log(out, record)
            if on_run:
                on_run(run, record, False)
        final = store.read_records(out)
        table, dropped = store.rebuild_results(out, final.records)
    return Sweep(table, final.skipped, dropped, stale)
