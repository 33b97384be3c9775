"""Our training step loop against the bare PyTorch floor, on the same tensors and model.

The floor: tensors already on the device, a fresh permutation per epoch, slicing, the same
1-pixel shift augmentation, AdamW, cross-entropy; nothing else. Ours: ``dalib``'s
``source-only`` method fed by the engine (``Sampler`` + ``Method.update`` + ``Trace``), without
checkpoint scoring (model selection is measured apart, since the floor has none).

    .venv/bin/python benchmarks/step_loop.py [--steps 1500] [--device cpu] [--repeats 3]

Prints the best wall time of each loop over interleaved repeats and the ratio ours / floor
(1.0 means no overhead over the floor).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from smoke import parse_args

from dalib.augment import random_shift
from dalib.engine import Budget, Trace, fit_transfer, resolve_device, seed_everything, versions
from dalib.models import build_model
from dalib.registry import check_method
from scenarios.datasets import load_mnist, load_uci_digits
from scenarios.transfer import build_transfer


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that the clock reads finished work only."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_loop(scenario, steps: int, batch_size: int, device: torch.device,
              model_options: dict | None = None) -> float:
    seed_everything(0)
    model = build_model(scenario.input_shape, scenario.num_classes,
                        **(model_options or {"bottleneck": 128})).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
    x, y = scenario.source.x.to(device), scenario.source.y.to(device)
    g = torch.Generator().manual_seed(0)
    gen = torch.Generator(device=device).manual_seed(0)
    n = len(x)
    sync(device)
    start = time.perf_counter()
    perm, pos = None, n
    for _ in range(steps):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=g).to(device), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        loss = F.cross_entropy(model(random_shift(x[idx], 1, gen)), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - start


def our_loop(scenario, steps: int, batch_size: int, device: torch.device,
             model_options: dict | None = None, method: str = "source-only",
             precision: str = "fp32", compile: bool = False, channels_last: bool = False
             ) -> float:
    """dalib's loop; ``precision``, ``compile`` and ``channels_last`` as ``dalib run
    --precision / --compile / --channels-last``."""
    seed_everything(0)
    model = build_model(scenario.input_shape, scenario.num_classes,
                        **(model_options or {"bottleneck": 128})).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model.backbone.compile()
    method = check_method(method, {}, "transfer").build(model, {})
    method.precision = precision
    sync(device)
    start = time.perf_counter()
    fit_transfer(method, scenario, Budget(steps=steps, batch_size=batch_size), device, 0, Trace())
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    args = parse_args(p, steps=20, repeats=1)
    device = resolve_device(args.device)
    print(f"device={device} torch threads={torch.get_num_threads()} {versions()}")
    mnist8 = [{"name": "resize", "size": 8, "crop": 4}]
    cases = {"mnist->uci 8x8 MLP": build_transfer("m2u", load_mnist(), load_uci_digits(), seed=0,
                                                  source_shifts=mnist8),
             "mnist->rot45 28x28 LeNet": build_transfer(
                 "m2r", load_mnist(), load_mnist(), seed=0,
                 target_shifts=[{"name": "rotate", "degrees": 45}])}
    for name, sc in cases.items():
        bare, ours = float("inf"), float("inf")
        for _ in range(args.repeats):  # interleaved, so that a slow spell of the machine hits both
            bare = min(bare, bare_loop(sc, args.steps, args.batch_size, device))
            ours = min(ours, our_loop(sc, args.steps, args.batch_size, device))
        print(f"{name:26s} steps={args.steps} bare={bare:.2f}s ours={ours:.2f}s "
              f"ratio={ours / bare:.2f}")


if __name__ == "__main__":
    main()
