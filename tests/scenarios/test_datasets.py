import pytest
import torch

from scenarios.datasets import MNIST_FILES, data_roots, load_dataset, load_mnist, load_uci_digits
from scenarios.errors import InputError


def test_uci_digits_embedded():
    d = load_uci_digits()
    assert d.x.shape == (1797, 1, 8, 8) and d.num_classes == 10
    assert 0.0 <= float(d.x.min()) and float(d.x.max()) == 1.0


def test_mnist_from_shared_data_keeps_official_test_split():
    d = load_mnist()
    assert d.x.shape == (10000, 1, 28, 28)
    assert int(d.test_mask.sum()) == 2000
    assert torch.bincount(d.y[~d.test_mask]).tolist() == [801, 902, 793, 826, 784, 690, 811,
                                                          856, 755, 782]
    assert len(load_mnist(split="test")) == 2000


def test_mnist_missing_names_files_and_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("DALIB_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as err:
        load_mnist(data_root=tmp_path / "given")
    msg = str(err.value)
    for part in ("given/MNIST/raw", "env/MNIST/raw", f"{tmp_path}/data/MNIST/raw",
                 "cache/dalib/MNIST/raw", "train-images-idx3-ubyte", "nothing is downloaded"):
        assert part in msg


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("DALIB_DATA", "/env/root")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    monkeypatch.chdir(tmp_path)
    roots = data_roots("/cli/root")
    assert [str(r) for r in roots] == ["/cli/root", "/env/root", f"{tmp_path}/data",
                                       "/xdg/dalib"]


def test_mnist_in_the_current_folders_data_is_found_without_settings(tmp_path, monkeypatch):
    """Where torchvision's MNIST('data', download=True) leaves it, on a connected machine."""
    import os

    (tmp_path / "data").symlink_to(os.environ["DALIB_DATA"])
    monkeypatch.delenv("DALIB_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert len(load_mnist(split="test")) == 2000


def test_a_runs_identity_covers_the_mnist_files_it_reads(tmp_path):
    from dalib.runspec import expand
    from scenarios.suite import load_suite

    suite = load_suite("continual-mnist")
    files = expand(suite)[0].config()["files"]
    assert sorted(files) == [f"mnist/{f}" for f in sorted(MNIST_FILES)]
    copy = tmp_path / "MNIST" / "raw"  # other MNIST files: another identity
    copy.mkdir(parents=True)
    for f in MNIST_FILES:
        (copy / f).write_bytes(b"other contents of " + f.encode())
    other = load_suite("continual-mnist", data_root=str(tmp_path))
    assert expand(other)[0].config()["files"] != files
    assert expand(other)[0].run_id != expand(suite)[0].run_id


def test_dataset_spec_errors():
    with pytest.raises(InputError, match="unknown dataset 'svhn2'"):
        load_dataset({"dataset": "svhn2"})
    with pytest.raises(InputError, match="unknown option of dataset 'mnist'"):
        load_dataset({"dataset": "mnist", "colour": True})
    with pytest.raises(InputError, match="split: is 'val'"):
        load_dataset({"dataset": "mnist", "split": "val"})
