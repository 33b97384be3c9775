"""Live logging: a line per run start off a terminal, each run's log written as it trains,
`dalib status` on a running and on a killed sweep, and the CSV and TensorBoard loggers."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dalib.cli import main

SUITE = """name = "live"
seeds = [0, 1]
[budget]
steps = {steps}
batch_size = 32
checkpoints = 2
log_every = {log_every}
[[scenario]]
name = "rot"
kind = "transfer"
source = {{ dataset = "uci-digits" }}
target = {{ dataset = "uci-digits", shifts = [{{ name = "rotate", degrees = 30 }}] }}
methods = [{methods}]
"""


def _suite(tmp_path, steps=20, log_every=5, methods='"source-only", "dann"'):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(steps=steps, log_every=log_every, methods=methods))
    return path


def _records(out):
    return [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]


@pytest.mark.parametrize("pack", ["off", "auto"])
def test_off_a_terminal_each_run_prints_a_line_when_it_starts_and_when_it_ends(tmp_path, pack):
    """One start line per run, also for a method that cannot pack (trained alone)."""
    out = tmp_path / "out"
    suite = _suite(tmp_path, methods='"source-only", "pseudo-label"')
    proc = subprocess.run([sys.executable, "-m", "dalib.cli", "run", str(suite),
                           "--out", str(out), "--no-report", "--pack", pack],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    records = _records(out)
    assert len(records) == 4
    for record in records:
        starts = [i for i, line in enumerate(lines) if f"start {record['run_id']}" in line]
        assert len(starts) == 1, lines
        start = starts[0]
        end = next(i for i, line in enumerate(lines) if line.endswith(f"[{record['run_id']}]"))
        assert start < end and " ok (" in lines[end] and "sweep ETA" in lines[end]


def test_log_every_sets_the_curves_and_not_the_identity(tmp_path):
    ids = {}
    for every in (5, 10):
        out = tmp_path / f"every{every}"
        suite = _suite(tmp_path, log_every=every, methods='"source-only"')
        assert main(["run", str(suite), "--out", str(out), "--no-report"]) == 0
        records = _records(out)
        assert all(r["curves"]["step"] == list(range(0, 20, every)) for r in records)
        ids[every] = sorted(r["config_hash"] for r in records)
    assert ids[5] == ids[10]


def test_a_sweep_logs_as_it_trains_and_status_reports_it_running_then_killed(tmp_path, capsys):
    out = tmp_path / "out"
    suite = _suite(tmp_path, steps=100_000, log_every=20, methods='"source-only"')
    proc = subprocess.Popen([sys.executable, "-m", "dalib.cli", "run", str(suite), "--out",
                             str(out), "--no-report", "--pack", "off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        logs = []
        while time.time() < deadline:
            logs = list((out / "logs").glob("*.log")) if (out / "logs").is_dir() else []
            if logs and logs[0].read_text().count("\nstep ") >= 3:
                break
            time.sleep(0.2)
        text = logs[0].read_text()
        assert text.startswith(f"run {logs[0].stem} (running") and "step 40: loss=" in text
        capsys.readouterr()
        assert main(["status", str(out)]) == 0
        status = capsys.readouterr().out
        assert f"running (pid {proc.pid}" in status
        assert "2 runs: 0 done, 0 failed, 1 running, 1 remaining" in status
        assert f"running: {logs[0].stem}  step " in status
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert main(["status", str(out)]) == 0
    status = capsys.readouterr().out
    assert "not running: interrupted" in status
    assert "0 done, 0 failed, 2 to run (1 interrupted, 1 not started)" in status
    assert f"interrupted: {logs[0].stem}" in status


def test_status_of_a_finished_sweep_and_of_a_directory_without_one(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_suite(tmp_path, methods='"source-only"')), "--out", str(out),
                 "--no-report"]) == 0
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "out: finished (started" in text and "2 runs: 2 done, 0 failed, 0 to run" in text
    assert main(["status", str(tmp_path)]) == 2
    assert "has no sweep.json" in capsys.readouterr().err


def test_csv_and_tensorboard_loggers_write_every_curve(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    assert main(["run", str(_suite(tmp_path)), "--out", str(out), "--no-report",
                 "--logger", "csv", "--logger", "tensorboard"]) == 0
    for record in _records(out):
        curves, run_id = record["curves"], record["run_id"]
        rows = (out / "curves" / f"{run_id}.csv").read_text().splitlines()
        header = rows[0].split(",")
        assert header[0] == "step" and [int(r.split(",")[0]) for r in rows[1:]] == curves["step"]
        loss = [float(r.split(",")[header.index("loss")]) for r in rows[1:]]
        assert loss == pytest.approx(curves["loss"], rel=1e-6)
        events = EventAccumulator(str(out / "tensorboard" / run_id))
        events.Reload()
        scalars = events.Scalars("loss")
        assert [e.step for e in scalars] == curves["step"]
        assert [e.value for e in scalars] == pytest.approx(curves["loss"], rel=1e-5)


def _wandb_records(path) -> list:
    """The protobuf records of a W&B run file (``run-*.wandb``: a 7-byte header, then the
    LevelDB log format, 32 KiB blocks of chunks with a 7-byte header: CRC, length, type)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, chunk, records = 7, b"", []
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:  # a block's padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


@pytest.mark.slow  # wandb starts a service process per run
def test_wandb_logger_writes_one_offline_run_per_run_with_its_curve(tmp_path):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    proc = subprocess.run([sys.executable, "-m", "dalib.cli", "run", str(_suite(tmp_path)),
                           "--out", str(out), "--no-report", "--logger", "wandb"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    runs = {}
    for path in (out / "wandb").glob("offline-run-*/run-*.wandb"):  # offline by default
        records = _wandb_records(path)
        name = next(r.run.display_name for r in records if r.WhichOneof("record_type") == "run")
        history = [{i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in r.history.item}
                   for r in records if r.WhichOneof("record_type") == "history"]
        exits = [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"]
        runs[name] = history, exits
    assert len(runs) == 4
    for record in _records(out):
        history, exits = runs[record["run_id"]]
        assert exits == [0]
        assert [h["_step"] for h in history] == record["curves"]["step"]
        assert [h["loss"] for h in history] == pytest.approx(record["curves"]["loss"], rel=1e-6)


def test_an_unknown_or_missing_logger_exits_2(tmp_path, capsys, monkeypatch):
    import importlib.util

    suite = _suite(tmp_path)
    assert main(["run", str(suite), "--out", str(tmp_path / "a"), "--logger", "mlflow"]) == 2
    assert "--logger: is 'mlflow'" in capsys.readouterr().err
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    assert main(["run", str(suite), "--out", str(tmp_path / "b"), "--logger", "wandb"]) == 2
    assert "wandb is not installed" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_time_left_weighs_each_run_by_its_planned_steps(tmp_path):
    """A scenario trained 4x longer weighs 4x in the time left (sweep.json and end lines)."""
    from dalib.status import time_left

    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.format(steps=10, log_every=5, methods='"source-only"') + """
[[scenario]]
name = "long"
kind = "transfer"
source = { dataset = "uci-digits" }
target = { dataset = "uci-digits", shifts = [{ name = "rotate", degrees = 30 }] }
budget = { steps = 40 }
methods = ["source-only"]
""")
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out), "--no-report"]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    work = dict(zip(sweep["runs"], sweep["work"], strict=True))
    records = {r["run_id"]: r for r in _records(out)}
    long = [w for r, w in work.items() if records[r]["scenario"] == "long"]
    assert [w for r, w in work.items() if records[r]["scenario"] == "rot"] == [10, 10]
    assert long == [40, 40] and all(r["curves"]["step"][-1] == 35 for r in records.values()
                                    if r["scenario"] == "long")
    assert time_left(30.0, 20, 58) == pytest.approx(87.0)
    assert time_left(30.0, 0, 58) is None and time_left(30.0, 20, 0) is None


def test_status_counts_the_steps_running_runs_have_logged(tmp_path):
    """Two runs of 100 planned steps, none finished, one at step 50 after 50 s: 150 steps
    are left at one step a second."""
    from dalib.status import sweep_status

    (tmp_path / "logs").mkdir()
    (tmp_path / "sweep.json").write_text(json.dumps({
        "suite": "s", "runs": ["a", "b"], "work": [100, 100], "started": time.time() - 50,
        "pid": os.getpid(), "jobs": 1, "pack": 1}))
    (tmp_path / "logs" / "a.log").write_text("run a (running, started now)\n"
                                             "step 50: loss=0.5\n")
    status = sweep_status(tmp_path)
    assert status["state"]["running"] == ["a"] and status["state"]["remaining"] == ["b"]
    assert status["eta_s"] == pytest.approx(150, rel=0.05)


def test_status_counts_a_run_that_trained_before_its_record_is_written(tmp_path):
    """With --jobs 2 a worker's runs wait for the main process to write their records: their
    live logs end with an end line, and they count as done (the pace, and so the time left,
    does not jump when the records arrive)."""
    from dalib.status import sweep_status

    (tmp_path / "logs").mkdir()
    now = time.time()
    (tmp_path / "sweep.json").write_text(json.dumps({
        "suite": "s", "runs": ["a", "b", "c", "d"], "work": [100] * 4, "started": now - 40,
        "pid": os.getpid(), "jobs": 2, "pack": 1}))
    (tmp_path / "logs" / "a.log").write_text(f"run a (running, started now)\nstep 50: loss=1\n"
                                             f"ended ok {now - 20:.3f}\n")
    (tmp_path / "logs" / "b.log").write_text(f"run b (running, started now)\n"
                                             f"ended failed {now - 10:.3f}\n")
    (tmp_path / "logs" / "c.log").write_text("run c (running, started now)\nstep 50: loss=1\n")
    status = sweep_status(tmp_path)
    assert status["state"] == {"done": ["a"], "failed": ["b"], "running": ["c"],
                               "remaining": ["d"]}
    # 250 planned steps in 40 s; 150 left
    assert status["eta_s"] == pytest.approx(40 / 250 * 150, rel=0.05)


def test_after_a_sweep_ended_a_run_without_a_record_is_not_done(tmp_path, capsys):
    """A sweep of --jobs 2 killed while a worker's runs waited for their records: they ran
    (their logs end) but run again on resume, as do those that had started."""
    from dalib.status import format_status, sweep_status

    (tmp_path / "logs").mkdir()
    (tmp_path / "runs").mkdir()
    now = time.time()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "sweep.json").write_text(json.dumps({
        "suite": "s", "runs": ["a", "b", "c", "d"], "work": [100] * 4, "started": now - 40,
        "pid": dead.pid, "jobs": 2, "pack": 1}))
    (tmp_path / "logs" / "a.log").write_text(f"run a (running, started now)\nended ok {now:.3f}\n")
    (tmp_path / "logs" / "b.log").write_text("run b (running, started now)\nstep 50: loss=1\n")
    status = sweep_status(tmp_path)
    assert status["state"] == {"done": [], "failed": [], "interrupted": ["a", "b"],
                               "remaining": ["c", "d"]}
    assert "4 runs: 0 done, 0 failed, 4 to run (2 interrupted, 2 not started)" in \
        format_status(tmp_path, status)


@pytest.mark.parametrize("content, problem", [
    ('{"suite": "s", "runs": ["a"], "started": 1', "sweep.json: cannot be read (JSONDecodeError"),
    ("[1, 2]", "sweep.json: is not a JSON object"),
    ('{"suite": "s", "runs": "a", "started": 1, "pid": 1}', "sweep.json: has no valid 'runs'"),
    ('{"suite": "s", "runs": ["a"], "started": "x", "pid": 1}', "has no valid 'started'"),
    ('{"suite": "s", "runs": ["a"], "started": 1, "pid": 1, "work": [1, 2]}',
     "has a 'work' list that does not match its runs"),
])
def test_status_of_a_damaged_sweep_file_is_one_line(tmp_path, capsys, content, problem):
    (tmp_path / "sweep.json").write_text(content)
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and problem in err and "internal error" not in err, err
