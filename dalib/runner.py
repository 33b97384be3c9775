"""Expand a suite into runs (scenario x method x seed), execute them, store records and results.

Each run writes one JSON record, atomically (temp file + rename), to ``OUT/runs/``; the tidy
``OUT/results.csv`` is rebuilt from the records alone. A run that raises or diverges is recorded
as failed with its reason and the sweep goes on; finished runs are skipped on a re-run.
"""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing
import os
import re
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import torch

from analysis.continual import intransigence, summarize
from analysis.transfer import transfer_gaps
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

RESULT_COLUMNS = ["suite", "scenario", "method", "seed", "metric", "value", "run_id",
                  "config_hash", "status"]


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
        """Everything that determines the run's numbers (its hash is the run's identity)."""
        return {"suite": self.suite, "scenario": self.scenario.name, "kind": self.scenario.kind,
                "data": self.scenario.options, "budget": self.scenario.budget,
                "model": self.scenario.model, "method": self.method.name,
                "params": self.params, "seed": self.seed}

    @property
    def config_hash(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def slug(self) -> str:
        """The run's name without its configuration hash."""
        name = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{self.scenario.name}-{self.method.label}")
        return f"{name}-s{self.seed}"

    @property
    def run_id(self) -> str:
        return f"{self.slug}-{self.config_hash[:8]}"


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
    """Check methods, hyperparameters, data and models before anything is written."""
    for i, sc in enumerate(suite.scenarios):
        try:
            reject_unknown(sc.optim, OPTIM, what="optimizer setting", field="optim")
            for m in sc.methods:
                check_method(m.name, sc.method_params(m), sc.kind)
            data = sc.build(runs[0].seed if runs else 0, data_root)
            build_model(data.input_shape, data.num_classes, **sc.model)
            if sc.kind == "transfer" and data.target_labelled is None:
                needing = [m.name for m in sc.methods
                           if "target_labelled" in check_method(m.name, {}, sc.kind).needs]
                if needing:
                    raise InputError("k", f"is 0 but {needing[0]!r} trains on labelled target "
                                     "samples", expected="k >= 1 labelled target samples per class")
        except InputError as exc:
            raise exc.within(suite.path, f"scenario[{i}]") from None


def _write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """``write`` a file into a temporary sibling, sync it, then rename it to ``path``: a
    reader (or a killed sweep) sees the old file or the whole new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    with os.fdopen(fd, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_json_atomic(path: Path, record: dict) -> None:
    _write_atomic(path, lambda fh: fh.write(json.dumps(record, indent=1,
                                                       default=float).encode()))


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
    budget = Budget(**{"batch_size": 64, **sc.budget})
    if "epochs" not in sc.budget and "steps" not in sc.budget:
        budget.epochs = 10
    return entry, method, budget


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
        record = {"accuracy_matrix": R.tolist(), "protocol": data.protocol,
                  "metrics": {"acc": float(np.mean(R[-1]))} if joint else summarize(R)}
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
                "device": str(self.device), "versions": versions()}

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
    with ProcessPoolExecutor(jobs - 1, mp_context=ctx, initializer=_init_pool_worker,
                             initargs=(device, data_root, options, threads, os.getpid())
                             ) as pool, \
            _torch_threads(threads):
        futures = {pool.submit(_pool_run, run): run for run in pending}
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


def _write_log(out: Path, record: dict) -> None:
    """``OUT/logs/<run_id>.log``: the run's configuration, outcome, metrics, timings and loss
    curve, or its error and traceback, in plain text."""
    lines = [f"run {record['run_id']} ({record['status']}, finished {record['finished']})",
             f"device {record['device']}; versions {record['versions']}",
             f"config {json.dumps(record['config'], sort_keys=True)}"]
    if record["status"] == "ok":
        lines.append("metrics " + ", ".join(f"{k}={v:.4g}" for k, v in record["metrics"].items()))
        lines.append(f"timings {record['timings']}")
        # one line per logged curve (a term logged only late in a run has fewer values)
        for name, values in record.get("curves", {}).items():
            lines.append(f"{name}: " + " ".join(f"{v:.4g}" for v in values))
    else:
        lines += [f"error {record['error']}", record.get("traceback", "")]
    text = "\n".join(lines) + "\n"
    _write_atomic(out / "logs" / f"{record['run_id']}.log", lambda fh: fh.write(text.encode()))


def _record_path(out: Path, run: RunSpec) -> Path:
    return out / "runs" / f"{run.run_id}.json"


def _retire_stale(out: Path, run: RunSpec) -> None:
    """Move records of the same scenario, method and seed made under another configuration
    (an edited suite) to ``OUT/stale/``, so results never mix configurations; nothing is
    deleted."""
    for old in (out / "runs").glob(f"{glob.escape(run.slug)}-*.json"):
        if old.name != f"{run.run_id}.json" and old.stem[len(run.slug) + 1:].isalnum():
            (out / "stale").mkdir(exist_ok=True)
            os.replace(old, out / "stale" / old.name)


def _finished(path: Path, run: RunSpec) -> bool:
    """A complete, successful record of this exact configuration exists."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return record.get("config_hash") == run.config_hash and record.get("status") == "ok"


def run_suite(suite: Suite, out: str | Path, *, runs: list[RunSpec], device: str = "auto",
              data_root: str | None = None,
              on_run: Callable[[RunSpec, dict], None] | None = None,
              save_features: bool = False, jobs: int = 1, executor: str = "local",
              address: str | None = None, precision: str = "fp32",
              compile: bool = False, parallel_seeds: bool = False) -> pd.DataFrame:
    """Execute ``runs`` (skipping finished ones) in process, in ``jobs`` processes (this one
    and ``jobs - 1`` workers) or as Ray tasks (``executor = "ray"``, cluster ``address``);
    write their records and a log per run (only this process writes), rebuild
    ``results.csv``. With ``save_features``, transfer runs save test-set features to
    ``OUT/features/``; ``precision`` and ``compile`` as in :func:`execute`;
    ``parallel_seeds`` as in :func:`execute_seeds` (in process)."""
    out = Path(out)
    resolve_device(device)  # fail early on a missing GPU
    pending = []
    for run in runs:
        path = _record_path(out, run)
        _retire_stale(out, run)
        if _finished(path, run):
            if on_run:
                on_run(run, json.loads(path.read_text()))
        else:
            pending.append(run)
    options = {"features": save_features, "precision": precision, "compile": compile}
    for run, record, sample in _results(pending, jobs, device, data_root, options, executor,
                                        address, parallel_seeds):
        if sample is not None:
            _write_atomic(out / "features" / f"{run.run_id}.npz",
                          lambda fh, sample=sample: np.savez_compressed(fh, **sample))
        _write_json_atomic(_record_path(out, run), record)
        _write_log(out, record)
        if on_run:
            on_run(run, record)
    return rebuild_results(out)


def load_records(out: str | Path) -> list[dict]:
    """Every readable run record under ``OUT/runs`` (unreadable ones are skipped), in the
    order of the suite (scenario, seed, method), whichever subset or process wrote them."""
    records = []
    for path in sorted(Path(out, "runs").glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(records, key=lambda r: r["index"] if isinstance(r.get("index"), list)
                  else [len(records)])


def load_features(out: str | Path, records: list[dict]
                  ) -> dict[tuple[str, str, str], dict[str, np.ndarray]]:
    """Saved test-set features of the runs (``records``) under ``OUT``, keyed by (scenario,
    method, seed)."""
    feats = {}
    for r in records:
        path = Path(out, "features", f"{r['run_id']}.npz")
        if r.get("status") == "ok" and path.is_file():
            with np.load(path) as f:
                feats[(r["scenario"], r["method"], str(r["seed"]))] = dict(f)
    return feats


def results_from_records(records: list[dict]) -> pd.DataFrame:
    """The tidy long table of all records, with derived metrics (NTG, gain over source-only,
    intransigence against the ``joint`` run of the same scenario and seed)."""
    rows = []
    for r in records:
        base = {"suite": r["suite"], "scenario": r["scenario"], "method": r["method"],
                "seed": r["seed"], "run_id": r["run_id"], "config_hash": r["config_hash"],
                "status": r["status"]}
        if r["status"] != "ok":
            rows.append({**base, "metric": "failed", "value": float("nan")})
            continue
        rows += [{**base, "metric": k, "value": v} for k, v in r["metrics"].items()]
    rows += _intransigence_rows(records)
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    ok = table[table["status"] == "ok"]
    if not ok.empty:
        table = pd.concat([table, transfer_gaps(ok)], ignore_index=True)
    return table


def _intransigence_rows(records: list[dict]) -> list[dict]:
    joint = {(r["scenario"], r["seed"]): r["accuracy_matrix"][-1] for r in records
             if r["status"] == "ok" and r["config"]["method"] == "joint"}
    rows = []
    for r in records:
        ref = joint.get((r["scenario"], r["seed"]))
        if r["status"] != "ok" or ref is None or r["config"]["method"] == "joint" \
                or "accuracy_matrix" not in r:
            continue
        rows.append({"suite": r["suite"], "scenario": r["scenario"], "method": r["method"],
                     "seed": r["seed"], "metric": "intransigence", "run_id": r["run_id"],
                     "config_hash": r["config_hash"], "status": "ok",
                     "value": intransigence(r["accuracy_matrix"], ref)})
    return rows


def rebuild_results(out: str | Path, records: list[dict] | None = None) -> pd.DataFrame:
    """Rebuild ``OUT/results.csv`` (and Parquet when pyarrow is present) from the records
    (read from ``OUT/runs`` unless given)."""
    out = Path(out)
    table = results_from_records(load_records(out) if records is None else records)
    _write_atomic(out / "results.csv", lambda fh: table.to_csv(fh, index=False))
    try:
        table.to_parquet(out / "results.parquet", index=False)
    except ImportError:
        pass
    return table
