"""An output directory's files: atomic writes, the one-writer lock, run records and results.

Layout of ``OUT``: ``suite.toml`` (the suite that owns the directory), ``runs/<run_id>.json``
(one record per run, written atomically), ``logs/``, ``features/``, ``stale/`` (records of an
earlier version of the suite, moved aside, never deleted) and ``results.csv`` (rebuilt from the
records alone). A temporary file (``.tmp-*``) is never read as a record; leftovers of a killed
writer are removed when the next writer takes the directory.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from analysis.continual import intransigence
from analysis.stats import SEARCH_TRIAL
from analysis.transfer import transfer_gaps
from dalib.domain_validation import lodo_picks, lodo_rows
from dalib.search import selection_rows
from scenarios.errors import InputError

TMP_PREFIX = ".tmp-"
LOCK = ".dalib.lock"
SUBDIRS = ("runs", "logs", "features", "stale")
RESULT_COLUMNS = ["suite", "scenario", "method", "seed", "metric", "value", "run_id",
                  "config_hash", "status"]
RECORD_KEYS = {"run_id": str, "config_hash": str, "suite": str, "scenario": str, "method": str,
               "seed": int, "status": str, "config": dict}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()


class DiskFull(OSError):
    """A write failed for lack of space; its temporary file is already removed."""


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """``write`` a file into a temporary sibling, sync it, then rename it to ``path``: a
    reader (or a killed sweep) sees the old file or the whole new one, never half of it. The
    file gets the permissions of the user's umask; on any error the temporary file is
    removed (a full disk raises :class:`DiskFull`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX, suffix=path.suffix)
    try:
        os.fchmod(fd, 0o666 & ~UMASK)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(exc.errno, f"no space left to write {path}") from None
        raise


def _plain(value):
    """NumPy and torch scalars as numbers; anything else JSON cannot hold as text."""
    try:
        return value.item()
    except (AttributeError, ValueError):
        return str(value)


def write_json(path: Path, record: dict) -> None:
    write_atomic(path, lambda fh: fh.write(json.dumps(record, indent=1, default=_plain).encode()))


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda fh: fh.write(text.encode()))


def remove_temp_files(out: Path) -> None:
    """Delete what a killed writer left: ``.tmp-*`` files in ``OUT`` and its subfolders. A
    subfolder that is a symbolic link, or leads out of ``OUT``, is left alone: clean-up never
    deletes outside ``OUT``."""
    root = out.resolve()
    for folder in (out, *(out / d for d in SUBDIRS)):
        if folder != out and (folder.is_symlink() or not folder.resolve().is_relative_to(root)):
            continue
        if folder.is_dir():
            for tmp in folder.glob(f"{TMP_PREFIX}*"):
                if tmp.is_file() or tmp.is_symlink():
                    tmp.unlink(missing_ok=True)


def check_out(out: Path | str) -> None:
    """``--out`` must be a directory this user can create and write: checked before anything
    is written, by creating it (and removing again what was created) and a temporary file
    in it, so a path under ``/proc``, a link to a missing folder or a read-only disk is an
    input error naming it."""
    if not str(out).strip():
        raise InputError("--out", "is empty", expected="a directory path")
    out = Path(out)
    for path in (out, *out.parents):
        if path.is_symlink() and not path.exists():
            raise InputError("--out", f"{str(path)!r} is a symbolic link to "
                             f"{os.readlink(path)!r}, which does not exist",
                             expected="a directory, or a link to one")
    if out.exists() and not out.is_dir():
        raise InputError("--out", f"{str(out)!r} is a file", expected="a directory (new or "
                         "holding this suite's results)")
    created: list[Path] = []
    try:
        for path in reversed((out, *out.parents)):
            if not path.exists():
                path.mkdir()
                created.append(path)
        fd, probe = tempfile.mkstemp(dir=out, prefix=TMP_PREFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError("--out", f"{str(out)!r} cannot be written ({exc.strerror or exc})",
                         expected="a directory you can write to") from None
    finally:
        for path in reversed(created):
            try:
                path.rmdir()
            except OSError:
                pass


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold ``OUT``'s writer lock: a second ``dalib run`` on the same directory is refused,
    naming the process that holds it. The lock is the kernel's (``flock``), so it is released
    on any exit of its holder, a crash or SIGKILL included."""
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o666 & ~UMASK)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            raise InputError("--out", f"{str(out)!r} is in use by another dalib run (pid "
                             f"{holder})", expected="one run per output directory at a time: "
                             "wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_temp_files(out)
        yield
    finally:
        os.close(fd)  # releases the lock


def owner(out: Path) -> str | None:
    """The name of the suite whose results ``OUT`` holds (from its records, else its
    ``suite.toml``), or None for a new directory."""
    for path in sorted((out / "runs").glob("*.json")) if (out / "runs").is_dir() else []:
        record, _ = read_record(path)
        if record is not None:
            return record["suite"]
    try:  # a directory whose first run has not finished yet
        with open(out / "suite.toml", "rb") as fh:
            name = tomllib.load(fh).get("name")
    except (OSError, ValueError):
        return None
    return name if isinstance(name, str) else None


def read_record(path: Path) -> tuple[dict | None, str | None]:
    """A run record, or None and why it is not one."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__}: {str(exc)[:80]})"
    if not isinstance(record, dict):
        return None, "not a run record (not a JSON object)"
    for key, kind in RECORD_KEYS.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            return None, f"not a run record (no valid {key!r})"
    if record["status"] == "ok" and not isinstance(record.get("metrics"), dict):
        return None, "not a run record (status ok without metrics)"
    return record, None


@dataclass
class Records:
    """The run records of a directory and the files that were skipped, with the reason."""

    records: list[dict]
    skipped: list[tuple[Path, str]]
    paths: dict[str, Path]  # run id -> its file
    superseded: list[tuple[Path, str]] = field(default_factory=list)  # older runs, same key


def read_records(out: str | Path) -> Records:
    """Every run record under ``OUT/runs`` in the order of the suite (scenario, seed,
    method); temporary files are not records, and unreadable or malformed files are
    listed in ``skipped`` (never silently dropped). Two files with one run id count once."""
    records: dict[str, dict] = {}
    paths: dict[str, Path] = {}
    skipped = []
    folder = Path(out, "runs")
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name.startswith(TMP_PREFIX):
            continue
        record, why = read_record(path)
        if record is None:
            skipped.append((path, why))
        elif record["run_id"] in records:
            skipped.append((path, f"a second copy of run {record['run_id']}"))
        else:
            records[record["run_id"]] = record
            paths[record["run_id"]] = path
    # one record per (suite, scenario, method, seed): a copy of another configuration's record
    # is never counted twice; the latest finished one stands
    latest: dict[tuple, dict] = {}
    superseded: list[tuple[Path, str]] = []
    for r in sorted(records.values(), key=lambda r: str(r.get("finished", ""))):
        key = (r["suite"], r["scenario"], r["method"], r["seed"])
        if key in latest:
            old = latest[key]
            superseded.append((paths.pop(old["run_id"]), f"superseded by the later run "
                               f"{r['run_id']} of the same scenario, method and seed"))
        latest[key] = r
    ordered = sorted(latest.values(), key=lambda r: r["index"]
                     if isinstance(r.get("index"), list) else [len(latest)])
    return Records(ordered, skipped, paths, superseded)


def load_records(out: str | Path) -> list[dict]:
    """The readable run records under ``OUT/runs`` (see :func:`read_records`)."""
    return read_records(out).records


def results_from_records(records: list[dict]) -> pd.DataFrame:
    """The tidy long table of all records, with derived metrics (NTG, gain over source-only,
    intransigence against the ``joint`` run of the same scenario and seed) and the selected
    configuration of searched methods (:func:`dalib.search.selection_rows`) and the
    leave-one-domain-out picks (:func:`dalib.domain_validation.lodo_rows`). Each run of one
    configuration of a search also has a ``search_trial`` row (its index): reports rank the
    searched method (its selected configuration), never its configurations one by one."""
    rows = []
    for r in records:
        base = {"suite": r["suite"], "scenario": r["scenario"], "method": r["method"],
                "seed": r["seed"], "run_id": r["run_id"], "config_hash": r["config_hash"],
                "status": r["status"]}
        if r["status"] != "ok":
            rows.append({**base, "metric": "failed", "value": float("nan")})
            continue
        rows += [{**base, "metric": k, "value": v} for k, v in r["metrics"].items()]
        if isinstance(r.get("search"), dict):  # one configuration of a search: not a method
            rows.append({**base, "metric": SEARCH_TRIAL, "value": float(r["search"]["trial"])})
    rows += _intransigence_rows(records)
    picks = lodo_picks(records)  # leave-one-domain-out picks serve both
    rows += lodo_rows(records, picks)
    rows += selection_rows(records, picks)
    table = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    ok = table[table["status"] == "ok"]
    if not ok.empty:
        table = pd.concat([table, transfer_gaps(ok)], ignore_index=True)
    return table


def _intransigence_rows(records: list[dict]) -> list[dict]:
    joint = {(r["scenario"], r["seed"]): r["accuracy_matrix"][-1] for r in records
             if r["status"] == "ok" and r["config"].get("method") == "joint"}
    rows = []
    for r in records:
        ref = joint.get((r["scenario"], r["seed"]))
        if r["status"] != "ok" or ref is None or r["config"].get("method") == "joint" \
                or "accuracy_matrix" not in r:
            continue
        rows.append({"suite": r["suite"], "scenario": r["scenario"], "method": r["method"],
                     "seed": r["seed"], "metric": "intransigence", "run_id": r["run_id"],
                     "config_hash": r["config_hash"], "status": "ok",
                     "value": intransigence(r["accuracy_matrix"], ref)})
    return rows


def rebuild_results(out: str | Path, records: list[dict] | None = None
                    ) -> tuple[pd.DataFrame, list[str]]:
    """Rebuild ``OUT/results.csv`` (and Parquet when pyarrow is present) from the records
    (read from ``OUT/runs`` unless given); returns the table and the run ids the previous
    ``results.csv`` held that the new one does not (the caller names them)."""
    out = Path(out)
    table = results_from_records(load_records(out) if records is None else records)
    dropped: list[str] = []
    previous = out / "results.csv"
    if previous.is_file():
        try:
            before = set(pd.read_csv(previous, usecols=["run_id"])["run_id"].dropna())
            dropped = sorted(before - set(table["run_id"]))
        except (OSError, ValueError):
            pass
    write_atomic(previous, lambda fh: table.to_csv(fh, index=False))
    try:
        write_atomic(out / "results.parquet", lambda fh: table.to_parquet(fh, index=False))
    except ImportError:
        pass
    return table, dropped


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
