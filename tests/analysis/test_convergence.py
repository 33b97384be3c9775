"""Convergence signs by hand: a loss still falling, a criterion still rising, and neither."""

import numpy as np

from analysis.convergence import convergence, criterion_rise, loss_drop


def test_a_falling_loss_is_not_converged_and_a_flat_one_is():
    falling = [2.0, 1.6, 1.3, 1.1, 1.0, 0.9, 0.8, 0.7]  # quarters: (1.0, 0.9) -> (0.8, 0.7)
    assert loss_drop(falling) == (0.95 - 0.75) / 0.95
    assert not convergence(falling, [], True)["converged"]
    flat = [2.0, 1.0, 0.6, 0.5, 0.5, 0.5, 0.49, 0.5]
    assert abs(loss_drop(flat)) < 0.05 and convergence(flat, [], True)["converged"]
    assert loss_drop([1.0, 0.5, 0.1, 0.04]) == 0.0  # below the floor: fits its training data
    assert np.isnan(loss_drop([1.0, 0.5, 0.2]))  # too few intervals to tell


def test_a_criterion_still_improving_at_each_of_the_last_checkpoints_is_not_converged():
    rising = [0.1, 0.2, 0.3, 0.35, 0.5, 0.7]  # range 0.6; three rises from 0.3 to 0.7
    assert criterion_rise(rising, True) == (0.7 - 0.3) / 0.6
    assert not convergence([1.0] * 8, rising, True)["converged"]
    # lower is better (DEV): a falling risk is an improving criterion
    assert criterion_rise([0.5, 0.4, 0.3, 0.2], False) == 1.0
    wobbling = [0.1, 0.5, 0.3, 0.4, 0.6, 0.55]
    assert criterion_rise(wobbling, True) == 0.0 and convergence([1.0] * 8, wobbling,
                                                                 True)["converged"]
