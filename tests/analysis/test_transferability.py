"""Transferability scores on hand-checked cases, and their rank correlation with results."""

import numpy as np
import pandas as pd
import pytest

from analysis.transferability import (
    h_score,
    leep,
    logme,
    nce,
    proxy_a_distance,
    score_correlations,
)

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 5, 400)
SEPARATING = np.hstack([np.eye(5)[Y] * 3 + RNG.normal(size=(400, 5)) * 0.5,
                        RNG.normal(size=(400, 11))])
NOISE = RNG.normal(size=(400, 16))


def test_feature_scores_prefer_features_that_separate_the_classes():
    assert logme(SEPARATING, Y) > logme(NOISE, Y) + 0.5
    assert h_score(SEPARATING, Y) > 5 * h_score(NOISE, Y)


def test_leep_and_nce_by_hand():
    perfect = np.eye(5)[Y]
    assert leep(perfect, Y) == pytest.approx(0.0, abs=1e-9)
    assert nce(Y, Y) == pytest.approx(0.0, abs=1e-12)
    uniform = np.full((400, 5), 0.2)
    assert leep(uniform, Y) == pytest.approx(np.log(np.bincount(Y) / 400)[Y].mean())
    # a source model that predicts the same class for everything says nothing about y
    p = np.bincount(Y) / 400
    assert nce(np.zeros(400, dtype=int), Y) == pytest.approx(np.sum(p * np.log(p)))
    # a relabelling of the target classes is as good as the classes themselves
    assert nce((Y + 2) % 5, Y) == pytest.approx(0.0, abs=1e-12)
    assert leep(np.eye(5)[(Y + 2) % 5], Y) == pytest.approx(0.0, abs=1e-9)


def test_proxy_a_distance_near_0_for_one_domain_and_near_2_for_disjoint_ones():
    a, b = RNG.normal(size=(400, 8)), RNG.normal(size=(400, 8))
    assert abs(proxy_a_distance(a, b)) < 0.3
    assert proxy_a_distance(a, b + 6) > 1.9


def test_kendall_tau_across_conditions():
    rows = []
    for i, sc in enumerate(["c0", "c1", "c2", "c3"]):
        rows.append((sc, "source-only", 0, "logme", -1.0 + i))
        rows.append((sc, "dann", 0, "target_acc", 60.0 + 10 * i))  # rises with the score
        rows.append((sc, "dann", 0, "ntg", 5.0 - i))               # falls with it
    table = pd.DataFrame(rows, columns=["scenario", "method", "seed", "metric", "value"])
    tau = score_correlations(table).set_index(["score", "method", "metric"])["tau"]
    assert tau["logme", "dann", "target_acc"] == pytest.approx(1.0)
    assert tau["logme", "dann", "ntg"] == pytest.approx(-1.0)
