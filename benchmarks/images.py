"""Training a ResNet on an image folder: dalib against a bare torchvision ImageFolder +
DataLoader loop, in images per second and peak memory, at each data set size (two by default;
the smoke run, one).

    python benchmarks/images.py [--sizes 2000 8000] [--epochs 2] [--side 64] [--repeats 2]

Writes a generated tree of JPEG files of a realistic size (``--width`` x ``--height``, about
20-40 kB each: real MNIST digits of ``$DALIB_DATA`` enlarged, coloured and textured, 10
classes) and trains ResNet-18 (torchvision, no weights, 10 classes) for ``--epochs`` passes
with batches of 32, SGD at 0.01 with momentum 0.9, ``--workers`` loader processes, through:

* **bare**: ``ImageFolder`` with ``RandomResizedCrop(side, scale=(0.35, 1))``,
  ``RandomHorizontalFlip`` and ``ToTensor``, a shuffling ``DataLoader`` with the workers
  (every epoch decodes every file);
* **dalib, first run**: ``{ folder = ..., size = side }`` (every file decoded once, in
  parallel processes, into the on-disk uint8 cache), the ``source-only`` method with the
  ``crop-flip`` augmentation (the same crop and flip, on the batch) through ``fit_transfer``;
* **dalib, cached**: the same with the cache in place (a second run on the same folder);
* **dalib, files**: ``read = "files"``: nothing cached, each batch's files decoded in
  ``--workers`` processes while the previous batch trains (the same pixels as the cache).

Each variant runs in its own process (peak memory is that process's, plus its loader
workers' largest), the variants interleaved, best of ``--repeats``. Throughput counts the
images trained over the whole run, loading and decoding included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from smoke import parse_args

VARIANTS = ("bare", "dalib-first", "dalib-cached", "dalib-files")


def write_tree(root: Path, n: int, width: int, height: int) -> float:
    """``n`` JPEG images in ``root/class/image`` layout; their mean size in kB."""
    from PIL import Image

    from scenarios.datasets import load_mnist

    mnist = load_mnist()
    rng = np.random.default_rng(0)
    total = 0
    for i in range(n):
        digit = (mnist.x[i % len(mnist), 0].numpy() * 255).astype(np.uint8)
        big = np.asarray(Image.fromarray(digit).resize((width, height)), dtype=np.float32)
        colour = rng.uniform(0.3, 1.0, 3)
        texture = rng.normal(0, 18, (height, width, 3))
        img = np.clip(big[..., None] * colour + 60 * rng.uniform() + texture, 0, 255)
        folder = root / str(int(mnist.y[i % len(mnist)]))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:06d}.jpg"
        Image.fromarray(img.astype(np.uint8)).save(path, quality=90)
        total += path.stat().st_size
    return total / n / 1000


def run_bare(root: Path, steps: int, side: int, workers: int) -> None:
    import torch
    import torchvision
    from torchvision import transforms

    torch.manual_seed(0)
    data = torchvision.datasets.ImageFolder(str(root), transform=transforms.Compose([
        transforms.RandomResizedCrop(side, scale=(0.35, 1.0)),
        transforms.RandomHorizontalFlip(), transforms.ToTensor()]))
    loader = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)
    model = torchvision.models.resnet18(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    done = 0
    while done < steps:
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break


def run_dalib(root: Path, steps: int, side: int, read: str, workers: int) -> None:
    import torch

    import dalib
    from dalib.engine import Budget, Trace, fit_transfer, seed_everything
    from dalib.models import build_model
    from scenarios import build_transfer
    from scenarios.datasets import load_dataset

    seed_everything(0)
    domain = load_dataset({"folder": str(root), "size": side, "read": read})
    if read == "files":
        domain.x.arrays[0].workers = workers
    sc = build_transfer("bench", domain, domain, seed=0, disjoint=True)
    model = build_model(sc.input_shape, sc.num_classes, arch="torchvision", name="resnet18")
    method = dalib.build_method("source-only", model, lr=0.01, optimizer="sgd", momentum=0.9,
                                weight_decay=0.0, augmentation="crop-flip")
    fit_transfer(method, sc, Budget(steps=steps, batch_size=32), torch.device("cpu"), seed=0,
                 trace=Trace(), threads=torch.get_num_threads())


def child(args: argparse.Namespace) -> None:
    """One variant in this process: prints its seconds and peak memory as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    steps = max(1, args.epochs * args.size // 32)
    start = time.perf_counter()
    if args.variant == "bare":
        run_bare(Path(args.root), steps, args.side, args.workers)
    else:
        run_dalib(Path(args.root), steps, args.side,
                  "files" if args.variant == "dalib-files" else "cache", args.workers)
    seconds = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "images": steps * 32, "peak_mb": own,
                      "worker_peak_mb": kids}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--side", type=int, default=64)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parse_args(p, sizes=[64], epochs=1, side=32, width=96, height=72, repeats=1)
    if args.variant:
        return child(args)
    best: dict[tuple[int, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        kb = {}
        for n in args.sizes:
            kb[n] = write_tree(Path(tmp) / f"tree{n}", n, args.width, args.height)
        for _ in range(args.repeats):  # interleaved: each repeat runs every variant
            for n in args.sizes:
                cache = Path(tmp) / f"cache{n}"
                shutil.rmtree(cache, ignore_errors=True)  # dalib's first run decodes
                for variant in VARIANTS:
                    env = {**os.environ, "DALIB_CACHE": str(cache), "DALIB_NO_PROGRESS": "1"}
                    done = subprocess.run(
                        [sys.executable, __file__, "--variant", variant, "--root",
                         str(Path(tmp) / f"tree{n}"), "--size", str(n), "--side",
                         str(args.side), "--epochs", str(args.epochs), "--workers",
                         str(args.workers), "--threads", str(args.threads)],
                        capture_output=True, text=True, env=env, check=True)
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    key = (n, variant)
                    if key not in best or result["seconds"] < best[key]["seconds"]:
                        best[key] = result
    print(f"ResNet-18 at {args.side} x {args.side}, batches of 32, {args.epochs} epochs, "
          f"{args.workers} loader workers, {args.threads} torch threads, {os.cpu_count()} "
          f"cores; JPEG {args.width} x {args.height}; best of {args.repeats}")
    print(f"{'images':>7} {'kB/file':>8} {'variant':<13} {'images/s':>9} {'vs bare':>8} "
          f"{'peak MB':>8} {'workers MB':>10}")
    for n in args.sizes:
        bare = best[(n, "bare")]
        for variant in VARIANTS:
            r = best[(n, variant)]
            rate = r["images"] / r["seconds"]
            ratio = rate / (bare["images"] / bare["seconds"])
            print(f"{n:>7} {kb[n]:>8.1f} {variant:<13} {rate:>9.1f} {ratio:>7.2f}x "
                  f"{r['peak_mb']:>8.0f} {r['worker_peak_mb']:>10.0f}")


if __name__ == "__main__":
    main()
