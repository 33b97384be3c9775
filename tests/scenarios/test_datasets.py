from pathlib import Path

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
    (tmp_path / "given").mkdir()
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
    (tmp_path / "cli").mkdir()
    roots = data_roots(tmp_path / "cli")
    assert [str(r) for r in roots] == [f"{tmp_path}/cli", "/env/root", f"{tmp_path}/data",
                                       "/xdg/dalib"]
    with pytest.raises(InputError, match="--data-root: '/cli/root' is not a directory"):
        data_roots("/cli/root")


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


def _mnist_copy(root, change=None):
    """A copy of the local MNIST's four files under ``root/MNIST/raw``, ``change(name, bytes)``
    applied to each."""
    import os

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in MNIST_FILES:
        data = (Path(os.environ["DALIB_DATA"]) / "MNIST" / "raw" / f).read_bytes()
        (raw / f).write_bytes(change(f, data) if change else data)
    return raw


@pytest.mark.parametrize("dataset", ["mnist", "rotated-mnist", "colored-mnist"])
def test_every_mnist_dataset_carries_the_identity_of_the_files_it_reads(tmp_path, dataset):
    import tomllib

    from dalib.runspec import expand
    from scenarios.suite import parse_suite

    text = f"""seeds = 1
[budget]
steps = 1
[[scenario]]
name = "s"
kind = "transfer"
source = {{ dataset = "{dataset}"{', domain = "0"' if dataset == "rotated-mnist" else ""}{
        ', domain = "+90%"' if dataset == "colored-mnist" else ""} }}
target = {{ dataset = "uci-digits" }}
methods = ["source-only"]
"""
    ids = []
    for root in (None, tmp_path / "a", tmp_path / "b"):
        if root is not None:  # the same images, another label in b's training labels
            relabel = root.name == "b"
            _mnist_copy(root, lambda f, d, relabel=relabel: d[:-1] + bytes([(d[-1] + 1) % 10])
                        if relabel and f == MNIST_FILES[1] else d)
        suite = parse_suite(tomllib.loads(text), tmp_path / "s.toml",
                            str(root) if root else None)
        ids.append(expand(suite)[0].run_id)
    assert ids[0] == ids[1] != ids[2]  # same contents, same run; other contents, another


@pytest.mark.parametrize("file, change, message", [
    (1, lambda d: d[:8 - 4] + (7000).to_bytes(4, "big") + d[8:8 + 7000],
     "holds 7000 labels for 8000 images"),
    (0, lambda d: d[:-100], "has 6271916 bytes for images of shape [8000, 28, 28]"),
    (2, lambda d: b"\x00\x00\x08\x01" + d[4:], "is not an MNIST images file (magic number 2049)"),
    (3, lambda d: d[:2], "is not an MNIST labels file"),
])
def test_damaged_mnist_files_are_named_before_anything_runs(tmp_path, capsys, file, change,
                                                             message):
    from dalib.cli import main

    raw = _mnist_copy(tmp_path / "root", lambda f, d: change(d) if f == MNIST_FILES[file] else d)
    with pytest.raises(InputError) as err:
        load_mnist(data_root=tmp_path / "root")
    assert str(err.value).startswith(f"{raw / MNIST_FILES[file]}: MNIST: {message}"), err.value
    code = main(["run", "continual-mnist", "--out", str(tmp_path / "o"), "--data-root",
                 str(tmp_path / "root"), "--seeds", "1"])
    err = capsys.readouterr().err
    assert code == 2 and str(raw / MNIST_FILES[file]) in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_a_missing_data_root_is_refused_and_dalib_data_is_a_preflight_check(
        tmp_path, capsys, monkeypatch):
    from dalib.cli import main

    assert main(["run", "quick", "--out", str(tmp_path / "o"), "--data-root",
                 str(tmp_path / "nowhere")]) == 2
    assert "--data-root" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["data", "--data-root", str(tmp_path / "nowhere")]) == 2
    assert main(["data", "mnist", "uci-digits"]) == 0
    assert "mnist: ok (10000 samples)" in capsys.readouterr().out
    monkeypatch.setenv("DALIB_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "uci-digits"]) == 0
    assert main(["data", "rotated-mnist"]) == 1
    assert "rotated-mnist: missing" in capsys.readouterr().out
    assert main(["data"]) == 1  # every dataset, MNIST's missing
    assert main(["data", "svhn2"]) == 2


def test_dataset_spec_errors():
    with pytest.raises(InputError, match="unknown dataset 'svhn2'"):
        load_dataset({"dataset": "svhn2"})
    with pytest.raises(InputError, match="unknown option of dataset 'mnist'"):
        load_dataset({"dataset": "mnist", "colour": True})
    with pytest.raises(InputError, match="split: is 'val'"):
        load_dataset({"dataset": "mnist", "split": "val"})
