"""Continuous targets: numeric labels become targets, float arrays are read as targets, the
angle shift labels each image with its rotation, regression scenarios standardise the
targets on the source and stratify by quantile bins, and misuse is refused before anything
runs."""

import numpy as np
import pytest
import torch

from scenarios.datasets import load_uci_digits
from scenarios.domain import TARGET, Domain, from_arrays
from scenarios.errors import InputError
from scenarios.regression import continuous, quantile_bins
from scenarios.shifts import apply_shifts
from scenarios.transfer import build_transfer


def test_numeric_class_names_become_their_values_and_other_names_are_refused():
    d = Domain("d", torch.zeros(4, 2), torch.tensor([0, 2, 1, 2]), ("1.5", "-3", "10"))
    got = continuous(d, "source")
    assert got.y.tolist() == [1.5, 10.0, -3.0, 10.0] and got.classes == (TARGET,)
    bad = d.with_(classes=("1.5", "cat", "10"))
    with pytest.raises(InputError, match="'cat', not a number"):
        continuous(bad, "source")


def test_float_arrays_that_are_not_class_ids_are_read_as_targets():
    x = np.zeros((4, 3), np.float32)
    assert from_arrays(x, np.array([0.5, -1.0, 2.25, 3.0])).y.dtype == torch.float32
    assert from_arrays(x, np.array([0.0, 1.0, 2.0, 1.0])).y.dtype == torch.int64  # class ids
    with pytest.raises(InputError, match="not finite"):
        from_arrays(x, np.array([0.5, np.nan, 1.0, 2.0]))


def test_the_angle_shift_labels_each_image_with_the_rotation_it_applied():
    uci = load_uci_digits()
    d = uci.subset(np.arange(50))
    shifted = apply_shifts(d, [{"name": "angle", "degrees": 30}], np.random.default_rng(0))
    assert shifted.y.dtype == torch.float32 and shifted.classes == (TARGET,)
    assert shifted.y.abs().max() <= 30 and shifted.y.std() > 10  # uniform on [-30, 30]
    one = d.subset([7])
    rotated = apply_shifts(one, [{"name": "rotate", "degrees": float(shifted.y[7])}],
                           np.random.default_rng(0))
    torch.testing.assert_close(rotated.x[0], shifted.x[7], atol=1e-5, rtol=0)


def test_a_regression_scenario_standardises_targets_on_the_source_training_part():
    uci = load_uci_digits()
    sc = build_transfer("r", uci, uci, seed=0, k=3, regression=True,
                        source_shifts=[{"name": "angle", "degrees": 45}],
                        target_shifts=[{"name": "angle", "degrees": 45}])
    assert sc.regression and sc.num_classes == 1
    assert abs(float(sc.source.y.mean())) < 1e-5 and abs(float(sc.source.y.std()) - 1) < 1e-3
    mean, std = sc.target_scale
    assert abs(mean) < 5 and 20 < std < 32  # angles uniform on [-45, 45]: std 26
    # every part keeps the source's quantile bins in proportion; k per bin on the target
    for part in (sc.source_val, sc.source_test):
        edges = np.quantile(sc.source.y.numpy(), [0.2, 0.4, 0.6, 0.8])
        shares = np.bincount(np.searchsorted(edges, part.y.numpy()), minlength=5) / len(part)
        assert np.abs(shares - 0.2).max() < 0.08, shares
    edges = np.quantile(sc.target_train.y.numpy(), [0.2, 0.4, 0.6, 0.8])
    bins = np.searchsorted(edges, sc.target_labelled.y.numpy(), side="right")
    assert np.bincount(bins, minlength=5).tolist() == [3] * 5
    assert np.array_equal(quantile_bins(sc.target_labelled.y.numpy() * 0 + np.arange(15)),
                          np.repeat(np.arange(5), 3))
    assert set(sc.target_labelled.y.tolist()) <= set(sc.target_train.y.tolist())


def test_class_labels_are_refused_unless_numeric_and_targets_unless_regression():
    uci = load_uci_digits()
    as_numbers = build_transfer("r", uci, uci, seed=0, regression=True)  # digits 0..9
    assert sorted(set(torch.round(as_numbers.source.y * as_numbers.target_scale[1]
                                  + as_numbers.target_scale[0]).tolist())) == \
        [float(c) for c in range(10)]
    targets = uci.with_(y=uci.y.float() + 0.5, classes=(TARGET,))
    with pytest.raises(InputError, match="continuous labels"):
        build_transfer("c", targets, targets, seed=0)
