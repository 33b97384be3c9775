"""Every benchmark script runs in its smoke mode (the same code path at tiny sizes) and prints
numbers, never ``nan``: a script that rots fails here, in CI, not when someone next publishes
its numbers. (Timings themselves are never asserted: they live in the scripts' full runs.)"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "smoke.py")


def test_every_script_is_covered():
    assert SCRIPTS == ["contention.py", "gpu.py", "image_cache.py", "images.py", "jobs.py",
                       "memory.py", "packed.py",
                       "step_loop.py", "tta.py", "validator_study.py", "vs_avalanche.py",
                       "vs_skada.py"]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_runs_in_smoke_mode_and_prints_numbers(script, tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"\d", out), out
    assert not re.search(r"\bnan\b", out, re.IGNORECASE), out
