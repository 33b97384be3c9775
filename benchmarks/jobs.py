"""Wall time of a sweep in one process against a pool of worker processes.

    python benchmarks/jobs.py [--suite quick] [--seeds 2] [--jobs 2]

Runs ``dalib run SUITE --seeds N`` (the quick suite with 2 seeds is 12 runs) into two fresh
temporary directories, with ``--jobs 1`` and ``--jobs N``, and prints both times, their ratio
and the largest accuracy difference between the two tables (not 0 in general: ``--jobs 1``
gives one run every core, a worker cores / N, and another thread count changes the float
summation order, which can flip a prediction or a selected checkpoint).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def timed_run(suite: str, seeds: int, jobs: int, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dalib.cli", "run", suite, "--seeds", str(seeds),
                    "--out", str(out), "--no-report", "--jobs", str(jobs)], check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="quick")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = timed_run(args.suite, args.seeds, 1, Path(tmp, "one"))
        many = timed_run(args.suite, args.seeds, args.jobs, Path(tmp, "many"))
        a, b = (pd.read_csv(Path(tmp, d, "results.csv")) for d in ("one", "many"))
        runs = a["run_id"].nunique()
        key = ["scenario", "method", "seed", "metric"]
        both = a.merge(b, on=key)
        acc = both[both["metric"].isin(["target_acc", "acc"])]
        diff = (acc["value_x"] - acc["value_y"]).abs().max()
    print(f"{args.suite}, {runs} runs, {os.cpu_count()} cores: --jobs 1 {one:.1f} s, "
          f"--jobs {args.jobs} {many:.1f} s, speed-up {one / many:.2f}x "
          f"(largest accuracy difference {diff:.2f} points)")


if __name__ == "__main__":
    main()
