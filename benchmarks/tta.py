"""Test-time adaptation throughput: dalib's online loop (``tent`` through
:func:`dalib.online.run_online`) against the bare PyTorch floor (the same model, the same
stream already in memory, batch-norm layers on batch statistics, the affine parameters
adapted by Adam on the batch's mean entropy, predictions kept); and ``--runs`` seeds adapted
as one pack (:func:`dalib.online.run_online_pack`) against one at a time. Interleaved
repeats.

    .venv/bin/python benchmarks/tta.py [--samples 20000] [--batch-size 64] [--runs 8]
                                       [--repeats 3]

Prints the best wall time of each over the repeats, samples per second, and the ratios
dalib / floor (1.0: no overhead over the floor) and packed / one at a time.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from smoke import parse_args

from dalib.engine import resolve_device, versions
from dalib.models import build_model
from dalib.online import run_online, run_online_pack
from dalib.registry import build_method
from dalib.testtime.base import batch_statistics, entropy_of, norm_layers
from scenarios.suite import parse_suite


def stream(samples: int, batch_size: int, seed: int = 0):
    """A test-time scenario on UCI digits (for ``seed``): corruptions of the held-out half,
    repeated to about ``samples`` predictions."""
    per_cycle = 3 * 270  # three corruptions of the 30% test part of half of UCI digits
    suite = parse_suite({"scenario": [{
        "name": "bench", "kind": "test-time", "source": {"dataset": "uci-digits"},
        "corruptions": ["gaussian-noise", "fog", "rotate"], "test_batch_size": batch_size,
        "cycles": max(1, samples // per_cycle), "methods": ["tent"]}]}, Path("bench.toml"))
    return suite.scenarios[0].build(seed)


def bare(model: torch.nn.Module, data, device: torch.device) -> float:
    batch_statistics(model)
    params = [p for m in norm_layers(model) for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    x_all, _ = data.stream.pooled
    x_all, order = x_all.to(device), data.stream.order.to(device)
    preds = torch.empty(len(order), dtype=torch.long, device=device)
    start = time.perf_counter()
    for at in range(0, len(order), data.batch_size):
        idx = order[at:at + data.batch_size]
        logits = model(x_all[idx])
        loss = entropy_of(logits).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        preds[at:at + len(idx)] = logits.argmax(-1)
    preds.cpu()
    return time.perf_counter() - start


def ours(model: torch.nn.Module, data, device: torch.device) -> float:
    method = build_method("tent", model)
    method.start({})
    start = time.perf_counter()
    run_online(method, data, device)
    return time.perf_counter() - start


def methods_for(sources: list[torch.nn.Module]) -> list:
    out = []
    for source in sources:
        method = build_method("tent", copy.deepcopy(source))
        method.start({})
        out.append(method)
    return out


def one_at_a_time(sources: list, datas: list, device: torch.device) -> float:
    methods = methods_for(sources)
    start = time.perf_counter()
    for method, data in zip(methods, datas, strict=True):
        run_online(method, data, device)
    return time.perf_counter() - start


def packed(sources: list, datas: list, device: torch.device) -> float:
    methods = methods_for(sources)
    start = time.perf_counter()
    run_online_pack(methods, datas, device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parse_args(parser, samples=800, runs=2, repeats=1)
    device = resolve_device(args.device)
    data = stream(args.samples, args.batch_size)
    torch.manual_seed(0)
    source = build_model(data.input_shape, data.num_classes, arch="cnn", width=16).to(device)
    times: dict[str, list[float]] = {"floor": [], "dalib": []}
    for _ in range(args.repeats):  # interleaved, each from the same source model
        times["floor"].append(bare(copy.deepcopy(source), data, device))
        times["dalib"].append(ours(copy.deepcopy(source), data, device))
    n = len(data.stream)
    print(f"tent online on {n} samples, batches of {args.batch_size}, {device} "
          f"(torch {versions()['torch']}, {torch.get_num_threads()} threads)")
    for name, t in times.items():
        print(f"  {name:6s} best {min(t):.2f} s  ({n / min(t):,.0f} samples/s)")
    print(f"  ratio dalib / floor: {np.min(times['dalib']) / np.min(times['floor']):.2f}")
    datas = [stream(args.samples, args.batch_size, seed) for seed in range(args.runs)]
    sources = []
    for seed in range(args.runs):
        torch.manual_seed(seed)
        sources.append(build_model(data.input_shape, data.num_classes, arch="cnn",
                                   width=16).to(device))
    runs: dict[str, list[float]] = {"one at a time": [], "packed": []}
    for _ in range(args.repeats):
        runs["one at a time"].append(one_at_a_time(sources, datas, device))
        runs["packed"].append(packed(sources, datas, device))
    total = sum(len(d.stream) for d in datas)
    print(f"tent online, {args.runs} seeds (each its own model and stream, {total} samples)")
    for name, t in runs.items():
        print(f"  {name:13s} best {min(t):.2f} s  ({total / min(t):,.0f} samples/s)")
    print(f"  ratio packed / one at a time: "
          f"{np.min(runs['packed']) / np.min(runs['one at a time']):.2f}")


if __name__ == "__main__":
    main()
