"""Open-set metrics: the accuracy on the known classes (OS*), the recall of the unknown class
(UNK) and their harmonic mean, the open-set H-score ``hos`` (Fu et al., "Learning to Detect
Open Classes for Universal Domain Adaptation", ECCV 2020; TLlib's HOS, after Bucci et al.,
ECCV 2020; the form of TLlib's ``openset_domain_adaptation/osbp.py`` and OVANet's
``eval.py``). Not the transferability score ``h_score`` of Bao et al. (2019)."""

from __future__ import annotations

import numpy as np

OPEN_SET_METRICS = ("known_acc", "unknown_recall", "hos")


def open_set_scores(y: np.ndarray, pred: np.ndarray, unknown: int) -> dict[str, float]:
    """``known_acc``: the mean over the known classes present in ``y`` of each class's
    accuracy (%); ``unknown_recall``: the share (%) of the samples labelled ``unknown``
    predicted ``unknown``; ``hos``: their harmonic mean (0 when both are 0). A part
    without samples is NaN, and so is the H-score then."""
    y, pred = np.asarray(y), np.asarray(pred)
    known = [c for c in np.unique(y) if c != unknown]
    known_acc = 100.0 * float(np.mean([(pred[y == c] == c).mean() for c in known])) \
        if known else float("nan")
    is_unknown = y == unknown
    recall = 100.0 * float((pred[is_unknown] == unknown).mean()) if is_unknown.any() \
        else float("nan")
    total = known_acc + recall
    h = 2.0 * known_acc * recall / total if total > 0 else (0.0 if total == 0 else float("nan"))
    return {"known_acc": known_acc, "unknown_recall": recall, "hos": h}
