"""Loading an image folder: the first load decodes every file, the second memory-maps the cache.

    python benchmarks/image_cache.py [--images 10000] [--repeats 3]

Writes the real MNIST digits of ``$DALIB_DATA`` (10,000 in ``../shared/data``) as PNG files in
``root/class/image`` layout into a temporary folder, then times, against the floor of a plain
PIL loop over the same files (one process, no cache):

* the first ``{ folder = ... }`` load (decoding in parallel processes, writing the cache);
* the second load (the memory-mapped cache), best of ``--repeats``;

and checks that the decoded images equal PIL's decode.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from smoke import parse_args

import dalib  # noqa: F401  (sets OPENBLAS_NUM_THREADS before scipy loads)
from scenarios.datasets import load_dataset, load_mnist


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--repeats", type=int, default=3)
    args = parse_args(p, images=200, repeats=1)
    mnist = load_mnist()
    n = min(args.images, len(mnist))
    images = np.round(mnist.x[:n, 0].numpy() * 255).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mnist"
        for i, (img, y) in enumerate(zip(images, mnist.y[:n].tolist(), strict=True)):
            (root / str(y)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / str(y) / f"{i:05d}.png")
        os.environ["DALIB_CACHE"] = str(Path(tmp) / "cache")
        files = sorted(root.rglob("*.png"))
        start = time.perf_counter()
        floor = np.stack([np.asarray(Image.open(f)) for f in files])
        pil_s = time.perf_counter() - start
        start = time.perf_counter()
        first = load_dataset({"folder": str(root)})
        first_s = time.perf_counter() - start
        second_s = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            second = load_dataset({"folder": str(root)})
            second_s = min(second_s, time.perf_counter() - start)
        same = np.array_equal(np.round(second.x[:, 0].numpy() * 255).astype(np.uint8), floor)
    print(f"{n} PNG images, {os.cpu_count()} cores: plain PIL loop {pil_s:.2f} s | first load "
          f"{first_s:.2f} s ({pil_s / first_s:.2f}x the loop) | cached load {second_s:.3f} s "
          f"({pil_s / second_s:.1f}x) | equal to PIL: {same} | same as first: "
          f"{bool((first.x == second.x).all())}")


if __name__ == "__main__":
    main()
