"""Samples per second of dalib's step loops on CPU and GPU, against the bare PyTorch floor.

The loops of the built-in suites: ``quick`` (UCI digits, MLP, batch 64), ``digits-da``
(MNIST -> UCI digits 8 x 8 with the small CNN, MNIST -> rotated MNIST 28 x 28 with the MLP,
batch 128; ``source-only`` and ``dann``) and Split MNIST class-IL (MLP 784-400-400, batch 64,
SGD; ``naive`` and ``replay`` with 500 samples). The floor is a plain PyTorch loop over the
same device-resident tensors (``step_loop.py`` and ``vs_avalanche.py``); transfer loops time
training only, stream loops include dalib's evaluation after each task (the floor's does
not). Samples/s counts the labelled batch (source, or the current task) per step.

    .venv/bin/python benchmarks/gpu.py [--devices cpu cuda] [--steps 1000] [--only NAME]
                                       [--precision fp32|bf16] [--compile] [--channels-last]
                                       [--json OUT.json]

``--precision bf16``, ``--compile`` and ``--channels-last`` apply to dalib's transfer loops
(as ``dalib run``'s flags do); the floor stays plain fp32 eager PyTorch.
"""

from __future__ import annotations

import argparse
import json

import torch
from smoke import parse_args
from step_loop import bare_loop, our_loop
from vs_avalanche import BATCH as STREAM_BATCH
from vs_avalanche import bare, run_method

from dalib.engine import Budget, resolve_device, versions
from scenarios.datasets import load_mnist, load_uci_digits
from scenarios.stream import build_stream
from scenarios.transfer import build_transfer

STREAM_EPOCHS = 1


def cases(steps: int, precision: str = "fp32", compile: bool = False,
          channels_last: bool = False):
    """(name, samples per run, ours(device) -> s, floor(device) -> s or None)."""
    uci, mnist = load_uci_digits(), load_mnist()
    quick = build_transfer("uci-rot30", uci, uci, seed=0, disjoint=True,
                           target_shifts=[{"name": "rotate", "degrees": 30}])
    m2u = build_transfer("mnist-to-uci", mnist, uci, seed=0,
                         source_shifts=[{"name": "resize", "size": 8, "crop": 4}])
    m2r = build_transfer("mnist-to-rot45", mnist, mnist, seed=0, disjoint=True,
                         target_shifts=[{"name": "rotate", "degrees": 45}])
    split = build_stream("split-mnist", "split", [mnist], seed=0, tasks=5, protocol="class-il")
    mlp, cnn = {"arch": "mlp", "bottleneck": 128}, {"arch": "cnn", "bottleneck": 128}
    out = []
    for label, sc, model, batch, methods in (
            ("quick uci-rot30 MLP", quick, {"arch": "mlp"}, 64, ("source-only",)),
            ("digits-da mnist->uci CNN", m2u, cnn, 128, ("source-only", "dann")),
            ("digits-da mnist->rot45 MLP", m2r, mlp, 128, ("source-only", "dann"))):
        for m in methods:
            floor = ((lambda d, sc=sc, b=batch, mo=model: bare_loop(sc, steps, b, d, mo))
                     if m == "source-only" else None)
            out.append((f"{label} {m}", steps * batch,
                        lambda d, sc=sc, b=batch, mo=model, m=m: our_loop(
                            sc, steps, b, d, mo, m, precision, compile, channels_last), floor))
    per_epoch = sum(Budget(epochs=STREAM_EPOCHS, batch_size=STREAM_BATCH).steps_for(len(t.train))
                    for t in split.tasks) * STREAM_BATCH
    for m in ("naive", "replay"):
        out.append((f"split-mnist class-IL MLP {m}", per_epoch,
                    lambda d, m=m: run_method(m, split, d, 0, STREAM_EPOCHS)[0],
                    lambda d, m=m: bare(split, d, 0, m == "replay", STREAM_EPOCHS)[0]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default="", help="run the cases whose name contains this")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--json", help="also write the numbers to this file")
    args = parse_args(p, steps=10, repeats=1)
    devices = [resolve_device(d) for d in args.devices
               if d != "cuda" or torch.cuda.is_available()]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    print(f"{versions()} torch threads {torch.get_num_threads()} GPU {gpu}")
    rows = []
    for name, samples, ours, floor in cases(args.steps, args.precision, args.compile,
                                             args.channels_last):
        if args.only not in name:
            continue
        for device in devices:
            ours(device)  # warm-up: CUDA context, kernels, allocator, compilation
            t = f = float("inf")
            for _ in range(args.repeats):  # interleaved with the floor's
                t = min(t, ours(device))
                f = min(f, floor(device)) if floor else None
            row = {"case": name, "device": str(device), "samples_per_s": samples / t,
                   "seconds": t, "floor_samples_per_s": samples / f if f else None,
                   "ours_over_floor": t / f if f else None}
            rows.append(row)
            ratio = f"  floor {samples / f:9.0f}/s  ours/floor {t / f:.2f}" if f else ""
            print(f"{name:42s} {device.type:4s} {samples / t:9.0f} samples/s{ratio}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"versions": versions(), "gpu": gpu, "cpu_threads": torch.get_num_threads(),
                       "precision": args.precision, "compiled": args.compile,
                       "channels_last": args.channels_last, "rows": rows},
                      fh, indent=1)


if __name__ == "__main__":
    main()
