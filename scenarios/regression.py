"""Continuous targets: the labels of a ``regression = true`` transfer scenario.

A domain holds continuous labels when its ``y`` is a float tensor (an ``.npz`` file's
non-integer ``y``, the ``angle`` shift's angles, a regression image list's factors): one
target per sample (``y`` of shape ``(n,)``, class name ``value``) or several (``(n, d)``,
one class name per factor, one model output each). In a regression scenario, class labels
whose names are numbers (a table's label column, digits "0".."9") become those numbers.
Splits stratify by quantile bins of the target (of the first factor when there are
several), and each factor is standardised with the source training part's mean and
standard deviation (methods train on the standardised values; the error metrics are
reported in the data's own units, averaged over the factors).
"""

from __future__ import annotations

import numpy as np
import torch

from scenarios.domain import TARGET, Domain
from scenarios.errors import InputError

BINS = 5  # quantile bins that stratified splits keep in proportion


def is_continuous(domain: Domain) -> bool:
    """Whether ``domain`` holds continuous labels."""
    return domain.y is not None and domain.y.is_floating_point()


def continuous(domain: Domain, role: str) -> Domain:
    """``domain`` with continuous labels: as they are, or each class label's name read as a
    number (an error names the first class whose name is not one)."""
    if is_continuous(domain):
        return domain
    values = []
    for name in domain.classes:
        try:
            values.append(float(name))
        except ValueError:
            raise InputError(role, f"{domain.name!r} has label {name!r}, not a number",
                             expected="numeric labels in a regression scenario (a number "
                             "per sample)") from None
    if not np.isfinite(values).all():
        raise InputError(role, f"{domain.name!r} has a label that is not finite",
                         expected="finite numeric labels")
    return domain.with_(y=torch.tensor(values, dtype=torch.float32)[domain.y],
                        classes=(TARGET,))


def require_classes(domain: Domain, role: str) -> None:
    """Continuous labels where classes are needed are an input error."""
    if is_continuous(domain):
        raise InputError(role, f"{domain.name!r} has continuous labels (real numbers)",
                         expected="class labels, or regression = true on a transfer scenario")


def quantile_bins(y: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Each value's quantile bin (0 .. bins - 1): the strata of a stratified split (of the
    first factor's values when ``y`` holds several per sample)."""
    if y.ndim == 2:
        y = y[:, 0]
    if len(y) < 2 * bins:
        return np.zeros(len(y), dtype=np.int64)
    edges = np.quantile(y, np.linspace(0, 1, bins + 1)[1:-1])
    return np.searchsorted(edges, y, side="right")


def target_scale(source: Domain) -> tuple:
    """The source training part's target mean and standard deviation (1 when constant):
    floats for one target, a tuple per factor for several."""
    y = source.y.double()
    std = y.std(0) if len(y) > 1 else torch.zeros(y.shape[1:], dtype=y.dtype)
    std = torch.where(std > 0, std, torch.ones_like(std))
    if y.ndim == 1:
        return float(y.mean()), float(std)
    return tuple(y.mean(0).tolist()), tuple(std.tolist())


def standardized_targets(domain: Domain | None, scale: tuple[float, float]) -> Domain | None:
    """``domain`` with its targets as ``(y - mean) / std``."""
    if domain is None:
        return None
    mean, std = (torch.as_tensor(v, dtype=torch.float64) for v in scale)
    return domain.with_(y=((domain.y.double() - mean) / std).float())


def pick_per_bin(domain: Domain, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` random samples of every quantile bin of the targets (the k labelled
    target samples of a regression scenario: k per bin, as k per class elsewhere)."""
    bins = quantile_bins(domain.y.numpy())
    sizes = np.bincount(bins)
    if k > sizes.min():
        raise InputError("k", f"is {k} but a quantile bin of {domain.name!r}'s targets has "
                         f"only {int(sizes.min())} samples", expected=f"k <= {int(sizes.min())} "
                         f"(k labelled target samples in each of {len(sizes)} quantile bins)")
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(bins == b), k, replace=False)
                                   for b in range(len(sizes))]))
