"""Adaptation helps on the real cross-dataset shift MNIST <-> UCI digits at 8 x 8: the small
CNN of the ``digits-da`` suite, batch 64, cosine schedule, final model, the mean gain over
seeds 0 and 1 (paired) compared with ``source-only`` trained the same way.

Measured on 2 CPU cores (target accuracy gain over source-only, seeds 0 / 1):

* MNIST -> UCI, 800 steps (source-only 93.3 / 91.1): mcc +3.5 / +6.3, mdd +2.4 / +5.6;
  dann +1.5 / +2.8, dan +1.3 / +4.5 and pseudo-label +1.9 / +3.2 are within seed noise of
  source-only at this budget (dann and pseudo-label fell below the margin when the thread
  count changed), so they are not asserted in this direction.
* UCI -> MNIST, 500 steps (source-only 68.1 / 65.6): cdan +8.1 / +7.4, dan +6.6 / +5.1,
  mcc +12.9 / +15.8; mcd +4.5 (seed 0) but five optimizer steps per batch make it slow;
  dann, deep-coral and mean-teacher need more than 500 steps (-1.8, +0.5, +0.3) and mdd,
  entmin, fixmatch and pseudo-label lose to source-only here at this budget.

The 5-seed gains of every method at the suite's full budget are in the README.
"""

import pytest
import torch

from dalib.engine import Budget, Trace, accuracy, fit_transfer, seed_everything
from dalib.models import build_model
from dalib.registry import check_method
from scenarios.datasets import load_mnist, load_uci_digits
from scenarios.transfer import build_transfer

SEEDS = (0, 1)
TO_8X8 = [{"name": "resize", "size": 8, "crop": 4}]
pytestmark = pytest.mark.slow  # trains several CNNs per test


@pytest.fixture(scope="module")
def digits():
    return load_mnist(), load_uci_digits()


def _target_accuracy(scenario, name: str, steps: int, seed: int) -> float:
    seed_everything(seed)
    model = build_model(scenario.input_shape, scenario.num_classes, arch="cnn", bottleneck=128)
    params = {"schedule": "cosine"}
    method = check_method(name, params, "transfer").build(model, params)
    fit_transfer(method, scenario, Budget(steps=steps, batch_size=64), torch.device("cpu"), seed,
                 Trace())
    return accuracy(method, scenario.target_test)


def _mean_gain(shift: dict, name: str, steps: int) -> float:
    """The method's target accuracy minus source-only's, mean over the seeds (paired: the
    same split and initialisation per seed)."""
    return sum(_target_accuracy(sc, name, steps, seed) - source_only
               for seed, (sc, source_only) in shift.items()) / len(shift)


@pytest.fixture(scope="module")
def mnist_to_uci(digits):
    mnist, uci = digits
    out = {}
    for seed in SEEDS:
        sc = build_transfer("mnist-to-uci", mnist, uci, seed=seed, source_shifts=TO_8X8)
        out[seed] = sc, _target_accuracy(sc, "source-only", 800, seed)
    return out


@pytest.fixture(scope="module")
def uci_to_mnist(digits):
    mnist, uci = digits
    out = {}
    for seed in SEEDS:
        sc = build_transfer("uci-to-mnist", uci, mnist, seed=seed, target_shifts=TO_8X8)
        out[seed] = sc, _target_accuracy(sc, "source-only", 500, seed)
    return out


@pytest.mark.parametrize("name", ["mcc", "mdd"])
def test_adaptation_beats_a_strong_source_only_on_mnist_to_uci(mnist_to_uci, name):
    assert all(acc > 88 for _, acc in mnist_to_uci.values())  # a strong baseline
    assert _mean_gain(mnist_to_uci, name, 800) > 1.0


@pytest.mark.parametrize("name", ["cdan", "dan", "mcc"])
def test_adaptation_beats_source_only_on_uci_to_mnist(uci_to_mnist, name):
    assert all(acc > 60 for _, acc in uci_to_mnist.values())
    assert _mean_gain(uci_to_mnist, name, 500) > 3.0


def test_adabn_and_im_beat_source_only_on_rotated_digits():
    """UCI digits -> the other half rotated by 30 degrees, MLP, 400 steps, 3 seeds. Measured
    target accuracy: source-only 41.3 / 33.1 / 36.8, adabn 54.6 / 54.3 / 56.9 (batch-norm
    statistics of the rotated digits), im 62.1 / 56.9 / 61.7; entropy minimisation alone
    (entmin) falls below source-only (31.6 / 28.6 / 29.7): IM's diversity term is what keeps
    it from collapsing onto few classes."""
    uci = load_uci_digits()
    for seed in range(3):
        sc = build_transfer("rot", uci, uci, seed=seed, k=0,
                            target_shifts=[{"name": "rotate", "degrees": 30}])
        acc = {}
        for name in ("source-only", "adabn", "im", "entmin"):
            seed_everything(seed)
            method = check_method(name, {}, "transfer").build(
                build_model(sc.input_shape, sc.num_classes), {})
            fit_transfer(method, sc, Budget(steps=400), torch.device("cpu"), seed, Trace())
            acc[name] = accuracy(method, sc.target_test)
        assert acc["adabn"] > acc["source-only"] + 8, (seed, acc)
        assert acc["im"] > acc["source-only"] + 10 and acc["im"] > acc["entmin"] + 10, (seed, acc)
