"""Wall time of a sweep run by run in one process against a pool of processes, or packed.

    python benchmarks/jobs.py [--suite quick] [--seeds 2] [--methods a,b] [--jobs 2]
    python benchmarks/jobs.py --pack [--suite ...] [--seeds ...] [--methods ...]

Runs ``dalib run SUITE --seeds N --pack off`` (the quick suite with 2 seeds is 12 runs) into
a fresh temporary directory, and again with ``--jobs N`` (or ``--pack auto``, one process),
and prints both times, their ratio and the largest differences of accuracy and NTG between
the two tables. They are not 0 in general: ``--jobs 1`` gives one run every core, a worker
cores / N, and another thread count changes the float summation order; packs multiply
batched matrices; either can flip a prediction or a selected checkpoint.
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
from smoke import parse_args

# --smoke: the quick suite's two scenarios at 20 steps and one epoch
TINY = """name = "tiny"
seeds = 1
[budget]
epochs = 1
[[scenario]]
name = "uci-rot30"
kind = "transfer"
source = { dataset = "uci-digits" }
target = { dataset = "uci-digits", shifts = [{ name = "rotate", degrees = 30 }] }
k = 5
budget = { steps = 20 }
methods = ["source-only", "target-only"]
[[scenario]]
name = "uci-split5-class-il"
kind = "stream"
data = { dataset = "uci-digits" }
stream = "split"
tasks = 5
protocol = "class-il"
methods = ["naive"]
"""


def timed_run(args: argparse.Namespace, out: Path, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "dalib.cli", "run", args.suite, "--seeds", str(args.seeds),
           "--out", str(out), "--no-report", *extra]
    if args.methods:
        cmd += ["--methods", args.methods]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def largest_difference(a: pd.DataFrame, b: pd.DataFrame, metrics: list[str]) -> str:
    """The largest difference of ``metrics`` between two results tables, in points (``-``
    where the tables hold none of them)."""
    both = a.merge(b, on=["scenario", "method", "seed", "metric"])
    rows = both[both["metric"].isin(metrics)].dropna(subset=["value_x", "value_y"])
    return f"{(rows['value_x'] - rows['value_y']).abs().max():.2f}" if len(rows) else "-"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="quick")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--methods", help="comma-separated subset of the suite's methods")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--pack", action="store_true",
                   help="compare against --pack auto instead of --jobs N")
    p.add_argument("--keep", help="write both sweeps under this directory (plain/, other/) "
                                  "instead of a temporary one")
    args = parse_args(p, seeds=1, methods="")
    other = ["--pack", "auto", "--jobs", "1"] if args.pack else \
        ["--jobs", str(args.jobs), "--pack", "off"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        if args.smoke:
            args.suite = str(Path(tmp) / "tiny.toml")
            Path(args.suite).write_text(TINY)
        one = timed_run(args, root / "plain", ["--pack", "off", "--jobs", "1"])
        many = timed_run(args, root / "other", other)
        a, b = (pd.read_csv(root / d / "results.csv") for d in ("plain", "other"))
    acc = largest_difference(a, b, ["target_acc", "acc"])
    ntg = largest_difference(a, b, ["ntg"])
    print(f"{Path(args.suite).stem}, {a['run_id'].nunique()} runs, {os.cpu_count()} cores: plain "
          f"{one:.1f} s, {' '.join(other)} {many:.1f} s, speed-up {one / many:.2f}x "
          f"(largest difference: accuracy {acc}, NTG {ntg} points)")


if __name__ == "__main__":
    main()
