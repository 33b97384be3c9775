"""One run, start to end: seed, build the model and method, train, score checkpoints and
write nothing: the record (and feature sample) go back to the runner. :class:`Worker` turns
what a run raises into a failed record."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from analysis.continual import FWT_UNDEFINED, fwt_defined, summarize
from analysis.convergence import convergence
from dalib import kept
from dalib.engine import (
    LOG_EVERY,
    Budget,
    Trace,
    accuracy,
    fit_stream,
    fit_transfer,
    memory_budget,
    resolve_device,
    seed_everything,
    versions,
)
from dalib.logging import Loggers
from dalib.models import model_for
from dalib.online import (
    run_offline,
    run_online,
    run_online_pack,
    source_accuracy,
    stream_record,
    test_time_pack_reason,
    unadapted,
)
from dalib.pack.runs import method_pack_reason
from dalib.pack.train import fit_stream_pack, fit_transfer_pack, stream_pack_reason
from dalib.plugins import load_all as load_plugins
from dalib.registry import check_method
from dalib.regression import HIGHER_IS_BETTER as REGRESSION_DIRECTIONS
from dalib.regression import RegressionScorer, regression_metrics
from dalib.runspec import RunSpec, resolved_budget
from dalib.selection import HIGHER_IS_BETTER, CheckpointScorer, selection_metrics
from dalib.stamp import stamp
from dalib.store import write_atomic
from dalib.taskfree import fit_taskfree
from dalib.transferability import model_outputs, transferability_scores
from scenarios.formats import file_digest
from scenarios.stream import Stream
from scenarios.testtime import TestTimeScenario


def feature_sample(method, data, limit: int = 500) -> dict[str, np.ndarray]:
    """The model's features (``model.features``, eval mode) of up to ``limit`` samples of the
    source and target test sets, with their labels (for plots only, never for selection)."""
    out = {}
    for name, domain in (("source", data.source_test), ("target", data.target_test)):
        out[name] = model_outputs(method, domain.x[:limit])[0]
        out[f"y_{name}"] = domain.y[:limit].cpu().numpy()
    return out


def _prepare(run: RunSpec, data, device: torch.device, precision: str, compile: bool,
             channels_last: bool = False):
    """Seed, build the model (channels-last and compiled when asked) and the method, and the
    run's budget."""
    seed_everything(run.seed)
    sc = run.scenario
    entry = check_method(run.method.name, run.params, run.kind)
    model = model_for(data, **sc.model).to(device)
    if channels_last:  # 4-D weights NHWC: convolutions then run NHWC whatever the input
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model.backbone.compile()
    method = entry.build(model, run.params)
    method.precision = precision
    return entry, method, Budget(**resolved_budget(sc.budget))


def scorer_for(data, seed: int) -> CheckpointScorer | RegressionScorer:
    """The checkpoint scorer of a transfer run: of class predictions, or of continuous
    targets in a regression scenario."""
    return RegressionScorer(data, seed) if data.regression else CheckpointScorer(data, seed)


def _transfer_record(run: RunSpec, entry, method, data, scorer: CheckpointScorer, steps: int,
                     features: bool) -> tuple[dict, dict | None]:
    """A trained transfer run's record (selection metrics, transferability scores of
    source-trained models, checkpoints) and, with ``features``, its feature sample."""
    # selection criteria judge training on the source; baselines trained on target labels
    # alone (target-only, target-oracle) keep their final model
    criterion = run.selection if "source" in method.needs else "last"
    if data.regression:
        metrics, directions = regression_metrics(scorer.checkpoints, criterion), \
            REGRESSION_DIRECTIONS
    else:
        metrics, directions = selection_metrics(scorer.checkpoints, criterion), \
            HIGHER_IS_BETTER
    if entry.needs == ("source",) and not data.regression:  # score it for the target
        metrics.update(transferability_scores(method, data, seed=run.seed))
    record = {"steps": steps, "selection": criterion, "source_trained": "source" in method.needs,
              "checkpoints": scorer.checkpoints,
              "metrics": metrics, "higher_is_better": {c: up for c, up in directions.items()
                                                       if c != "last"}}
    sample = feature_sample(method, data) if features and hasattr(method.model, "features") \
        else None
    return record, sample


def _stream_record(data: Stream, R: np.ndarray, validation: list[list[float]], joint: bool
                   ) -> dict:
    """A trained stream run's record: its accuracy matrix (and the validation one) and
    metrics."""
    classes = [list(t.classes) for t in data.tasks]
    fwt = fwt_defined(data.protocol, classes)
    record = {"accuracy_matrix": R.tolist(), "protocol": data.protocol,
              "metrics": {"acc": float(np.mean(R[-1]))} if joint else
              summarize(R, data.protocol, classes)}
    if validation:  # the tasks' validation parts: selection reads these, never the tests
        record["accuracy_matrix_val"] = validation
        record["metrics"]["acc_val"] = float(np.mean(validation[-1]))
    if not fwt and not joint:
        record["undefined"] = {"fwt": FWT_UNDEFINED}
    return record


def model_kept(models: Path, run: RunSpec, record: dict) -> bool:
    """Whether the model file of the finished run ``record`` is the one it wrote: present,
    with the digest its record keeps (a replaced, damaged or missing file is not)."""
    path = kept.model_path(models, run)
    return path.is_file() and record.get("model_digest") == file_digest(path)


def _test_time(run: RunSpec, method, data: TestTimeScenario, budget: Budget,
               device: torch.device, trace: Trace, models: Path | None) -> dict:
    """A test-time scenario's run: its source run trains the source model (kept in
    ``models`` for the others) and reports it unadapted on the stream; every other run
    loads that model and adapts it online (:func:`dalib.online.run_online`)."""
    if run.saves_model:
        steps = fit_transfer(method, data.offline, budget, device, run.seed, trace,
                             threads=torch.get_num_threads())
        saved = {}
        if models is not None:
            state = {k: v.cpu() for k, v in method.model.state_dict().items()}
            path = kept.model_path(models, run)
            write_atomic(path, lambda fh: torch.save(state, fh))
            saved = {"model_digest": file_digest(path)}
        preds = unadapted(method.model, data, device)
        return {"steps": steps, **saved,
                **stream_record(preds, data, accuracy(method, data.offline.source_test))}
    start_from_source(run, method, data, device, models)
    preds = run_offline(method, data, device, run.seed) if data.mode == "offline" else \
        run_online(method, data, device)
    return test_time_record(run, method, data, preds)


def start_from_source(run: RunSpec, method, data: TestTimeScenario, device: torch.device,
                      models: Path | None) -> None:
    """Load the source run's trained model into ``method`` and start it."""
    path = kept.model_path(models, run.init) if models is not None else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"the source model of {run.init.run_id} is not in "
                                f"{models}: run the sweep again (it re-trains it)")
    method.model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    method.start({"source_val": data.offline.source_val.unlabelled()})


def test_time_record(run: RunSpec, method, data: TestTimeScenario, preds: np.ndarray) -> dict:
    return {"steps": 0, "init_from": run.init.run_id,
            **stream_record(preds, data, source_accuracy(method, data))}


def _test_time_pack(runs: list[RunSpec], methods: list, datas: list, device: torch.device,
                    models: Path | None, begin: Callable[[], Trace] | None
                    ) -> list[tuple[dict | str, dict | None]]:
    """Test-time runs of one method over seeds, adapted as one pack (continual mode):
    each from its own source model, on its own stream (:func:`run_online_pack`)."""
    reason = method_pack_reason(methods[0]) or test_time_pack_reason(datas)
    if reason:
        raise CannotPack(reason)
    for run, method, data in zip(runs, methods, datas, strict=True):
        start_from_source(run, method, data, device, models)
    if begin:
        begin()
    start = time.perf_counter()
    preds = run_online_pack(methods, datas, device)
    spent = (time.perf_counter() - start) / len(runs)
    out: list[tuple[dict | str, dict | None]] = []
    for s, (run, method, data) in enumerate(zip(runs, methods, datas, strict=True)):
        record = test_time_record(run, method, data, preds[s])
        record.update(curves={}, precision="fp32", compiled=False,
                      arch=getattr(method.model, "arch", None),
                      pack={"size": len(runs), "index": s},
                      timings={"train_s": spent, "total_s": spent})
        out.append((record, None))
    return out


def execute(run: RunSpec, data, device: torch.device, features: bool = False,
            precision: str = "fp32", compile: bool = False, trace: Trace | None = None,
            models: Path | None = None, keep: bool = False, channels_last: bool = False,
            ) -> tuple[dict, dict | None]:
    """Run one method on one scenario's data for one seed; returns its record and, with
    ``features``, the :func:`feature_sample` of a transfer run's final model (no I/O).
    ``precision = "bf16"`` trains under bfloat16 autocast (evaluation stays in float32);
    ``compile`` wraps the backbone in ``torch.compile``; ``channels_last`` converts the model
    to the channels-last memory format (NHWC convolutions, faster on GPUs); ``trace`` keeps
    the losses (and may pass them on to live loggers); ``models``: the folder of the source
    models test-time runs start from, and where ``keep`` writes a transfer or stream run's
    trained model (:mod:`dalib.kept`)."""
    entry, method, budget = _prepare(run, data, device, precision, compile, channels_last)
    trace = trace or Trace()
    start = time.perf_counter()
    sample = None
    if isinstance(data, Stream):
        validation: list[list[float]] = []
        curve: list[list[float]] = []
        R = fit_taskfree(method, data, budget, device, run.seed, trace, curve,
                         threads=torch.get_num_threads()) if data.online else \
            fit_stream(method, data, budget, device, run.seed, trace, validation,
                       threads=torch.get_num_threads())
        train_s = time.perf_counter() - start
        record = _stream_record(data, R, validation, getattr(method, "joint", False))
        if data.online:
            record["anytime_curve"] = curve
            record["metrics"]["anytime_acc"] = float(np.mean([a for _, a in curve]))
    elif isinstance(data, TestTimeScenario):
        record = _test_time(run, method, data, budget, device, trace, models)
        train_s = time.perf_counter() - start
    else:
        scorer = scorer_for(data, run.seed)
        steps = fit_transfer(method, data, budget, device, run.seed, trace,
                             lambda step: scorer.score(method, step),
                             threads=torch.get_num_threads())
        train_s = time.perf_counter() - start
        record, sample = _transfer_record(run, entry, method, data, scorer, steps, features)
    if keep and models is not None and not isinstance(data, TestTimeScenario):
        record.update(kept.save(models, run, method, data))
    record.update(curves=trace.to_dict(), precision=precision, compiled=compile,
                  arch=getattr(method.model, "arch", None),
                  timings={"train_s": train_s, "total_s": time.perf_counter() - start})
    add_convergence(record, trace.interval_losses())
    return record, sample


def add_convergence(record: dict, interval_losses: list[float]) -> None:
    """A transfer record's checkpoints get the mean training loss of the steps before each
    (``train_loss``), and the record its ``convergence``
    (:func:`analysis.convergence.convergence`: the training loss and the selection
    criterion still moving over the last checkpoints?) and a ``converged`` metric (1 or
    0)."""
    if "checkpoints" not in record:
        return
    for row, loss in zip(record["checkpoints"], interval_losses, strict=False):
        row["train_loss"] = loss
    selectable = [c for c in record["checkpoints"] if c.get("selectable", True)]
    criterion = record["selection"]
    scores = [c[criterion] for c in selectable] if criterion != "last" else []
    up = record.get("higher_is_better", {}).get(criterion, HIGHER_IS_BETTER.get(criterion, True))
    record["convergence"] = convergence([c["train_loss"] for c in selectable
                                         if "train_loss" in c], scores, up)
    record["metrics"]["converged"] = float(record["convergence"]["converged"])


class CannotPack(Exception):
    """Why the runs of a group cannot train as one pack (they run one by one)."""


class TooLarge(Exception):
    """A pack larger than the device's memory allows: ``fits`` runs do."""

    def __init__(self, fits: int) -> None:
        super().__init__(f"only {fits} runs fit in a pack")
        self.fits = fits


def run_bytes(method, data) -> int:
    """A rough size of one run in a pack: its trained parameters four times (weights,
    gradients, two moments) and its training inputs (the runs' data are stacked)."""
    params = sum(p.numel() * p.element_size() for module in method.trained_modules()
                 for p in module.parameters())
    parts = [t.train for t in data.tasks] if isinstance(data, Stream) else [data.source,
                                                                          data.target_train]
    return 4 * params + sum(d.x.numel() * d.x.element_size() for d in parts)


def pack_reason(methods: list, datas: list, compile: bool) -> str | None:
    """Why runs with these built methods and data cannot train as one pack, or None."""
    if compile:
        return "torch.compile is not applied to packs"
    reason = method_pack_reason(methods[0])
    if reason is None and isinstance(datas[0], Stream):
        reason = stream_pack_reason(datas)
    return reason


def execute_pack(runs: list[RunSpec], datas: list, device: torch.device,
                 features: bool = False, precision: str = "fp32", compile: bool = False,
                 begin: Callable[[], Trace] | None = None, models: Path | None = None,
                 keep: bool = False, channels_last: bool = False,
                 ) -> list[tuple[dict | str, dict | None]]:
    """Runs of one method that differ only in their seed and per-run hyperparameters,
    trained as one pack (:mod:`dalib.pack`): per run, the record :func:`execute` would give
    (with ``pack`` = its size and place, and the pack's time split evenly) or, for a run that
    diverged, the reason; the feature sample as in :func:`execute`. Raises
    :class:`CannotPack` before training when they cannot pack, and :class:`TooLarge` when the
    device's memory budget (:func:`~dalib.engine.memory_budget`: half a GPU's free memory, or
    ``$DALIB_DEVICE_MEMORY``) holds fewer runs (:func:`run_bytes` each). ``begin`` is called
    once they are known to pack, before training: it announces the runs and returns their
    trace."""
    prepared = [_prepare(r, d, device, precision, False, channels_last)
                for r, d in zip(runs, datas, strict=True)]
    methods = [m for _, m, _ in prepared]
    if isinstance(datas[0], TestTimeScenario):
        return _test_time_pack(runs, methods, datas, device, models, begin)
    reason = pack_reason(methods, datas, compile)
    if reason:
        raise CannotPack(reason)
    budget = memory_budget(device)
    fits = len(runs) if budget == float("inf") else \
        int(budget // max(1, run_bytes(methods[0], datas[0])))
    if fits < len(runs):
        raise TooLarge(max(1, fits))
    budget, seeds = prepared[0][2], [r.seed for r in runs]
    trace = begin() if begin else None
    start = time.perf_counter()
    results: list[dict] = []
    if isinstance(datas[0], Stream):
        validations: list[list[list[float]]] = [[] for _ in runs]
        matrices, pack = fit_stream_pack(methods, datas, budget, device, seeds, validations,
                                         trace, threads=torch.get_num_threads())
        results = [_stream_record(d, R, v, False)
                   for d, R, v in zip(datas, matrices, validations, strict=True)]
        samples = [None] * len(runs)
    else:
        scorers = [scorer_for(d, r.seed) for r, d in zip(runs, datas, strict=True)]
        steps, pack = fit_transfer_pack(methods, datas, budget, device, seeds,
                                        [lambda step, sc=sc, m=m: sc.score(m, step)
                                         for sc, m in zip(scorers, methods, strict=True)],
                                        trace, threads=torch.get_num_threads())
        results, samples = [], []
        for s, (run, (entry, method, _), data, scorer) in enumerate(
                zip(runs, prepared, datas, scorers, strict=True)):
            record, sample = ({}, None) if s in pack.failures else _transfer_record(
                run, entry, method, data, scorer, steps, features)
            results.append(record)
            samples.append(sample)
    train_s = (time.perf_counter() - start) / len(runs)
    out: list[tuple[dict | str, dict | None]] = []
    for s, (record, sample) in enumerate(zip(results, samples, strict=True)):
        if s in pack.failures:
            out.append((pack.failures[s], None))
            continue
        record.update(curves=pack.trace.to_dict(s), precision=precision, compiled=False,
                      arch=getattr(methods[s].model, "arch", None),
                      pack={"size": len(runs), "index": s},
                      timings={"train_s": train_s, "total_s": train_s})
        add_convergence(record, pack.trace.interval_losses(s))
        if keep and models is not None:
            record.update(kept.save(models, runs[s], methods[s], datas[s]))
        out.append((record, sample))
    return out


class Worker:
    """Runs one run at a time, building each (scenario, seed)'s data once in a row, and
    catches what a run raises: a failed run is a record with its reason, never an exception."""

    def __init__(self, device: str, data_root: str | None, features: bool,
                 keep: bool = False, precision: str = "fp32", compile: bool = False,
                 channels_last: bool = False, plugins: tuple[str, ...] = (), out: str | None = None,
                 loggers: tuple[str, ...] = (), settings: dict | None = None) -> None:
        load_plugins(list(plugins))  # a worker process registers what the suite's plugins do
        self.device = resolve_device(device)
        self.settings = settings or {}
        self.data_root = data_root
        self.options = {"features": features, "precision": precision, "compile": compile,
                        "channels_last": channels_last}
        self.built: dict[tuple[str, int], object] = {}
        self.loggers = Loggers(Path(out) if out else None, loggers)
        self.models = Path(out) / "models" if out else None
        self.keep = keep

    def _start(self, runs: list[RunSpec]) -> Trace:
        """Tell the loggers the runs started; their trace, which passes each log step's
        values (per run of a pack) on to the loggers."""
        for run in runs:
            self.loggers.start(run.run_id, {"suite": run.suite, "scenario": run.scenario.name,
                                            "method": run.method.label, "seed": run.seed,
                                            "config": run.config()})

        def on_log(step: int, logs: dict[str, torch.Tensor]) -> None:
            values = {k: v.detach().float().cpu() for k, v in logs.items()}
            for s, run in enumerate(runs):
                self.loggers.log(run.run_id, step, {k: float(v if v.dim() == 0 else v[s])
                                                    for k, v in values.items()})

        return Trace(runs[0].scenario.budget.get("log_every", LOG_EVERY), on_log)

    def data(self, run: RunSpec):
        """The run's scenario data, built once per (scenario, seed): the data of every seed of
        the latest scenario is kept (the runs of a sweep come scenario by scenario, seed by
        seed, or with ``--pack`` method by method over the seeds)."""
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
                "device": str(self.device),
                "settings": {**self.settings, "threads": torch.get_num_threads()},
                "versions": versions(), "stamp": stamp(self.device),
                **({"search": run.search} if run.search else {})}

    def __call__(self, run: RunSpec) -> tuple[dict, dict | None]:
        record = self.header(run)
        sample = None
        try:
            result, sample = execute(run, self.data(run), self.device, **self.options,
                                     trace=self._start([run]), models=self.models,
                                     keep=self.keep)
            record.update(result, status="ok")
        except Exception as exc:  # a failing run is recorded and the sweep goes on
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                          traceback=traceback.format_exc(limit=8))
        record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.loggers.end(run.run_id, record["status"])
        return record, sample

    def pack(self, runs: list[RunSpec], done: frozenset[str] = frozenset()
             ) -> Iterator[tuple[RunSpec, dict, dict | None]]:
        """Runs that may train as one pack (:func:`execute_pack`); where they cannot, or
        packing itself fails, one by one, each record saying why. Runs in ``done`` (finished
        before) train only where their pack does, so the others see the same pack."""
        if all(r.run_id in done for r in runs):
            return
        if len(runs) == 1:
            yield runs[0], *self(runs[0])
            return
        try:
            datas = [self.data(r) for r in runs]
            results = execute_pack(runs, datas, self.device, **self.options,
                                   begin=lambda: self._start(runs), models=self.models,
                                   keep=self.keep)
        except TooLarge as exc:  # packs the device's memory holds
            for start in range(0, len(runs), exc.fits):
                yield from self.pack(runs[start:start + exc.fits], done)
            return
        except Exception as exc:  # each run on its own, with the reason
            reason = str(exc) if isinstance(exc, CannotPack) else \
                f"packing failed ({type(exc).__name__}: {exc})"
            for run in (r for r in runs if r.run_id not in done):
                record, sample = self(run)
                yield run, {**record, "pack": {"size": 1, "reason": reason}}, sample
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        for run, (result, sample) in zip(runs, results, strict=True):
            record = self.header(run)
            if isinstance(result, str):
                record.update(status="failed", error=result, pack={"size": len(runs)})
            else:
                record.update(result, status="ok")
            record["finished"] = stamp
            self.loggers.end(run.run_id, record["status"])
            yield run, record, sample
