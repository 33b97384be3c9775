"""Peak resident memory of a whole `dalib run` against Avalanche on the same workload.

    DALIB_DATA=../shared/data .venv/bin/python benchmarks/memory.py [--epochs 5]

Workload: Split MNIST (5 tasks x 2 classes, class-IL) from the MNIST files in ``$DALIB_DATA``,
MLP 784-400-400-10 (no batch norm: Avalanche's last batch of a task may hold one sample),
naive fine-tuning, batch 64, ``--epochs`` per task, one seed. Each side
runs in a fresh process whose maximum resident set size is read as ``/usr/bin/time -v``
reads it (``wait4``):

* ``dalib run`` of that suite, with and without its report;
* Avalanche 0.6's ``Naive`` strategy on its own benchmark of the same digits
  (``tensors_benchmark``, classes in pairs), the same model and AdamW, evaluating after each
  task as dalib does.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from smoke import parse_args

SUITE = """name = "split-mnist-memory"
seeds = 1
[budget]
epochs = {epochs}
batch_size = 64
[model]
arch = "mlp"
hidden = [400, 400]
batch_norm = false
[[scenario]]
name = "split-mnist-class-il"
kind = "stream"
data = {{ dataset = "mnist" }}
stream = "split"
tasks = 5
protocol = "class-il"
methods = ["naive"]
"""

DALIB = """
import sys
from dalib.cli import main
code = main(["run", {suite!r}, "--out", {out!r}] + {extra!r})
assert code == 0, code
"""

AVALANCHE = """
import os
import torch
from torch import nn
from torchvision.datasets import MNIST
from avalanche.benchmarks import tensors_benchmark
from avalanche.training.supervised import Naive

root = os.environ["DALIB_DATA"]
def tasks(train):
    d = MNIST(root, train=train)
    x, y = d.data.float().div(255).unsqueeze(1), d.targets
    return [(x[(y == 2 * t) | (y == 2 * t + 1)], y[(y == 2 * t) | (y == 2 * t + 1)])
            for t in range(5)]
bench = tensors_benchmark(train_tensors=tasks(True), test_tensors=tasks(False),
                          task_labels=[0] * 5)
torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400),
                      nn.ReLU(), nn.Linear(400, 10))
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
strategy = Naive(model, opt, nn.CrossEntropyLoss(), train_mb_size=64, train_epochs={epochs},
                 eval_mb_size=4096, device="cpu")
for experience in bench.train_stream:
    strategy.train(experience)
    strategy.eval(bench.test_stream)
"""


def peak(code: str) -> float:
    """MiB: the child's maximum resident set size as ``wait4`` reports it (what
    ``/usr/bin/time -v`` prints), whole process with its own children."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(child.stderr.read().strip().splitlines()[-1])
    return usage.ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    args = parse_args(p, epochs=1)
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "split.toml"
        suite.write_text(SUITE.format(epochs=args.epochs))
        rows = {
            "dalib run": peak(DALIB.format(suite=str(suite), out=f"{tmp}/a", extra=[])),
            "dalib run --no-report": peak(DALIB.format(suite=str(suite), out=f"{tmp}/b",
                                                       extra=["--no-report"])),
            "Avalanche Naive": peak(AVALANCHE.format(epochs=args.epochs)),
        }
    for name, mib in rows.items():
        print(f"{name}: peak {mib:.0f} MiB")


if __name__ == "__main__":
    main()
