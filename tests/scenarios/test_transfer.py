import numpy as np
import pytest
import torch

from scenarios.datasets import load_mnist, load_uci_digits
from scenarios.errors import InputError
from scenarios.shifts import apply_shifts
from scenarios.transfer import build_transfer

MNIST_TO_8 = [{"name": "resize", "size": 8, "crop": 4}]


def _rows(d):
    return {tuple(r) for r in d.x.flatten(1).mul(16).round().int().tolist()}


def test_same_dataset_is_split_into_disjoint_halves():
    uci = load_uci_digits()
    sc = build_transfer("t", uci, uci, seed=0, k=3)
    src = len(sc.source) + len(sc.source_val) + len(sc.source_test)
    assert abs(src - len(sc.target_train) - len(sc.target_test)) <= 20
    total = src + len(sc.target_train) + len(sc.target_test)
    assert total == len(uci)
    # uci digits has a few duplicate images, so compare the sets of sample ids instead
    ids = torch.arange(len(uci), dtype=torch.float32)[:, None].expand(-1, 64).reshape(-1, 1, 8, 8)
    tagged = uci.with_(x=ids / 4096)
    sc = build_transfer("t", tagged, tagged, seed=0)
    parts = [set(p.x[:, 0, 0, 0].mul(4096).round().int().tolist())
             for p in (sc.source, sc.source_val, sc.source_test, sc.target_train, sc.target_test)]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == len(uci)


def test_k_per_class_from_target_train():
    uci = load_uci_digits()
    sc = build_transfer("t", uci, uci, seed=1, k=4,
                        target_shifts=[{"name": "rotate", "degrees": 30}])
    assert torch.bincount(sc.target_labelled.y).tolist() == [4] * 10
    assert _rows(sc.target_labelled) <= _rows(sc.target_train)
    assert build_transfer("t", uci, uci, seed=1).target_labelled is None


def test_k_larger_than_a_class_is_an_input_error():
    uci = load_uci_digits()
    with pytest.raises(InputError, match=r"k: is 200 but class '\d' has only \d+ samples"):
        build_transfer("t", uci, uci, seed=0, k=200)


def test_seed_changes_splits_and_is_reproducible():
    uci = load_uci_digits()
    a = build_transfer("t", uci, uci, seed=0, k=2)
    b = build_transfer("t", uci, uci, seed=0, k=2)
    c = build_transfer("t", uci, uci, seed=1, k=2)
    assert torch.equal(a.target_labelled.x, b.target_labelled.x)
    assert not torch.equal(a.target_labelled.x, c.target_labelled.x)


def test_mnist_to_uci_uses_official_test_split_and_one_shape():
    mnist, uci = load_mnist(), load_uci_digits()
    sc = build_transfer("m2u", mnist, uci, seed=0, source_shifts=MNIST_TO_8)
    assert len(sc.source) + len(sc.source_val) == 8000 and len(sc.source_test) == 2000
    assert len(sc.source_val) == 800
    assert sc.input_shape == (1, 8, 8) == sc.target_test.input_shape
    with pytest.raises(InputError, match="resize"):
        build_transfer("m2u", mnist, uci, seed=0)


def test_label_noise_corrupts_source_train_only():
    uci = load_uci_digits()
    clean = build_transfer("t", uci, uci, seed=0)
    noisy = build_transfer("t", uci, uci, seed=0,
                           source_shifts=[{"name": "label-noise", "rate": 1.0}])
    assert torch.equal(clean.source.x, noisy.source.x)
    assert bool((clean.source.y != noisy.source.y).all())
    assert torch.equal(clean.source_test.y, noisy.source_test.y)


def test_label_space_must_match():
    uci = load_uci_digits()
    other = uci.with_(classes=("a", "b"), y=uci.y % 2)
    with pytest.raises(InputError, match="lacks class '0' of the source"):
        build_transfer("t", uci, other, seed=0)
    reordered = uci.with_(classes=tuple(reversed(uci.classes)))
    with pytest.raises(InputError, match="orders the classes differently"):
        build_transfer("t", uci, reordered, seed=0)


def test_empty_target_after_shift():
    uci = load_uci_digits()
    empty = apply_shifts(uci, [{"name": "class-subset", "classes": [0]}], np.random.default_rng(0))
    empty = empty.subset(np.array([], dtype=np.int64))
    with pytest.raises(InputError, match="empty"):
        build_transfer("t", uci, empty, seed=0)


def test_open_set_numbers_the_sources_classes_and_labels_the_rest_unknown():
    uci = load_uci_digits()
    src = [{"name": "class-subset", "classes": [2, 5, 7]}]
    sc = build_transfer("t", uci, uci, seed=0, source_shifts=src, open_set=True)
    assert sc.open_set and sc.num_classes == 3 and sc.source.classes == ("2", "5", "7")
    assert sc.target_test.classes == ("2", "5", "7", "unknown")
    for part in (sc.source, sc.source_val, sc.source_test):
        assert set(part.y.tolist()) == {0, 1, 2}
    # the target's labels by name: 2 -> 0, 5 -> 1, 7 -> 2, every other digit -> 3 (unknown)
    for part in (sc.target_train, sc.target_test):
        assert set(part.y.tolist()) == {0, 1, 2, 3}
        assert int((part.y == 3).sum()) > 0.6 * len(part)
    plain = build_transfer("t", uci, uci, seed=0, source_shifts=src)  # same splits, same order
    names = np.array(uci.classes)[plain.target_test.y.numpy()]
    expected = np.array([{"2": 0, "5": 1, "7": 2}.get(n, 3) for n in names])
    assert np.array_equal(sc.target_test.y.numpy(), expected)
    # a target whose class list differs from the source's is matched by name
    letters = uci.with_(classes=tuple("abcdefghij"))
    odd = build_transfer("t", letters, uci.with_(classes=("a", "b") + uci.classes[2:]), seed=0,
                         source_shifts=[{"name": "class-subset", "classes": [0, 1]}],
                         open_set=True)
    assert odd.target_test.classes == ("a", "b", "unknown")
    assert set(odd.target_test.y.tolist()) == {0, 1, 2}
