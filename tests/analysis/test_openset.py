"""The open-set metrics against values computed by hand."""

import math

import numpy as np

from analysis.openset import open_set_scores


def test_hos_is_the_harmonic_mean_of_per_class_known_accuracy_and_unknown_recall():
    # known classes 0 and 1 (0: 3 of 4 right, 1: 1 of 2), unknown = 2 (2 of 4 recalled)
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 0, 2, 1, 0, 2, 2, 0, 1])
    s = open_set_scores(y, pred, unknown=2)
    known = (75.0 + 50.0) / 2  # the mean of the classes' accuracies, not of the samples'
    assert math.isclose(s["known_acc"], known)
    assert math.isclose(s["unknown_recall"], 50.0)
    assert math.isclose(s["hos"], 2 * known * 50.0 / (known + 50.0))


def test_classes_absent_from_the_target_do_not_count_and_degenerate_cases():
    # universal adaptation: known class 1 (source-private) has no target sample
    y, pred = np.array([0, 0, 3, 3]), np.array([0, 0, 3, 0])
    s = open_set_scores(y, pred, unknown=3)
    assert (s["known_acc"], s["unknown_recall"]) == (100.0, 50.0)
    assert math.isclose(s["hos"], 2 * 100 * 50 / 150)
    never = open_set_scores(np.array([0, 2]), np.array([0, 0]), unknown=2)
    assert never["unknown_recall"] == 0.0 and never["hos"] == 0.0  # never rejects
    closed = open_set_scores(np.array([0, 1]), np.array([0, 1]), unknown=2)
    assert closed["known_acc"] == 100.0 and math.isnan(closed["unknown_recall"])
    assert math.isnan(closed["hos"])  # no unknown sample: the H-score is undefined
