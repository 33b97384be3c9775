"""Packed runs against the same runs one at a time, and against the bare PyTorch floor.

    python benchmarks/packed.py [--sizes 16 64] [--steps 200] [--repeats 2] [--device cpu]
                                [--workloads mlp-source-only mlp-dann mlp-replay cnn-source-only]

Each workload trains S runs (seeds 0..S-1) of one method on UCI digits (8 x 8): the MLP
64-256-256-10 with batch norm, AdamW, batch 64 (``mlp-*``; ``mlp-replay`` is a class-IL Split
stream of 5 tasks), or the small CNN (``cnn-*``). In one process, with interleaved repeats
(the best of each), it times the S runs one at a time (dalib's engine), the same S runs as
one pack, and for ``mlp-source-only`` a bare PyTorch loop per run (model, AdamW, index
batches: the floor a single run can reach). It prints seconds, the speed-up of the pack, and
the peak resident memory of a fresh process that trains the runs one at a time and of one
that trains them as one pack (whole process, as ``/usr/bin/time -v`` reports it).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from smoke import parse_args

from dalib.engine import Budget, Trace, fit_stream, fit_transfer, seed_everything
from dalib.models import build_model
from dalib.pack.train import fit_stream_pack, fit_transfer_pack
from dalib.registry import check_method
from scenarios.datasets import load_uci_digits
from scenarios.stream import build_stream
from scenarios.transfer import build_transfer

WORKLOADS = ("mlp-source-only", "mlp-dann", "mlp-replay", "cnn-source-only")


def _data(workload: str, seeds: list[int]) -> list:
    uci = load_uci_digits()
    if workload.endswith("replay"):
        return [build_stream("split", "split", [uci], seed=s, protocol="class-il", tasks=5)
                for s in seeds]
    return [build_transfer("rot", uci, uci, seed=s,
                           target_shifts=[{"name": "rotate", "degrees": 30}]) for s in seeds]


def _method(workload: str, data, seed: int, device: torch.device):
    arch, name = workload.split("-", 1)
    seed_everything(seed)
    model = build_model(data.input_shape, len(data.classes) if hasattr(data, "tasks")
                        else data.num_classes, arch=arch,
                        **({"hidden": [256, 256]} if arch == "mlp" else {})).to(device)
    return check_method(name, {}, "stream" if name == "replay" else "transfer").build(model, {})


def separate(workload: str, datas: list, steps: int, device: torch.device) -> None:
    for seed, data in enumerate(datas):
        method = _method(workload, data, seed, device)
        if hasattr(data, "tasks"):
            budget = Budget(steps=steps // len(data.tasks), batch_size=64)
            fit_stream(method, data, budget, device, seed, Trace())
        else:
            fit_transfer(method, data, Budget(steps=steps, batch_size=64, checkpoints=1),
                         device, seed, Trace())


def packed(workload: str, datas: list, steps: int, device: torch.device) -> None:
    methods = [_method(workload, d, s, device) for s, d in enumerate(datas)]
    seeds = list(range(len(datas)))
    if hasattr(datas[0], "tasks"):
        budget = Budget(steps=steps // len(datas[0].tasks), batch_size=64)
        fit_stream_pack(methods, datas, budget, device, seeds, [[] for _ in seeds])
    else:
        fit_transfer_pack(methods, datas, Budget(steps=steps, batch_size=64, checkpoints=1),
                          device, seeds, [lambda step: None for _ in seeds])


def floor(workload: str, datas: list, steps: int, device: torch.device) -> None:
    """A bare PyTorch loop per run: the same model, AdamW, random index batches."""
    for seed, data in enumerate(datas):
        seed_everything(seed)
        model = build_model(data.input_shape, data.num_classes, hidden=[256, 256]).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=5e-4)
        x, y = data.source.x.to(device), data.source.y.to(device)
        for _ in range(steps):
            idx = torch.randint(0, len(y), (64,), device=device)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(way: str, workload: str, size: int, steps: int, device: str) -> float:
    """MiB resident at peak in a fresh process that trains ``size`` runs ``way`` (packed or
    separate): its high-water mark (``VmHWM``; ``ru_maxrss`` would carry the parent's
    across the exec on Linux)."""
    out = subprocess.run([sys.executable, __file__, "--child", way, workload, str(size),
                          str(steps), device], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def _high_water_mib() -> float:
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmHWM:"))
    return float(line.split()[1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 64])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    p.add_argument("--memory-only", action="store_true", help="skip the timings")
    p.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parse_args(p, sizes=[2], steps=10, repeats=1, workloads=["mlp-dann", "mlp-replay"])
    if args.child:
        way, workload, size, steps, device = args.child
        train = packed if way == "packed" else separate
        train(workload, _data(workload, list(range(int(size)))), int(steps),
              torch.device(device))
        print(_high_water_mib())
        return
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.steps} steps per run, best of {args.repeats}")
    for workload in args.workloads:
        sizes = [s for s in args.sizes if not (workload.startswith("cnn") and s > 16)]
        for size in sizes:
            datas = _data(workload, list(range(size)))
            ways = {"one at a time": separate, "packed": packed}
            if workload == "mlp-source-only":
                ways["bare PyTorch, one at a time"] = floor
            mib = {w: peak_memory(w, workload, size, args.steps, args.device)
                   for w in ("separate", "packed")}
            memory = (f"peak memory {mib['separate']:.0f} MiB one at a time, "
                      f"{mib['packed']:.0f} MiB packed")
            if args.memory_only:
                print(f"{workload} x {size}: {memory}", flush=True)
                continue
            best = {name: float("inf") for name in ways}
            for way in ways.values():  # warm-up: allocator, kernels, lazy imports
                way(workload, datas[:2], 10, device)
            for _ in range(args.repeats):
                for name, way in ways.items():
                    _sync(device)
                    start = time.perf_counter()
                    way(workload, datas, args.steps, device)
                    _sync(device)
                    best[name] = min(best[name], time.perf_counter() - start)
            line = ", ".join(f"{n} {t:.2f} s" for n, t in best.items())
            ratio = best["one at a time"] / best["packed"]
            extra = (f", packed vs floor {best['bare PyTorch, one at a time'] / best['packed']:.2f}x"
                     if "bare PyTorch, one at a time" in best else "")
            print(f"{workload} x {size}: {line}; speed-up {ratio:.2f}x{extra}; {memory}",
                  flush=True)


if __name__ == "__main__":
    main()
