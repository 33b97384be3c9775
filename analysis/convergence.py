"""Had a run converged? From its training-loss curve and its selection criterion's scores at
the checkpoints, the signs that more training would still change the result.

A run is counted as not converged when either still moves at the end of its budget:

* the training loss: its mean over the last quarter of the checkpoint intervals is more
  than ``LOSS_DROP`` (5%) below its mean over the quarter before (each interval's loss is
  the mean over all its steps, not one logged batch), and above ``LOSS_FLOOR`` (0.05: a
  cross-entropy that low fits the training data, whatever its relative change);
* the selection criterion: its score improved over each of the last ``CHECKPOINTS`` (3)
  checkpoints, by more than ``CRITERION_RISE`` (10%) of its range over the whole run in all.

Both thresholds are conventions, stated where the report uses them; adversarial losses that
oscillate without trend count as converged by the first sign, which is why the second looks
at what selection reads.
"""

from __future__ import annotations

import numpy as np

LOSS_DROP = 0.05
LOSS_FLOOR = 0.05
CRITERION_RISE = 0.10
CHECKPOINTS = 3


def loss_drop(losses) -> float:
    """The relative drop of the mean training loss (one value per checkpoint interval) from
    the second-to-last quarter of the intervals to the last (NaN with fewer than 4 intervals
    or a zero mean)."""
    x = np.asarray(losses, dtype=float)
    q = len(x) // 4
    if q < 1:
        return float("nan")
    before, last = x[-2 * q:-q].mean(), x[-q:].mean()
    if abs(last) < LOSS_FLOOR:
        return 0.0
    return float((before - last) / abs(before)) if before else float("nan")


def criterion_rise(scores, higher_is_better: bool) -> float:
    """How much the criterion improved over the last ``CHECKPOINTS`` checkpoints, as a
    share of its range over the run, when it improved at each of them (else 0; NaN with
    fewer checkpoints or a constant score)."""
    s = np.asarray(scores, dtype=float) * (1.0 if higher_is_better else -1.0)
    if len(s) < CHECKPOINTS + 1 or not np.isfinite(s).all():
        return float("nan")
    span = s.max() - s.min()
    tail = s[-CHECKPOINTS - 1:]
    if span == 0 or not (np.diff(tail) > 0).all():
        return 0.0
    return float((tail[-1] - tail[0]) / span)


def convergence(losses, scores, higher_is_better: bool) -> dict[str, float | bool]:
    """``loss_drop``, ``criterion_rise`` and ``converged`` (neither beyond its threshold;
    an undefined sign does not count against it)."""
    drop, rise = loss_drop(losses), criterion_rise(scores, higher_is_better)
    moving = (np.isfinite(drop) and drop > LOSS_DROP) or (np.isfinite(rise)
                                                          and rise > CRITERION_RISE)
    return {"loss_drop": drop, "criterion_rise": rise, "converged": not moving}
