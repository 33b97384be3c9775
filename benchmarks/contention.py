"""Wall time of a small sweep on an idle machine and beside busy-looping processes, for the
default execution settings and for ``--threads 1``, as ratios.

    python benchmarks/contention.py [--repeats 3] [--steps 600] [--seeds 3] [--busy 2,3]

The suite: ``source-only`` on UCI digits -> UCI digits rotated by 30 degrees, ``--seeds``
seeds of ``--steps`` steps each (packed as ``dalib run`` packs them). Each setting runs as
``dalib run`` in a fresh process, idle and beside each count of busy loops in ``--busy``
(default: the usable cores and one more), the settings interleaved within every repeat so
that drifts of the machine hit all alike. Settings: ``default`` (no flags), ``--threads 1``,
and ``previous`` (one process with a torch thread per usable core: dalib's default before
0.5). Printed: the median wall time of each, the default's ratio to ``--threads 1`` under
each load (sharing the cores costs what it costs; the target is <= 1.3x) and the idle
default's ratio to the previous default's (<= 1.05x).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from smoke import parse_args

from dalib.settings import usable_cores

SUITE = """name = "contention"
seeds = {seeds}
[budget]
steps = {steps}
batch_size = 64
[[scenario]]
name = "uci-rot30"
kind = "transfer"
source = {{ dataset = "uci-digits" }}
target = {{ dataset = "uci-digits", shifts = [{{ name = "rotate", degrees = 30 }}] }}
methods = ["source-only"]
"""


def timed(suite: Path, out: Path, flags: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dalib.cli", "run", str(suite), "--out", str(out),
                    "--no-report", *flags], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--busy", help="comma-separated counts of busy loops (default: cores, "
                                  "cores + 1; '' for the idle machine only)")
    args = parse_args(p, repeats=1, steps=20, seeds=1, busy="")
    cores = usable_cores()
    busy = f"{cores},{cores + 1}" if args.busy is None else args.busy
    loads = [0, *(int(b) for b in busy.split(",") if b.strip())]
    settings = {"default": [], "--threads 1": ["--threads", "1"],
                "previous": ["--threads", str(cores), "--jobs", "1"]}
    times: dict[tuple[int, str], list[float]] = {(b, s): [] for b in loads for s in settings}
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "contention.toml"
        suite.write_text(SUITE.format(seeds=args.seeds, steps=args.steps))
        for busy in loads:
            loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                     for _ in range(busy)]
            try:
                for r in range(args.repeats):
                    for name, flags in settings.items():
                        out = Path(tmp) / f"{busy}-{r}-{name.replace(' ', '')}"
                        times[busy, name].append(timed(suite, out, flags))
            finally:
                for loop in loops:
                    loop.kill()
                    loop.wait()
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{cores} usable cores, {args.seeds} seeds x {args.steps} steps, median of "
          f"{args.repeats} (wall s)")
    print("busy loops | " + " | ".join(settings) + " | default / --threads 1")
    for busy in loads:
        cells = " | ".join(f"{med[busy, s]:.2f}" for s in settings)
        print(f"{busy} | {cells} | {med[busy, 'default'] / med[busy, '--threads 1']:.2f}x")
    print(f"idle default / previous default: {med[0, 'default'] / med[0, 'previous']:.2f}x")


if __name__ == "__main__":
    main()
