"""Sweeps survive SIGKILL and resume to the same results; a process pool gives the same
results as one process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from dalib.cli import main

SUITE = """
name = "sweep"
seeds = 2
[budget]
steps = 40
batch_size = 64

[[scenario]]
name = "t"
kind = "transfer"
source = {{ npz = "{src}" }}
target = {{ npz = "{tgt}" }}
k = 3
methods = ["source-only", "target-only", "dann"]
"""


def _suite(tmp_path, digits_npz):
    src, tgt = digits_npz
    path = tmp_path / "sweep.toml"
    path.write_text(SUITE.format(src=src.name, tgt=tgt.name))
    return path


def _table(out):
    t = pd.read_csv(out / "results.csv")
    return t.sort_values(["scenario", "method", "seed", "metric"], ignore_index=True)


def _stat(pid: int) -> list[str] | None:
    """State and parent of a process (``/proc/PID/stat`` after the command name)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and (st := _stat(int(p.name))) and int(st[1]) == pid]


def _alive(pids: list[int]) -> list[int]:
    return [p for p in pids if (st := _stat(p)) and st[0] != "Z"]


@pytest.mark.parametrize("jobs", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_a_killed_sweep_resumes_to_the_same_results(tmp_path, digits_npz, jobs):
    suite = _suite(tmp_path, digits_npz)
    full, part = tmp_path / "full", tmp_path / "part"
    run = ["run", str(suite), "--no-report", "--jobs", jobs, "--out"]
    assert main([*run, str(full)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "dalib.cli", *run, str(part)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((part / "runs").glob("*.json"))) < 2:
        time.sleep(0.05)
    children = _children(proc.pid)  # with --jobs 2: a worker and multiprocessing's tracker
    os.kill(proc.pid, signal.SIGKILL)  # mid-sweep, possibly mid-run or mid-write
    proc.wait()
    deadline = time.time() + 10  # the orphans notice and exit
    while time.time() < deadline and _alive(children):
        time.sleep(0.1)
    assert len(children) == (2 if jobs == "2" else 0) and not _alive(children)
    done = list((part / "runs").glob("*.json"))
    assert 2 <= len(done) < 6
    assert main([*run, str(part)]) == 0
    assert len(list((part / "runs").glob("*.json"))) == 6
    # the same runs in the same packs with the same threads: bit for bit, however it was cut
    pd.testing.assert_frame_equal(_table(full), _table(part))


@pytest.mark.slow
def test_a_process_pool_gives_the_same_results(tmp_path, digits_npz):
    suite = _suite(tmp_path, digits_npz)
    threads = torch.get_num_threads()
    assert main(["run", str(suite), "--out", str(tmp_path / "one"), "--no-report",
                 "--threads", "1"]) == 0
    assert main(["run", str(suite), "--out", str(tmp_path / "two"), "--no-report",
                 "--jobs", "2", "--threads", "1"]) == 0
    # one thread in every process: the same kernels in the same order, so bit for bit
    pd.testing.assert_frame_equal(_table(tmp_path / "one"), _table(tmp_path / "two"))
    assert torch.get_num_threads() == threads  # this process ran runs with 1, then restored
    records = [json.loads(p.read_text()) for p in (tmp_path / "two" / "runs").glob("*.json")]
    assert {r["settings"]["threads"] for r in records} == {1}


@pytest.mark.slow
def test_the_ray_executor_gives_the_same_results_as_local(tmp_path, digits_npz):
    import ray

    suite = _suite(tmp_path, digits_npz)
    # one thread, as each Ray task
    assert main(["run", str(suite), "--out", str(tmp_path / "local"), "--no-report",
                 "--threads", "1"]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["run", str(suite), "--out", str(tmp_path / "ray"), "--no-report",
                     "--executor", "ray"]) == 0
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(_table(tmp_path / "local"), _table(tmp_path / "ray"))  # as above
    logs = sorted((tmp_path / "ray" / "logs").glob("*.log"))
    assert len(logs) == 6 and "metrics target_acc=" in logs[0].read_text()


@pytest.mark.slow
def test_bf16_autocast_and_compile_train_and_are_recorded(tmp_path, digits_npz):
    import json

    suite = _suite(tmp_path, digits_npz)
    acc = {}
    for name, flags in (("fp32", []), ("bf16", ["--precision", "bf16"]),
                        ("compiled", ["--compile"])):
        out = tmp_path / name
        assert main(["run", str(suite), "--out", str(out), "--no-report", "--seeds", "1",
                     "--methods", "source-only", *flags]) == 0
        record = json.loads(next((out / "runs").glob("*.json")).read_text())
        assert record["precision"] == ("bf16" if name == "bf16" else "fp32")
        assert record["compiled"] == (name == "compiled")
        acc[name] = record["metrics"]["target_acc"]
    # same training, other arithmetic: close, not equal
    assert abs(acc["bf16"] - acc["fp32"]) < 5 and abs(acc["compiled"] - acc["fp32"]) < 2


@pytest.mark.slow
def test_channels_last_trains_a_cnn_is_recorded_and_never_mixed_on_resume(tmp_path, digits_npz):
    suite = tmp_path / "cnn.toml"
    suite.write_text(_suite(tmp_path, digits_npz).read_text().replace(
        'k = 3', 'k = 3\nmodel = { arch = "cnn" }'))
    acc = {}
    for name, flags in (("plain", []), ("nhwc", ["--channels-last"])):
        out = tmp_path / name
        assert main(["run", str(suite), "--out", str(out), "--no-report", "--seeds", "1",
                     "--methods", "source-only", *flags]) == 0
        record = json.loads(next((out / "runs").glob("*.json")).read_text())
        assert record["settings"]["channels_last"] == (name == "nhwc")
        acc[name] = record["metrics"]["target_acc"]
    assert abs(acc["nhwc"] - acc["plain"]) < 2  # same training, other summation order
    # resuming the channels-last directory without the flag is refused, nothing written
    assert main(["run", str(suite), "--out", str(tmp_path / "nhwc"), "--no-report",
                 "--seeds", "2", "--methods", "source-only"]) == 2
    assert len(list((tmp_path / "nhwc" / "runs").glob("*.json"))) == 1


def test_packed_runs_from_the_command_line(tmp_path, digits_npz):
    import json

    suite = _suite(tmp_path, digits_npz)
    suite.write_text(suite.read_text().replace('"dann"]', '"dann", "pseudo-label"]'))
    assert main(["run", str(suite), "--out", str(tmp_path / "seq"), "--no-report",
                 "--pack", "off"]) == 0
    assert main(["run", str(suite), "--out", str(tmp_path / "par"), "--no-report",
                 "--pack", "auto"]) == 0
    records = {(r["method"], r["seed"]): r for r in (
        json.loads(p.read_text()) for p in (tmp_path / "par" / "runs").glob("*.json"))}
    assert records["source-only", 0]["pack"] == {"size": 2, "index": 0}
    assert records["target-only", 1]["pack"] == {"size": 2, "index": 1}
    assert records["dann", 1]["pack"] == {"size": 2, "index": 1}
    # pseudo-label rounds have no packed form: alone, and the record and log say why
    assert records["pseudo-label", 0]["pack"]["size"] == 1
    reason = records["pseudo-label", 0]["pack"]["reason"]
    assert "pseudo-label are not written for packed runs" in reason
    log = (tmp_path / "par" / "logs" / f"{records['pseudo-label', 0]['run_id']}.log")
    assert f"trained alone: {reason}" in log.read_text()
    seq, par = _table(tmp_path / "seq"), _table(tmp_path / "par")
    acc = (seq.metric == "target_acc")
    # supervised runs: the pack's kernels sum in another order, which moves a few of the ~270
    # target test samples at most (adversarial DANN amplifies it further: its packed and
    # separate runs agree statistically, tests/dalib/test_packing_equivalence.py)
    supervised = acc & seq.method.isin(["source-only", "target-only"])
    assert (seq[supervised]["value"] - par[supervised]["value"]).abs().max() < 3
    # pseudo-label trained alone both times: the same kernels in the same order
    pd.testing.assert_frame_equal(seq[acc & (seq.method == "pseudo-label")],
                                  par[acc & (par.method == "pseudo-label")])
