"""What a sweep leaves behind is exactly its runs: temp files are never records, names never
collide, unreadable files are named, one suite and one writer per directory, a run's identity
covers every number-determining setting, interruptions and full disks leave no partial files."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import dalib
from dalib import store
from dalib.cli import main
from dalib.settings import default_threads

SUITE = """
name = "{name}"
seeds = 2
[budget]
steps = 30
batch_size = 32

[[scenario]]
name = "{scenario}"
kind = "transfer"
source = {{ npz = "{src}" }}
target = {{ npz = "{tgt}" }}
k = 3
methods = {methods}
"""


def _suite(tmp_path, digits_npz, name="recs", scenario="t", methods='["source-only", "dann"]',
           extra="") -> Path:
    src, tgt = digits_npz
    path = tmp_path / f"{name}.toml"
    path.write_text(SUITE.format(name=name, scenario=scenario, src=src.name, tgt=tgt.name,
                                 methods=methods) + extra)
    return path


def _run(suite, out, *more) -> int:
    return main(["run", str(suite), "--out", str(out), "--no-report", *more])


def test_temp_records_are_never_read_and_leftovers_are_removed(tmp_path, digits_npz):
    suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
    assert _run(suite, out) == 0
    rows = len(pd.read_csv(out / "results.csv"))
    # a kill between fsync and rename leaves a complete record under a temp name
    record = next((out / "runs").glob("*.json"))
    leftover = out / "runs" / ".tmp-abc123.json"
    leftover.write_text(record.read_text().replace(record.stem, "ghost"))
    assert len(store.load_records(out)) == 4
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert _run(suite, out) == 0
    assert not leftover.exists() and len(pd.read_csv(out / "results.csv")) == rows


def test_clean_up_never_follows_a_symlink_out_of_out(tmp_path, digits_npz):
    suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
    elsewhere = tmp_path / "my-logs"
    elsewhere.mkdir()
    keep = elsewhere / ".tmp-notes.txt"  # a user's file in the folder OUT/logs points to
    keep.write_text("mine")
    out.mkdir()
    (out / "logs").symlink_to(elsewhere)
    (out / ".tmp-left.json").write_text("{}")  # a killed writer's leftover in OUT itself
    assert _run(suite, out, "--seeds", "1") == 0
    assert keep.read_text() == "mine" and not (out / ".tmp-left.json").exists()
    assert list(elsewhere.glob("*.log"))  # the logs went where the link points


@pytest.mark.parametrize("where", ["/proc/dalib-out", "dangling", "dangling/below", "file/x"])
def test_an_unusable_out_is_one_line_exit_2_and_nothing_is_written(tmp_path, digits_npz,
                                                                    capsys, where):
    suite = _suite(tmp_path, digits_npz)
    (tmp_path / "dangling").symlink_to(tmp_path / "missing")
    (tmp_path / "file").write_text("")
    out = where if where.startswith("/") else str(tmp_path / where)
    before = sorted(tmp_path.rglob("*"))
    capsys.readouterr()
    assert _run(suite, out) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("dalib: error: --out: ") and err.count("\n") == 0, err
    assert "Errno" not in err and captured.out == ""
    assert sorted(tmp_path.rglob("*")) == before and not Path("/proc/dalib-out").exists()


def test_names_that_map_to_one_file_stay_distinct_and_long_names_work(tmp_path, digits_npz,
                                                                       capsys):
    extra = "".join(f"""
[[scenario]]
name = "{name}"
kind = "transfer"
source = {{ npz = "{digits_npz[0].name}" }}
target = {{ npz = "{digits_npz[1].name}" }}
k = 3
methods = ["source-only"]
""" for name in ("a_b", "x" * 300))
    suite = _suite(tmp_path, digits_npz, scenario="a b", methods='["source-only"]', extra=extra)
    out = tmp_path / "out"
    assert _run(suite, out, "--seeds", "1") == 0
    files = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert len(files) == 3 and all(len(f) < 160 for f in files)
    table = pd.read_csv(out / "results.csv")
    assert set(table["scenario"]) == {"a b", "a_b", "x" * 300}
    assert _run(suite, out, "--seeds", "1") == 0  # nothing moved aside, all cached
    assert capsys.readouterr().out.count(" cached ") == 3
    assert not (out / "stale").exists()


def test_unreadable_files_are_named_and_the_exit_code_says_so(tmp_path, digits_npz, capsys):
    suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
    assert _run(suite, out) == 0
    first = next((out / "runs").glob("*.json"))
    first.write_text(first.read_text()[:100])  # truncated
    (out / "runs" / "empty.json").write_text("{}")
    (out / "runs" / "notes.json").write_text('{"note": "mine"}')
    before = (out / "results.csv").read_text()
    capsys.readouterr()
    elsewhere = tmp_path / "elsewhere"
    assert main(["report", str(out), "--out", str(elsewhere)]) == 1
    err = capsys.readouterr().err
    for name in (first.name, "empty.json", "notes.json"):
        assert f"skipped {out / 'runs' / name}" in err
    assert (out / "results.csv").read_text() == before  # report wrote nothing into DIR
    assert (elsewhere / "report.md").is_file() and not (out / "report.md").exists()
    # dalib run re-trains the truncated run, names the other two files and exits 1
    assert _run(suite, out) == 1
    err = capsys.readouterr().err
    assert "empty.json" in err and "notes.json" in err
    assert len(store.load_records(out)) == 4


def test_results_never_shrink_silently(tmp_path, digits_npz, capsys):
    suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
    assert _run(suite, out) == 0
    gone = next((out / "runs").glob("*dann-s1*.json"))
    gone.unlink()
    capsys.readouterr()
    assert _run(suite, out, "--seeds", "1") == 0
    err = capsys.readouterr().err
    assert "1 run(s) left results.csv" in err and gone.stem in err
    assert gone.stem not in set(pd.read_csv(out / "results.csv")["run_id"])
    # removing a method from the suite moves its records aside and says which
    suite.write_text(suite.read_text().replace('["source-only", "dann"]', '["source-only"]'))
    assert _run(suite, out, "--seeds", "1") == 0
    err = capsys.readouterr().err
    assert "moved to stale/" in err and "dann" in err
    table = pd.read_csv(out / "results.csv")
    assert set(table["method"]) == {"source-only"}
    assert any((out / "stale").glob("*dann*.json"))


def test_one_suite_per_directory(tmp_path, digits_npz, capsys):
    out = tmp_path / "out"
    assert _run(_suite(tmp_path, digits_npz, name="first"), out, "--seeds", "1") == 0
    stamp = (out / "suite.toml").read_text()
    capsys.readouterr()
    assert _run(_suite(tmp_path, digits_npz, name="second"), out) == 2
    err = capsys.readouterr().err
    assert "holds results of suite 'first', not 'second'" in err and err.count("\n") == 1
    assert (out / "suite.toml").read_text() == stamp


def test_one_writer_per_directory(tmp_path, digits_npz, capsys):
    suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
    with store.locked(out):
        assert _run(suite, out) == 2
        err = capsys.readouterr().err
        assert f"is in use by another dalib run (pid {os.getpid()})" in err
    assert _run(suite, out, "--seeds", "1") == 0  # released on exit


def test_identity_covers_defaults_data_and_version(tmp_path, digits_npz, capsys, monkeypatch):
    suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
    assert _run(suite, out, "--seeds", "1") == 0
    record = json.loads(next((out / "runs").glob("*dann*.json")).read_text())
    params = record["config"]["params"]
    assert params["weight"] is None and params["lr"] == 1e-3 and "grl_high" in params
    assert record["config"]["dalib"] == dalib.__version__
    assert record["config"]["model"] == {} and record["arch"] == "mlp"  # what "auto" chose
    assert record["settings"] == {"threads": default_threads(), "device": "cpu",
                                  "precision": "fp32", "compile": False,
                                  "channels_last": False, "pack": 64, "torch": torch.__version__,
                                  "kernels": torch.backends.cpu.get_cpu_capability()}
    assert record["config"]["files"]  # the contents of both .npz files
    capsys.readouterr()
    assert _run(suite, out, "--seeds", "1") == 0
    lines = capsys.readouterr().out
    assert lines.count(" cached ") == 2 and " ok " not in lines
    monkeypatch.setattr(dalib, "__version__", "9.9.9")
    monkeypatch.setattr("dalib.runspec.__version__", "9.9.9")
    assert _run(suite, out, "--seeds", "1") == 0
    assert capsys.readouterr().out.count(" ok ") == 2
    # editing a data file re-runs too
    src = digits_npz[0]
    with np.load(src) as f:
        x, y = f["x"], f["y"]
    np.savez(src, x=255 - x, y=y)
    assert _run(suite, out, "--seeds", "1") == 0
    assert capsys.readouterr().out.count(" ok ") == 2


def test_files_follow_the_umask(tmp_path, digits_npz):
    old = os.umask(0o022)
    try:
        suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
        store.UMASK = 0o022
        assert main(["run", str(suite), "--out", str(out), "--seeds", "1"]) == 0
    finally:
        os.umask(old)
        store.UMASK = store._umask()
    for path in [*(out / "runs").glob("*.json"), out / "results.csv", out / "suite.toml",
                 *(out / "logs").glob("*.log")]:
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_a_full_disk_gives_one_line_and_leaves_no_temp_files(tmp_path, digits_npz, capsys,
                                                             monkeypatch):
    suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
    real = os.fsync
    calls = [0]

    def full(fd):
        calls[0] += 1
        if calls[0] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(store.os, "fsync", full)
    assert _run(suite, out) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no space left to write" in err, err
    assert not list(out.rglob(".tmp-*"))
    monkeypatch.setattr(store.os, "fsync", real)
    assert _run(suite, out) == 0
    assert len(store.load_records(out)) == 4


def _interrupt(suite: Path, out: Path, jobs: int) -> subprocess.CompletedProcess:
    """``dalib run`` in its own process group, Ctrl-C to the group (as a terminal sends it)
    once the first record is written."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dalib.cli", "run", str(suite), "--out",
                             str(out), "--no-report", "--jobs", str(jobs), "--seeds", "6"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "runs").glob("*.json")):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    out_text, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out_text, err)


@pytest.mark.parametrize("jobs", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_ctrl_c_says_how_to_resume_and_leaves_no_partial_files(tmp_path, digits_npz, jobs):
    suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
    done = _interrupt(suite, out, jobs)
    assert done.returncode == 130, done.stderr
    err = done.stderr.strip()
    assert err.count("\n") == 0 and "interrupted:" in err and "run the same command" in err, err
    assert "Traceback" not in done.stderr
    assert not list(out.rglob(".tmp-*"))
    assert main(["run", str(suite), "--out", str(out), "--no-report", "--seeds", "6",
                 "--jobs", str(jobs)]) == 0
    assert len(store.load_records(out)) == 12


def test_a_copied_record_of_another_configuration_is_never_counted_twice(tmp_path, digits_npz,
                                                                         capsys):
    suite, out = _suite(tmp_path, digits_npz), tmp_path / "out"
    assert _run(suite, out, "--seeds", "1") == 0
    path = next((out / "runs").glob("*dann*.json"))
    old = json.loads(path.read_text())
    old.update(run_id="t-dann-s0-00000000", config_hash="0" * 16, finished="2000-01-01")
    old["metrics"]["target_acc"] = 0.0
    (out / "runs" / "t-dann-s0-00000000.json").write_text(json.dumps(old))
    capsys.readouterr()
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert "not counted" in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "rep" / "tables" / "aggregate.csv")
    row = table[(table.method == "dann") & (table.metric == "target_acc")]
    assert row["n"].tolist() == [1] and row["mean"].item() > 0
    assert _run(suite, out, "--seeds", "1") == 0
    assert (out / "stale" / "t-dann-s0-00000000.json").is_file()
