"""Execution settings: what changes a run's numbers without changing the experiment.

A run's identity (:mod:`dalib.runspec`) covers its data, model, method, budget and seed. How it
is executed changes its numbers too, in the last bits of every float and, through training,
sometimes by points: torch's thread count (reductions split over threads sum in another
order), the device, bf16 autocast, channels-last convolutions, ``torch.compile``, packing (a
pack's batched kernels sum in another order than a run's own) and the torch release. These
settings are recorded in every run, and a sweep resumed or extended in the same ``--out``
must run with the settings its finished runs were trained with (:func:`check_resume`):
results are never mixed.

By default each process trains with one torch thread and a sweep uses the cores by running
runs side by side (``--jobs``, :func:`default_jobs`): one thread per run is the same on every
machine (another count changes the numbers), parallel runs need no synchronisation, and
OpenMP's busy-waiting worker threads, which collapse when other programs keep the cores busy
(3-7x slower on 2 cores beside 2-3 busy processes), never exist. ``--threads N`` asks for more
(a single large model on an idle machine); a resumed sweep keeps the count its finished runs
used (:func:`resumed_threads`). The kernel set torch dispatches to on this CPU
(``ATEN_CPU_CAPABILITY``) is recorded too: another one sums floats in another order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from scenarios.errors import InputError


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under ``taskset``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


DEFAULT_THREADS = 1


def default_threads() -> int:
    """torch threads per process unless ``--threads`` says otherwise: 1, on every machine and
    under any load (so the same command gives the same numbers everywhere); the cores are
    used by :func:`default_jobs` processes instead (``benchmarks/contention.py`` measures
    both choices idle and beside busy processes)."""
    return DEFAULT_THREADS


def default_jobs(units: int, device: torch.device | str = "cpu") -> int:
    """Processes for a sweep of ``units`` runs or packs unless ``--jobs`` says otherwise: one
    per usable core, no more than there are units; 1 on a GPU (processes would share it)."""
    if str(device).startswith("cuda"):
        return 1
    return max(1, min(usable_cores(), units))


def kernels() -> str:
    """The CPU kernel set torch dispatches to here (``default``, ``AVX2``, ``AVX512``; the
    environment variable ``ATEN_CPU_CAPABILITY`` chooses a lower one)."""
    return str(torch.backends.cpu.get_cpu_capability())


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """torch's intra-op threads set to ``threads`` (None: :func:`default_threads`) inside,
    restored after; yields the count."""
    threads = threads or default_threads()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)


def settings(threads: int, device: torch.device | str, precision: str, compile: bool,
             pack: int, channels_last: bool = False) -> dict:
    """The execution settings of a run, as its record keeps them: ``pack`` is the largest
    pack the sweep forms (1: every run alone)."""
    return {"threads": int(threads), "device": str(device), "precision": precision,
            "compile": bool(compile), "channels_last": bool(channels_last), "pack": int(pack),
            "torch": torch.__version__, "kernels": kernels()}


# settings added after the first records: a record without one was trained with this value
ADDED = {"channels_last": False}


def resumed_threads(records: list[dict]) -> int | None:
    """The thread count the finished runs of a directory were trained with, where they
    agree (a resumed sweep keeps it unless ``--threads`` says otherwise)."""
    counts = {r.get("settings", {}).get("threads") for r in records if r.get("status") == "ok"
              and isinstance(r.get("settings"), dict)}
    return counts.pop() if len(counts) == 1 and isinstance(next(iter(counts)), int) else None


FLAGS = {"threads": "--threads {}", "device": "--device {}", "precision": "--precision {}",
         "compile": "--compile", "channels_last": "--channels-last", "pack": "--pack {}", "torch": "torch {}",
         "kernels": "ATEN_CPU_CAPABILITY={} (on a CPU that offers it)"}


def _flag(key: str, value) -> str:
    if key in ("compile", "channels_last"):
        return FLAGS[key] if value else f"no {FLAGS[key]}"
    if key == "pack":
        return "--pack off" if value == 1 else f"--pack {value}"
    if key == "kernels":
        return FLAGS[key].format(str(value).lower())
    return FLAGS[key].format(value)


def check_resume(records: list[dict], current: dict) -> None:
    """Refuse (exit 2) to add runs to a directory whose finished runs were trained under
    other execution settings: the one line names the setting, both values and the flag
    that matches the finished runs."""
    for record in records:
        if record.get("status") != "ok":
            continue  # a failed run is trained again, under the current settings
        before = record.get("settings")
        if not isinstance(before, dict):
            before = {}
        before = {**ADDED, **before}
        for key, value in current.items():
            if before.get(key) != value:
                old = before.get(key, "not recorded")
                match = _flag(key, old) if key in before else "a dalib that records them"
                raise InputError(
                    "--out", f"holds runs trained with {key} = {old!r} (e.g. "
                    f"{record['run_id']}), this command uses {key} = {value!r}",
                    expected=f"{match}, as the finished runs used, so that results are never "
                    "mixed; or a new --out")
