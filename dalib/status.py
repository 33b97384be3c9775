"""``dalib status DIR``: where a sweep stands, running or not: runs done, failed, running,
remaining and the time left, read from the files the sweep writes (``sweep.json``, the
records, the live logs) while it runs."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from dalib import store
from dalib.logging import ENDED
from scenarios.errors import InputError

SWEEP = "sweep.json"


def write_sweep(out: Path, suite: str, run_ids: list[str], work: list[float], jobs: int,
                pack: int) -> None:
    """Record what the sweep starting now will run, and each run's planned steps (``work``),
    for :func:`sweep_status`."""
    store.write_json(out / SWEEP, {"suite": suite, "runs": run_ids, "work": work,
                                   "started": time.time(), "pid": os.getpid(), "jobs": jobs,
                                   "pack": pack})


def end_sweep(out: Path) -> None:
    """Mark the sweep of ``OUT`` as ended (all its runs went through): ``dalib status`` then
    says finished even while the process that ran it lives on (the Python API)."""
    sweep = json.loads((out / SWEEP).read_text())
    store.write_json(out / SWEEP, {**sweep, "ended": time.time()})


def time_left(elapsed: float, done: float, left: float) -> float | None:
    """Seconds left at the pace so far: ``elapsed`` seconds trained ``done`` work (planned
    steps, so a run of a larger scenario weighs more), ``left`` remains; None before any
    work is done or when none is left."""
    return elapsed / done * left if done > 0 and left > 0 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_sweep(out: Path) -> dict:
    """``OUT/sweep.json``, checked: a missing, truncated or altered file is an input error
    naming it."""
    path = Path(out) / SWEEP
    if not path.is_file():
        raise InputError("DIR", f"{str(out)!r} has no {SWEEP}", expected="a directory "
                         "written by dalib run")
    try:
        sweep = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(SWEEP, f"cannot be read ({type(exc).__name__}: {str(exc)[:80]})",
                         expected="the sweep file dalib run writes (run the sweep again to "
                         "rewrite it)", source=str(path)) from None
    fields = {"suite": str, "runs": list, "started": (int, float), "pid": int}
    problem = "is not a JSON object" if not isinstance(sweep, dict) else next(
        (f"has no valid {k!r}" for k, kind in fields.items()
         if not isinstance(sweep.get(k), kind) or isinstance(sweep.get(k), bool)), None)
    if problem is None and not all(isinstance(r, str) for r in sweep["runs"]):
        problem = "has run ids that are not strings"
    work = sweep.get("work") if problem is None else None
    if problem is None and work is not None and (
            not isinstance(work, list) or len(work) != len(sweep["runs"])
            or not all(isinstance(w, int | float) and not isinstance(w, bool) and w >= 0
                       for w in work)):
        problem = "has a 'work' list that does not match its runs"
    if problem:
        raise InputError(SWEEP, problem, expected="the sweep file dalib run writes (run the "
                         "sweep again to rewrite it)", source=str(path))
    return sweep


def _ended(text: str) -> tuple[str, float] | None:
    """A live log's end line (the run trained; its record is on its way): status and time."""
    lines = text.splitlines()
    found = re.fullmatch(rf"{ENDED} (\w+) ([\d.]+)", lines[-1]) if lines else None
    return (found.group(1), float(found.group(2))) if found else None


def sweep_status(out: Path) -> dict:
    """The latest sweep of ``OUT``: its runs by state, whether its process is alive, and the
    estimated time left (:func:`time_left`, from this sweep's pace so far). While the sweep
    runs, a run that has trained but whose record the main process has not written yet (it
    waits for its pack, or for the main process to collect a worker's results) counts as
    done or failed; once the sweep has ended, only a record makes a run done or failed, and
    a run that started without leaving one is ``interrupted`` (it runs again on resume)."""
    sweep = read_sweep(out)
    records = {r["run_id"]: r for r in store.read_records(Path(out)).records}
    alive = "ended" not in sweep and _alive(int(sweep["pid"]))
    state: dict[str, list[str]] = {"done": [], "failed": [], "running": [], "remaining": []}
    latest: dict[str, str] = {}  # the last line of each running run's live log
    finished: dict[str, float] = {}  # when each run of this sweep finished
    for run_id in sweep["runs"]:
        record = records.get(run_id)
        log = Path(out) / "logs" / f"{run_id}.log"
        text = log.read_text(errors="replace") if record is None and log.is_file() else ""
        ended = _ended(text) if "(running" in text[:200] else None
        if record is not None:
            state["done" if record["status"] == "ok" else "failed"].append(run_id)
            finished[run_id] = _finished_at(record)
        elif ended is not None and alive:
            state["done" if ended[0] == "ok" else "failed"].append(run_id)
            finished[run_id] = ended[1]
        elif "(running" in text[:200]:
            state["running"].append(run_id)
            latest[run_id] = (text.splitlines() or [""])[-1]
        else:
            state["remaining"].append(run_id)
    if not alive:
        state["interrupted"] = state.pop("running")
    work = dict(zip(sweep["runs"], sweep.get("work") or [1] * len(sweep["runs"]), strict=True))
    finished_now = [r for r, when in finished.items() if when >= sweep["started"]]
    elapsed = time.time() - sweep["started"]
    in_progress = state.get("running", state.get("interrupted", []))
    # steps the running runs have logged (with planned steps in sweep.json)
    partial = sum(min(work[r], _logged_step(latest[r])) for r in in_progress) \
        if sweep.get("work") else 0
    eta = time_left(elapsed, sum(work[r] for r in finished_now) + partial,
                    sum(work[r] for r in in_progress + state["remaining"]) - partial
                    ) if alive else None
    errors = {r: records[r].get("error", "") if r in records else "(record being written)"
              for r in state["failed"]}
    return {**sweep, "alive": alive, "state": state, "eta_s": eta, "elapsed_s": elapsed,
            "latest": latest, "errors": errors}


def _logged_step(line: str) -> int:
    """The step of a live log line (``step 250: loss=...``), 0 for any other line."""
    found = re.match(r"step (\d+):", line)
    return int(found.group(1)) if found else 0


def _finished_at(record: dict) -> float:
    try:
        return time.mktime(time.strptime(record["finished"][:19], "%Y-%m-%d %H:%M:%S"))
    except (KeyError, ValueError):
        return 0.0


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min" if hours else f"{m} min {s} s" if m else f"{s} s"


def format_status(out: Path, status: dict) -> str:
    """The status as text: a summary line, then the running and failed runs."""
    state = status["state"]
    counts = ", ".join(f"{len(v)} {k}" for k, v in state.items())
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status["started"]))
    if not status["alive"]:  # what a resume runs: the interrupted runs and the rest
        left = len(state["interrupted"]) + len(state["remaining"])
        counts = (f"{len(state['done'])} done, {len(state['failed'])} failed, {left} to run "
                  f"({len(state['interrupted'])} interrupted, {len(state['remaining'])} not "
                  "started)")
    if status["alive"]:
        head = (f"running (pid {status['pid']}, started {started}, "
                f"{_duration(status['elapsed_s'])} ago)")
        tail = f"; about {_duration(status['eta_s'])} left" if status["eta_s"] else ""
    elif state["interrupted"] or state["remaining"]:
        head = (f"not running: interrupted (started {started}); `dalib run` with the same "
                "suite and --out resumes it")
        tail = ""
    else:
        head, tail = f"finished (started {started})", ""
    lines = [f"suite {status['suite']} in {out}: {head}",
             f"{len(status['runs'])} runs: {counts}{tail}"]
    label = "running" if status["alive"] else "interrupted"
    lines += [f"  {label}: {r}  {line}" for r, line in status["latest"].items()]
    lines += [f"  failed: {r}: {e}" for r, e in status["errors"].items()]
    return "\n".join(lines)
