import numpy as np
import pytest

from analysis.continual import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    intransigence,
    summarize,
)

# Three tasks. Row 0: untrained model; row i: after training tasks 0..i-1.
R = np.array([
    [10.0, 12.0, 8.0],
    [90.0, 30.0, 20.0],
    [70.0, 95.0, 25.0],
    [60.0, 80.0, 85.0],
])


def test_acc_is_mean_of_last_row():
    assert average_accuracy(R) == pytest.approx((60 + 80 + 85) / 3)


def test_bwt_by_hand():
    # task 0: 60 - 90 = -30; task 1: 80 - 95 = -15
    assert backward_transfer(R) == pytest.approx((-30 - 15) / 2)


def test_fwt_by_hand():
    # task 1 before training it: 30 vs untrained 12; task 2: 25 vs 8
    assert forward_transfer(R) == pytest.approx(((30 - 12) + (25 - 8)) / 2)


def test_forgetting_uses_best_earlier_accuracy():
    # task 0: best of rows 1,2 = 90, final 60 -> 30; task 1: best of row 2 = 95, final 80 -> 15
    assert forgetting(R) == pytest.approx(22.5)
    # a task that improves after it was learned has its peak, not its first value, as reference
    R2 = np.array([[0, 0, 0], [50, 0, 0], [70, 60, 0], [40, 50, 90.0]])
    assert forgetting(R2) == pytest.approx(((70 - 40) + (60 - 50)) / 2)


def test_intransigence_against_reference():
    ref = [95.0, 97.0, 90.0]
    assert intransigence(R, ref) == pytest.approx(((95 - 90) + (97 - 95) + (90 - 85)) / 3)


def test_fwt_is_undefined_under_class_il_as_the_cli_says():
    assert np.isnan(summarize(R, "class-il")["fwt"])  # a Split stream: new classes per task
    assert np.isnan(summarize(R, "class-il", [[0, 1], [2, 3], [4, 5]])["fwt"])
    # a class-IL stream whose later tasks bring no new class (a domain sequence)
    assert summarize(R, "class-il", [[0, 1], [0, 1], [1]])["fwt"] == summarize(R, "task-il")["fwt"]
    with pytest.raises(ValueError, match="protocol"):
        summarize(R, "class-incremental")


def test_summary_and_shape_check():
    s = summarize(R, "task-il")
    assert set(s) == {"acc", "bwt", "fwt", "forgetting"} and not np.isnan(s["fwt"])
    with pytest.raises(ValueError, match="T \\+ 1, T"):
        summarize(R[1:], "task-il")
    single = summarize(np.array([[10.0], [80.0]]), "domain-il")
    assert single["acc"] == 80.0 and np.isnan(single["bwt"])
