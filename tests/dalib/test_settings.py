"""Same command, same numbers: the default thread count depends on the machine and the flags
only, the Python API uses it too, and a sweep under CPU load gives the numbers of an idle one."""

import multiprocessing
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from dalib.cli import main
from dalib.settings import check_resume, default_jobs, default_threads, usable_cores
from scenarios.errors import InputError

SUITE = """name = "load"
seeds = 2
[budget]
steps = 40
batch_size = 32
[[scenario]]
name = "rot"
kind = "transfer"
source = { dataset = "uci-digits" }
target = { dataset = "uci-digits", shifts = [{ name = "rotate", degrees = 30 }] }
methods = ["source-only", "dann"]
"""


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def test_default_threads_are_one_and_jobs_follow_the_usable_cores_not_the_load():
    cores = usable_cores()
    idle = [default_threads(), *(default_jobs(u) for u in (1, 3, 1000)), default_jobs(9, "cuda")]
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    spinners = [ctx.Process(target=_spin, args=(stop,)) for _ in range(cores)]
    for p in spinners:
        p.start()
    try:
        busy = [default_threads(), *(default_jobs(u) for u in (1, 3, 1000)),
                default_jobs(9, "cuda")]
    finally:
        stop.set()
        for p in spinners:
            p.join()
    assert idle == busy == [1, 1, min(3, cores), cores, 1]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_the_python_api_and_the_cli_default_to_one_thread_and_a_process_per_usable_core():
    # one usable core (as under `taskset -c N`): one process; the thread count is 1 anyway
    code = ("import os, torch; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))});"
            "torch.set_num_threads(7);"
            "from dalib.settings import default_jobs, torch_threads;"
            "seen = [];"
            "exec('with torch_threads(None) as n: seen.append((n, torch.get_num_threads()))');"
            "print(default_jobs(8), seen[0], torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["1", "(1,", "1)", "7"]  # and the caller's setting is restored after


def test_fit_transfer_trains_with_the_default_threads_and_restores_the_callers():
    from dalib import build_method
    from dalib.engine import Budget, Trace, fit_transfer
    from dalib.models import build_model
    from scenarios import build_transfer
    from scenarios.datasets import load_uci_digits

    uci = load_uci_digits()
    sc = build_transfer("t", uci, uci, seed=0)
    method = build_method("source-only", build_model(sc.input_shape, sc.num_classes))
    seen = []
    update = method.update
    method.update = lambda batch: (seen.append(torch.get_num_threads()), update(batch))[1]
    before = torch.get_num_threads()
    torch.set_num_threads(1 if default_threads() > 1 else 2)
    try:
        fit_transfer(method, sc, Budget(steps=2), torch.device("cpu"), 0, Trace())
        assert set(seen) == {default_threads()}
        seen.clear()
        fit_transfer(method, sc, Budget(steps=2), torch.device("cpu"), 0, Trace(), threads=1)
        assert set(seen) == {1} and torch.get_num_threads() != default_threads()
    finally:
        torch.set_num_threads(before)


def test_a_sweep_under_cpu_load_gives_the_numbers_of_an_idle_one(tmp_path):
    suite = tmp_path / "load.toml"
    suite.write_text(SUITE)
    assert main(["run", str(suite), "--out", str(tmp_path / "idle"), "--no-report"]) == 0
    ctx = multiprocessing.get_context("fork")
    stop = ctx.Event()
    spinners = [ctx.Process(target=_spin, args=(stop,)) for _ in range(usable_cores())]
    for p in spinners:
        p.start()
    try:
        assert main(["run", str(suite), "--out", str(tmp_path / "busy"), "--no-report"]) == 0
    finally:
        stop.set()
        for p in spinners:
            p.join()
    tables = [pd.read_csv(tmp_path / d / "results.csv").sort_values(
        ["method", "seed", "metric"], ignore_index=True) for d in ("idle", "busy")]
    pd.testing.assert_frame_equal(*tables)  # same kernels, same order: bit for bit


def test_a_resume_under_other_settings_names_the_setting_and_the_matching_flag():
    record = {"run_id": "r-s0-1", "status": "ok",
              "settings": {"threads": 2, "device": "cpu", "precision": "fp32",
                           "compile": False, "pack": 64, "torch": "2.14.1", "kernels": "AVX2"}}
    same = dict(record["settings"])
    check_resume([record], same)
    check_resume([{**record, "status": "failed"}], {**same, "threads": 1})  # re-run anyway
    for key, value, flag in (("threads", 1, "--threads 2"), ("pack", 1, "--pack 64"),
                             ("precision", "bf16", "--precision fp32"),
                             ("compile", True, "no --compile"),
                             ("channels_last", True, "no --channels-last"),  # not recorded
                             ("kernels", "AVX512", "ATEN_CPU_CAPABILITY=avx2")):
        with pytest.raises(InputError) as err:
            check_resume([record], {**same, key: value})
        text = str(err.value)
        assert text.startswith("--out: holds runs trained with") and flag in text, text
        assert "\n" not in text
    with pytest.raises(InputError, match="a dalib that records them"):
        check_resume([{**record, "settings": None}], same)


def test_a_resume_keeps_the_thread_count_of_the_finished_runs():
    from dalib.settings import resumed_threads

    def rec(threads, status="ok"):
        return {"status": status, "settings": {"threads": threads}}

    assert resumed_threads([]) is None
    assert resumed_threads([rec(1), rec(1), rec(4, "failed")]) == 1
    assert resumed_threads([rec(1), rec(2)]) is None  # mixed: check_resume names the clash
