"""Metrics of test-time adaptation from a stream's predictions: the online error (each
prediction made before the model adapted on its batch) overall, per domain and per cycle,
and collapse (the share of predictions in the most frequent class). Pure functions over
numpy arrays."""

from __future__ import annotations

import numpy as np

COLLAPSE_SHARE = 0.5  # a stream part whose majority class takes this share has collapsed


def majority_share(pred: np.ndarray) -> float:
    """The share of ``pred`` in its most frequent class (1 / classes for a balanced,
    varied output; 1.0 for a model that predicts one class)."""
    return float(np.bincount(pred).max() / len(pred)) if len(pred) else float("nan")


def online_metrics(pred: np.ndarray, label: np.ndarray, domain: np.ndarray,
                   cycle: np.ndarray, names: list[str]) -> dict[str, float]:
    """``online_error`` (%), ``online_error[DOMAIN]`` per domain of the stream,
    ``online_error_cycle[C]`` per cycle (two or more), ``majority_share`` over the stream
    and ``final_majority_share`` over its last tenth, ``collapsed`` (1 when that share
    reaches :data:`COLLAPSE_SHARE`)."""
    wrong = pred != label
    out = {"online_error": 100.0 * float(wrong.mean())}
    for d, name in enumerate(names):
        mask = domain == d
        if mask.any():
            out[f"online_error[{name}]"] = 100.0 * float(wrong[mask].mean())
    cycles = np.unique(cycle)
    if len(cycles) > 1:
        for c in cycles:
            out[f"online_error_cycle[{int(c)}]"] = 100.0 * float(wrong[cycle == c].mean())
    tail = pred[-max(1, len(pred) // 10):]
    out["majority_share"] = majority_share(pred)
    out["final_majority_share"] = majority_share(tail)
    out["collapsed"] = float(out["final_majority_share"] >= COLLAPSE_SHARE)
    return out


def error_curve(pred: np.ndarray, label: np.ndarray, window: int) -> np.ndarray:
    """The online error (%) over consecutive windows of ``window`` samples."""
    wrong = (pred != label).astype(float)
    n = len(wrong) // window
    return 100.0 * wrong[:n * window].reshape(n, window).mean(1) if n else np.array([])
