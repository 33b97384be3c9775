"""Training time of S seeds at once (``--parallel-seeds``) against S separate runs.

    python benchmarks/parallel_seeds.py [--method source-only] [--seeds 8] [--steps 600]
                                        [--device cpu]

MNIST (8 x 8) -> UCI digits, a transfer method (``source-only``, ``dann``, ...), the MLP
256-256 + bottleneck 64 of the ``negative-transfer`` suite, batch 64; each seed with its own
data split, initial weights and batches, exactly as ``dalib run`` builds them. Times the
training loops only (no checkpoint scoring) and prints both times, their ratio and the
parallel time against one seed's.
"""

from __future__ import annotations

import argparse
import time

import torch
from step_loop import sync

from dalib.engine import Budget, Trace, fit_transfer, resolve_device, seed_everything
from dalib.models import build_model
from dalib.parallel import fit_transfer_seeds
from dalib.registry import check_method
from scenarios.suite import load_suite


def setup(scenario, method: str, seed: int, device: torch.device):
    data = scenario.build(seed)
    seed_everything(seed)
    model = build_model(data.input_shape, data.num_classes, bottleneck=64).to(device)
    return data, check_method(method, {}, "transfer").build(model, {})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="source-only")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = resolve_device(args.device)
    scenario = next(s for s in load_suite("negative-transfer").scenarios
                    if s.name == "noise0.0-k5")
    budget = Budget(steps=args.steps, batch_size=64, checkpoints=1)
    seeds = list(range(args.seeds))
    runs = [setup(scenario, args.method, s, device) for s in seeds]
    sync(device)
    start = time.perf_counter()
    for (data, method), s in zip(runs, seeds, strict=True):
        fit_transfer(method, data, budget, device, s, Trace())
    sync(device)
    separate = time.perf_counter() - start
    runs = [setup(scenario, args.method, s, device) for s in seeds]
    sync(device)
    start = time.perf_counter()
    fit_transfer_seeds([m for _, m in runs], [d for d, _ in runs], budget, device, seeds,
                       [Trace() for _ in seeds], [lambda step: None] * len(seeds))
    sync(device)
    parallel = time.perf_counter() - start
    print(f"{args.method}, {args.seeds} seeds x {args.steps} steps on {device}: separate {separate:.2f} s, "
          f"parallel {parallel:.2f} s, ratio {parallel / separate:.2f}, parallel / one seed "
          f"{parallel / (separate / args.seeds):.2f}")


if __name__ == "__main__":
    main()
