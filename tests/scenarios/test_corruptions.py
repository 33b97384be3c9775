"""Digit corruptions: deterministic, within [0, 1], stronger at higher severity, and usable
on any image domain as the ``corrupt`` shift."""

import numpy as np
import pytest
import torch

from scenarios.corruptions import CORRUPTIONS, corrupt_images
from scenarios.datasets import load_uci_digits
from scenarios.errors import InputError
from scenarios.shifts import apply_shifts

X = load_uci_digits().x[:64]


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_is_reproducible_bounded_and_grows_with_severity(name):
    mild, severe = (corrupt_images(X, name, s, seed=3) for s in (1, 5))
    assert torch.equal(severe, corrupt_images(X, name, 5, seed=3))
    assert mild.shape == X.shape and 0 <= float(severe.min()) and float(severe.max()) <= 1
    assert (severe - X).abs().mean() > (mild - X).abs().mean() > 0


def test_the_corrupt_shift_applies_to_any_image_domain_and_checks_its_options():
    d = apply_shifts(load_uci_digits(), [{"name": "corrupt", "corruption": "fog",
                                          "severity": 3}], np.random.default_rng(0))
    again = apply_shifts(load_uci_digits(), [{"name": "corrupt", "corruption": "fog",
                                              "severity": 3}], np.random.default_rng(0))
    assert torch.equal(d.x, again.x) and not torch.equal(d.x, load_uci_digits().x)
    with pytest.raises(InputError, match="severity"):
        apply_shifts(load_uci_digits(), [{"name": "corrupt", "corruption": "fog",
                                          "severity": 6}], np.random.default_rng(0))
    with pytest.raises(InputError, match="one of"):
        apply_shifts(load_uci_digits(), [{"name": "corrupt", "corruption": "snow"}],
                     np.random.default_rng(0))
