"""The stamp of a run: what identifies the software and machine that made its numbers.

Collected once per run into its record (``record["stamp"]``) beside the data digests its
configuration already holds (``config["files"]``): dalib's version and git commit (and
whether the checkout had uncommitted changes), torch, CUDA and Python versions, the device
and its name, torch's CPU kernel set, the torch threads and the UTC date. The ledger
summarises the stamps of an entry's records (:func:`analysis.ledger.entry_stamp`).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

import torch


@lru_cache(maxsize=1)
def source_commit() -> tuple[str | None, bool | None]:
    """The git commit of the checkout dalib runs from and whether it has uncommitted changes
    to tracked files; (None, None) for an installed copy or without git."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None, None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        changes = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                  "--untracked-files=no"], check=True, capture_output=True,
                                 text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None, None
    return commit or None, bool(changes)


@lru_cache(maxsize=8)
def device_name(device: str) -> str:
    """The GPU's name, or the CPU's model name (``/proc/cpuinfo``) with its core count."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def stamp(device: torch.device | str) -> dict:
    """The stamp of a run made now on ``device`` with the current torch threads."""
    from dalib import __version__

    commit, dirty = source_commit()
    return {"dalib": __version__, "commit": commit, "dirty": dirty, "torch": torch.__version__,
            "cuda": torch.version.cuda, "python": platform.python_version(),
            "device": str(device), "device_name": device_name(str(device)),
            "kernels": torch.backends.cpu.get_cpu_capability().lower(),
            "threads": torch.get_num_threads(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")}
