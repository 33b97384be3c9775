"""Live logging of a sweep's runs: one small interface (a run started, its losses every
``log_every`` steps, it ended) and its writers.

Every run writes ``OUT/logs/<run_id>.log`` as it trains (:class:`FileLogger`; the runner
replaces it with the full log when the run ends). Off a terminal a line is printed when a run
starts (:class:`LineLogger`). Optional writers, chosen with ``--logger`` (repeatable):
``csv`` (``OUT/curves/<run_id>.csv``), ``tensorboard`` (event files under
``OUT/tensorboard/<run_id>/``, torch's ``SummaryWriter``; needs the ``tensorboard`` package)
and ``wandb`` (Weights & Biases, offline unless ``WANDB_MODE`` says otherwise; needs
``wandb``). Loggers live in the process that trains the run, pool workers included.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

from scenarios.errors import InputError

ENDED = "ended"  # the live log's last line once a run has trained: "ended ok|failed TIME"


class Logger:
    """Receives a run's start, its logged losses and its end."""

    def start(self, run_id: str, info: dict) -> None:
        """``info``: the run's scenario, method, seed and configuration."""

    def log(self, run_id: str, step: int, values: dict[str, float]) -> None:
        """The run's logged values at ``step`` (every ``log_every`` steps)."""

    def end(self, run_id: str, status: str) -> None:
        """The run ended (``ok`` or ``failed``)."""


class LineLogger(Logger):
    """A line on standard output when a run starts (when output is not a terminal, where the
    progress bars say it)."""

    def start(self, run_id: str, info: dict) -> None:
        print(f"{time.strftime('%H:%M:%S')} start {run_id} ({info['scenario']} "
              f"{info['method']} seed={info['seed']})", flush=True)


class FileLogger(Logger):
    """``OUT/logs/<run_id>.log`` as the run trains: a start line, then one line of losses per
    log step."""

    def __init__(self, out: Path) -> None:
        self.dir = Path(out) / "logs"

    def _write(self, run_id: str, line: str, mode: str = "a") -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / f"{run_id}.log", mode) as fh:
            fh.write(line + "\n")

    def start(self, run_id: str, info: dict) -> None:
        self._write(run_id, f"run {run_id} (running, started {time.strftime('%Y-%m-%d %H:%M:%S')}"
                    f"; pid {os.getpid()})", "w")

    def log(self, run_id: str, step: int, values: dict[str, float]) -> None:
        self._write(run_id, f"step {step}: " + " ".join(f"{k}={v:.4g}"
                                                        for k, v in values.items()))

    def end(self, run_id: str, status: str) -> None:
        """The last line until the runner writes the record (a pool worker's run waits for
        its pack and for the main process): ``dalib status`` counts the run as ended."""
        self._write(run_id, f"{ENDED} {status} {time.time():.3f}")


class CSVLogger(Logger):
    """``OUT/curves/<run_id>.csv``: step and every logged value, one row per log step."""

    def __init__(self, out: Path) -> None:
        self.dir = Path(out) / "curves"
        self.columns: dict[str, list[str]] = {}

    def log(self, run_id: str, step: int, values: dict[str, float]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{run_id}.csv"
        columns = self.columns.get(run_id)
        if columns is None or not path.exists():
            columns = self.columns[run_id] = sorted(values)
            path.write_text(",".join(["step", *columns]) + "\n")
        with open(path, "a") as fh:
            fh.write(",".join([str(step), *(repr(float(values[c])) if c in values else ""
                                            for c in columns)]) + "\n")


class TensorBoardLogger(Logger):
    """TensorBoard event files, one directory per run: ``OUT/tensorboard/<run_id>/``."""

    def __init__(self, out: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.factory = SummaryWriter
        self.dir = Path(out) / "tensorboard"
        self.writers: dict[str, object] = {}

    def start(self, run_id: str, info: dict) -> None:
        self.writers[run_id] = self.factory(str(self.dir / run_id))

    def log(self, run_id: str, step: int, values: dict[str, float]) -> None:
        writer = self.writers.get(run_id)
        if writer is not None:
            for name, value in values.items():
                writer.add_scalar(name, value, step)

    def end(self, run_id: str, status: str) -> None:
        writer = self.writers.pop(run_id, None)
        if writer is not None:
            writer.close()


class WandbLogger(Logger):
    """One Weights & Biases run per dalib run, offline by default (``wandb sync`` uploads
    later), its files under ``OUT/wandb``."""

    def __init__(self, out: Path) -> None:
        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")
        self.wandb, self.dir = wandb, Path(out)
        self.runs: dict[str, object] = {}

    def start(self, run_id: str, info: dict) -> None:
        self.runs[run_id] = self.wandb.init(project=info.get("suite", "dalib"), name=run_id,
                                            dir=str(self.dir), config=info.get("config", {}),
                                            reinit="create_new")

    def log(self, run_id: str, step: int, values: dict[str, float]) -> None:
        run = self.runs.get(run_id)
        if run is not None:
            run.log(values, step=step)

    def end(self, run_id: str, status: str) -> None:
        run = self.runs.pop(run_id, None)
        if run is not None:
            run.finish(exit_code=0 if status == "ok" else 1)


LOGGERS = {"csv": (CSVLogger, None), "tensorboard": (TensorBoardLogger, "tensorboard"),
           "wandb": (WandbLogger, "wandb")}


def check_loggers(names: list[str]) -> None:
    """Each ``--logger`` is known and its package installed (an input error otherwise)."""
    for name in names:
        if name not in LOGGERS:
            raise InputError("--logger", f"is {name!r}", expected=", ".join(LOGGERS))
        package = LOGGERS[name][1]
        if package and importlib.util.find_spec(package) is None:
            raise InputError("--logger", f"is {name!r} but {package} is not installed",
                             expected=f"pip install 'dalib-shift[{name}]'")


class Loggers(Logger):
    """The writers of one process: the live log file, a start line off a terminal, and the
    ``--logger`` ones."""

    def __init__(self, out: Path | None, names: tuple[str, ...] = ()) -> None:
        self.loggers: list[Logger] = []
        if out is not None:
            self.loggers.append(FileLogger(out))
            self.loggers += [LOGGERS[name][0](out) for name in names]
        if not sys.stdout.isatty():
            self.loggers.append(LineLogger())

    def start(self, run_id: str, info: dict) -> None:
        for logger in self.loggers:
            logger.start(run_id, info)

    def log(self, run_id: str, step: int, values: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.log(run_id, step, values)

    def end(self, run_id: str, status: str) -> None:
        for logger in self.loggers:
            logger.end(run_id, status)
