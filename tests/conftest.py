"""Tests read real data from ../shared/data (never download) and write only to tmp dirs.

Under pytest-xdist (``make test`` runs ``-n auto``) each worker process gets its own share of
the cores (its CPU affinity, which the processes it starts inherit): dalib's default process
count (``--jobs``) is the usable cores, so workers never oversubscribe the machine."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import dalib  # noqa: F401  (before any scipy import: it sets OPENBLAS_NUM_THREADS, see its docstring)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
os.environ.setdefault("DALIB_DATA", str(SHARED_DATA))


def pytest_configure(config):
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), \
        int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker and count > 1 and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        share = cores[int(worker.removeprefix("gw")) % len(cores)::count] or cores
        os.sched_setaffinity(0, share)
        torch.set_num_threads(len(share))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def digits_npz(tmp_path):
    """Two real .npz files a user could write: UCI digits as source, and its inverted
    copy with a task array (3 tasks) as target / stream."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images * 255 / 16).astype(np.uint8)
    src, tgt = tmp_path / "src.npz", tmp_path / "tgt.npz"
    np.savez(src, x=x[::2], y=d.target[::2])
    xt, yt = 255 - x[1::2], d.target[1::2]
    np.savez(tgt, x=xt, y=yt, task=np.minimum(yt // 4, 2))
    return src, tgt
