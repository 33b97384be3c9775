"""Error metrics of continuous targets: root mean squared error and mean absolute error, in
the data's own units (lower is better)."""

from __future__ import annotations

import numpy as np

# a regression scenario's metrics, all lower-is-better (in the target's units)
REGRESSION_METRICS = ("target_rmse", "target_mae", "source_rmse", "source_mae",
                      "target_train_rmse")


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    """sqrt(mean((pred - y)^2))."""
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - y) ** 2)))


def mae(pred: np.ndarray, y: np.ndarray) -> float:
    """mean(|pred - y|)."""
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - y)))
