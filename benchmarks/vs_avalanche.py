"""dalib's continual strategies against Avalanche's, and against a bare PyTorch loop.

Split MNIST (5 tasks x 2 classes, class-IL) from ../shared/data, MLP 784-400-400-10 (no batch
norm), SGD lr 0.01 momentum 0.9, batch 64, 5 epochs per task, the same model and optimizer
for every run (Avalanche's strategies through dalib's bridge, so data and evaluation are
identical). The bare loop is the floor: naive fine-tuning, and replay with a reservoir buffer
of 500 written directly in PyTorch.

    .venv/bin/python benchmarks/vs_avalanche.py [--seeds 0 1 2] [--device cpu] [--epochs 5]

Prints ACC, forgetting and the training wall time of each, and the time ratios. dalib's and
Avalanche's times include dalib's evaluation after each task (the same for both, 5 x 2,000
test digits); the bare loop's does not.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from smoke import parse_args
from step_loop import sync

from analysis.continual import average_accuracy, forgetting
from dalib.continual.buffers import Buffer
from dalib.engine import (
    Budget,
    Trace,
    accuracy,
    fit_stream,
    resolve_device,
    seed_everything,
    versions,
)
from dalib.models import build_model
from dalib.registry import check_method
from scenarios.datasets import load_mnist
from scenarios.stream import build_stream

# reset_optimizer = False: Avalanche 0.6 keeps the optimizer's state across experiences
OPTIM = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0, "shift": 0,
         "reset_optimizer": False}
EPOCHS, BATCH = 5, 64


def model_for(stream):
    return build_model(stream.input_shape, stream.num_classes, arch="mlp", hidden=(400, 400),
                       batch_norm=False)


def run_method(name: str, stream, device, seed: int, epochs: int = EPOCHS,
               ) -> tuple[float, np.ndarray]:
    seed_everything(seed)
    method = check_method(name, OPTIM, "stream").build(model_for(stream).to(device), OPTIM)
    sync(device)
    start = time.perf_counter()
    R = fit_stream(method, stream, Budget(epochs=epochs, batch_size=BATCH), device, seed, Trace())
    sync(device)
    return time.perf_counter() - start, R


def bare(stream, device, seed: int, replay: bool, epochs: int = EPOCHS,
         ) -> tuple[float, np.ndarray]:
    """Naive or reservoir replay in plain PyTorch; evaluation outside the timer."""
    seed_everything(seed)
    model = model_for(stream).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    buffer = Buffer(500, "reservoir", g)

    class Probe:  # the accuracy helper's view of a method
        def __init__(self, m):
            self.model = m

        def predict(self, x, task=None):
            return self.model(x)

    rows = [[accuracy(Probe(model), t.test) for t in stream.tasks]]
    total = 0.0
    for task in stream.tasks:
        x, y = task.train.x.to(device), task.train.y.to(device)
        tid = task.train.task.to(device)
        steps = Budget(epochs=epochs, batch_size=BATCH).steps_for(len(y))
        start = time.perf_counter()
        perm, pos = None, len(y)
        for _ in range(steps):
            if pos + BATCH > len(y):
                perm, pos = torch.randperm(len(y), generator=g).to(device), 0
            idx = perm[pos:pos + BATCH]
            pos += BATCH
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if replay:
                if len(buffer):
                    bx, by, _ = buffer.sample(BATCH)
                    loss = loss + F.cross_entropy(model(bx), by)
                buffer.add(x[idx], y[idx], tid[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        total += time.perf_counter() - start
        rows.append([accuracy(Probe(model), t.test) for t in stream.tasks])
    return total, np.array(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=EPOCHS, help="per task")
    p.add_argument("--digits", type=int, help="use the first N MNIST digits (default: all)")
    # fewer digits or epochs leave EWC's penalty (strength 1e4) unstable at SGD lr 0.01, on
    # either side (2,000 x 5, 3,000 x 4 and 4,000 x 1 diverge): the smoke run keeps 5,000 x 5
    args = parse_args(p, seeds=[0], epochs=5, digits=5000)
    device = resolve_device(args.device)
    import avalanche

    print(f"avalanche {avalanche.__version__}, device {device}, torch threads "
          f"{torch.get_num_threads()}, {versions()}")
    results: dict[str, list[tuple[float, float, float]]] = {}
    for seed in args.seeds:
        mnist = load_mnist()
        digits = mnist.subset(range(0, len(mnist), len(mnist) // (args.digits or len(mnist))))
        # every output trained from the first task, as Avalanche's strategies do (dalib's
        # default trains the classes seen so far): both sides compute the same thing
        stream = build_stream("split-mnist", "split", [digits], seed=seed, tasks=5,
                              protocol="class-il", outputs="all")
        runs = {f"bare:{k}": (lambda k=k, s=stream, sd=seed: bare(s, device, sd, k == "replay",
                                                                  args.epochs))
                for k in ("naive", "replay")}
        for name in ("naive", "ewc", "replay", "lwf"):
            for lib in ("", "avalanche:"):
                runs[lib + name] = (lambda n=lib + name, s=stream, sd=seed:
                                    run_method(n, s, device, sd, args.epochs))
        for key, fn in runs.items():
            seconds, R = fn()
            results.setdefault(key, []).append((average_accuracy(R), forgetting(R), seconds))
            print(f"seed {seed} {key:18s} ACC {average_accuracy(R):6.2f} forgetting "
                  f"{forgetting(R):6.2f} time {seconds:6.2f}s", flush=True)
    print("\nmean over seeds (time ratios: avalanche / dalib, dalib / bare):")
    mean = {k: np.mean(v, axis=0) for k, v in results.items()}
    for name in ("naive", "ewc", "replay", "lwf"):
        ours, theirs = mean[name], mean["avalanche:" + name]
        floor = mean.get(f"bare:{name}")
        vs_floor = f"  dalib/bare {ours[2] / floor[2]:.2f}" if floor is not None else ""
        print(f"{name:7s} ACC dalib {ours[0]:6.2f} avalanche {theirs[0]:6.2f} | forgetting "
              f"{ours[1]:6.2f} / {theirs[1]:6.2f} | time {ours[2]:6.2f}s / {theirs[2]:6.2f}s "
              f"avalanche/dalib {theirs[2] / ours[2]:.2f}{vs_floor}")


if __name__ == "__main__":
    main()
