"""Error metrics of continuous targets: root mean squared error and mean absolute error, in
the data's own units (lower is better). With several factors per sample (``(n, d)``
arrays) each is the mean over the factors of that factor's error, as TLlib reports its
image regression benchmarks (``examples/domain_adaptation/image_regression/utils.py``)."""

from __future__ import annotations

import numpy as np

# a regression scenario's metrics, all lower-is-better (in the target's units)
REGRESSION_METRICS = ("target_rmse", "target_mae", "source_rmse", "source_mae",
                      "target_train_rmse")


def factor_mae(factor: str) -> str:
    """The metric of one factor's target MAE, with several factors per sample."""
    return f"target_mae[{factor}]"


def is_factor_mae(metric) -> bool:
    """Whether ``metric`` is one factor's target MAE (:func:`factor_mae`)."""
    return str(metric).startswith("target_mae[")


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    """sqrt(mean((pred - y)^2)), per factor and averaged over them."""
    return float(np.mean(np.sqrt(np.mean((np.asarray(pred, np.float64) - y) ** 2, axis=0))))


def mae(pred: np.ndarray, y: np.ndarray) -> float:
    """mean(|pred - y|), per factor and averaged over them."""
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - y)))
