"""Task-free online streams: one pass, no boundaries told, anytime evaluation."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dalib.cli import main
from dalib.engine import Budget, Trace
from dalib.models import build_model
from dalib.registry import build_method
from dalib.taskfree import fit_taskfree
from scenarios.datasets import load_uci_digits
from scenarios.stream import build_stream


def test_one_pass_in_order_outputs_of_seen_classes_and_anytime_points():
    stream = build_stream("s", "split", [load_uci_digits()], seed=0, tasks=5, online=True,
                          blurry=10, anytime=3)
    torch.manual_seed(0)
    method = build_method("naive", build_model(stream.input_shape, 10), augmentation="none")
    seen_at_update, labels = [], []
    update = method.update

    def spy(batch):
        labels.append(batch["train"].y.clone())
        seen_at_update.append(method.active.clone())
        return update(batch)

    method.update = spy
    before = {"boundaries": 0}
    method.before_task = lambda task: before.update(boundaries=before["boundaries"] + 1)
    curve: list[list[float]] = []
    R = fit_taskfree(method, stream, Budget(epochs=1, batch_size=10), torch.device("cpu"), 0,
                     Trace(), curve)
    n = sum(len(t.train) for t in stream.tasks)
    assert len(labels) == sum(len(t.train) // 10 for t in stream.tasks)
    assert all(10 <= len(y) < 20 for y in labels) and Budget(batch_size=10).single_pass(9) == 1
    assert sum(len(y) for y in labels) == n  # every sample once
    assert before["boundaries"] == 0  # never told where a task ends
    seen = torch.zeros(10, dtype=torch.bool)
    for y, active in zip(labels, seen_at_update, strict=True):
        seen[y] = True
        assert torch.equal(active, seen)  # the outputs of the classes seen so far
    assert R.shape == (6, 5) and len(curve) == 15
    assert curve[-1][0] == n and all(a[0] < b[0] for a, b in zip(curve, curve[1:], strict=False))


SUITE = """
name = "online"
seeds = 3
[budget]
batch_size = 10
[model]
arch = "mlp"
hidden = [100]
[optim]
optimizer = "sgd"
lr = 0.1
momentum = 0.0
weight_decay = 0.0
[[scenario]]
name = "split"
kind = "stream"
data = { dataset = "uci-digits" }
stream = "split"
tasks = 5
online = true
blurry = 10
anytime = 2
methods = METHODS
"""


def _suite(tmp_path, methods, budget=""):
    path = tmp_path / "online.toml"
    path.write_text(SUITE.replace("METHODS", methods).replace("batch_size = 10",
                                                              "batch_size = 10\n" + budget))
    return path


@pytest.mark.parametrize("methods, budget, message", [
    ('["naive", "ewc"]', "", "methods[1]: 'ewc' acts at task boundaries"),
    ('["naive"]', "epochs = 3", "budget.epochs: is 3 in a task-free stream"),
])
def test_task_free_streams_refuse_boundary_methods_and_epochs(tmp_path, capsys, methods, budget,
                                                               message):
    suite = _suite(tmp_path, methods, budget)
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-report"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_online_er_and_gdumb_beat_naive_on_a_single_blurry_pass(tmp_path):
    suite = _suite(tmp_path, '["naive", { name = "replay", memory = 200 }, '
                   '{ name = "gdumb", memory = 200, passes = 16 }]')
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-report",
                 "--jobs", "1"]) == 0
    t = pd.read_csv(tmp_path / "out" / "results.csv")
    for metric in ("acc", "anytime_acc"):
        v = t[t["metric"] == metric].pivot(index="seed", columns="method", values="value")
        assert len(v) == 3, v
        for better in ("replay[memory=200]", "gdumb[memory=200,passes=16]"):
            assert (v[better] > v["naive"] + 5).all(), (metric, v)
    record = json.loads(next((tmp_path / "out" / "runs").glob("*naive*.json")).read_text())
    curve = np.array(record["anytime_curve"])
    assert curve.shape == (10, 2)
    assert np.isclose(record["metrics"]["anytime_acc"], curve[:, 1].mean())
