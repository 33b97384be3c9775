"""Decoded images kept as uint8 and read a batch at a time: the same floats as the
in-memory path, rows selected and pooled without reading, and runs whose records do not
depend on which path held the images."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from dalib.cli import main
from dalib.engine import Placement, Sampler
from scenarios.domain import concat, from_arrays
from scenarios.pixels import Pixels


def digits_rgb(n: int = 200) -> np.ndarray:
    d = load_digits()
    grey = (d.images[:n] * 255 / 16).astype(np.uint8)
    return np.stack([grey, 255 - grey, grey // 2], axis=-1), d.target[:n]


def test_rows_read_as_the_in_memory_path_holds_them():
    x, y = digits_rgb()
    eager = from_arrays(x, y, layout="NHWC")
    lazy = from_arrays(x, y, layout="NHWC", lazy=True)
    assert isinstance(lazy.x, Pixels) and lazy.x.shape == eager.x.shape
    index = torch.tensor([5, 0, 199, 5])
    assert torch.equal(lazy.x[index], eager.x[index])
    assert torch.equal(lazy.x[3:9], eager.x[3:9]) and torch.equal(lazy.x[7], eager.x[7])
    assert torch.equal(lazy.x[:, 1, 0, 0], eager.x[:, 1, 0, 0])
    assert torch.equal(torch.as_tensor(np.asarray(lazy.x)), eager.x)
    assert float(lazy.x.mean()) == float(eager.x.mean())  # any other op reads the whole set


def test_subsets_and_pools_stay_unread_and_keep_their_rows():
    x, y = digits_rgb()
    a = from_arrays(x[:100], y[:100], layout="NHWC", lazy=True)
    b = from_arrays(x[100:], y[100:], layout="NHWC", lazy=True)
    pooled = concat([a.subset([3, 1]), b.subset([50, 0])], "pooled")
    assert isinstance(pooled.x, Pixels)
    expected = from_arrays(x[[3, 1, 150, 100]], y[[3, 1, 150, 100]], layout="NHWC").x
    assert torch.equal(pooled.x[torch.arange(4)], expected)
    assert pooled.y.tolist() == y[[3, 1, 150, 100]].tolist()


def test_a_memory_mapped_array_is_read_a_batch_at_a_time(tmp_path, monkeypatch):
    x, y = digits_rgb()
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    domain = from_arrays(mapped, y, layout="NHWC", lazy=True)
    monkeypatch.setenv("DALIB_HOST_MEMORY", "0")  # nothing may be read whole
    placed = Placement(torch.device("cpu"))(domain)
    assert isinstance(placed.x, Pixels) and not placed.x.arrays[0].flags.owndata  # the map
    monkeypatch.setenv("DALIB_HOST_MEMORY", "1e12")
    resident = Placement(torch.device("cpu"))(domain)
    assert isinstance(resident.x, torch.Tensor)
    lazy_batches = Sampler(placed, 16, torch.Generator().manual_seed(3))
    eager_batches = Sampler(resident, 16, torch.Generator().manual_seed(3))
    for _ in range(30):  # across epochs: the same permutations, the same images
        a, b = lazy_batches.next(), eager_batches.next()
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def write_tree(root: Path) -> None:
    x, y = digits_rgb(400)
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = root / ("a" if i < 200 else "b") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")


@pytest.mark.parametrize("methods", [["source-only", "dann"], ["pseudo-label"]])
def test_runs_give_the_same_records_whichever_path_holds_the_images(tmp_path, monkeypatch,
                                                                    methods):
    write_tree(tmp_path / "tree")
    suite = tmp_path / "s.toml"
    suite.write_text('name = "paths"\nseeds = 2\n[budget]\nsteps = 30\nbatch_size = 16\n'
                     '[model]\narch = "cnn"\nwidth = 4\n[[scenario]]\nname = "a-b"\n'
                     'kind = "transfer"\nsource = { folder = "tree", domain = "a" }\n'
                     'target = { folder = "tree", domain = "b" }\n'
                     f'methods = {json.dumps(methods)}\n')
    monkeypatch.setenv("DALIB_CACHE", str(tmp_path / "cache"))
    records = {}
    for name, budget in (("resident", "1e12"), ("mapped", "0")):
        monkeypatch.setenv("DALIB_HOST_MEMORY", budget)
        out = tmp_path / name
        assert main(["run", str(suite), "--out", str(out), "--no-report", "--jobs", "1"]) == 0
        records[name] = {r["run_id"]: r["metrics"] for r in
                         (json.loads(p.read_text()) for p in (out / "runs").rglob("*.json"))}
    assert records["resident"] == records["mapped"] and len(records["mapped"]) == \
        2 * len(methods)


def test_images_read_from_their_files_each_batch_give_the_cached_paths_numbers(tmp_path,
                                                                              monkeypatch):
    """``read = "files"``: nothing decoded ahead or kept (not even with room for it), each
    batch decoded in worker processes, and the same records as the decode-once cache."""
    write_tree(tmp_path / "tree")
    monkeypatch.setenv("DALIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DALIB_HOST_MEMORY", "1e12")
    metrics = {}
    for read in ("files", "cache"):
        suite = tmp_path / f"{read}.toml"
        data = f'size = 8, read = "{read}"'
        suite.write_text('name = "reads"\nseeds = 2\n[budget]\nsteps = 30\nbatch_size = 16\n'
                         '[model]\narch = "cnn"\nwidth = 4\n[[scenario]]\nname = "a-b"\n'
                         'kind = "transfer"\n'
                         f'source = {{ folder = "tree", domain = "a", {data} }}\n'
                         f'target = {{ folder = "tree", domain = "b", {data} }}\n'
                         'methods = ["source-only", "dann"]\n')
        out = tmp_path / read
        assert main(["run", str(suite), "--out", str(out), "--no-report", "--jobs", "1"]) == 0
        metrics[read] = {(r["method"], r["seed"]): r["metrics"] for r in
                         (json.loads(p.read_text()) for p in (out / "runs").rglob("*.json"))}
        cached = list((tmp_path / "cache").glob("*.npy"))
        assert bool(cached) == (read == "cache")  # reading the files keeps nothing
    assert metrics["files"] == metrics["cache"] and len(metrics["files"]) == 4
    from scenarios.suite import load_suite

    built = load_suite(str(tmp_path / "files.toml")).scenarios[0].build(0)
    placed = Placement(torch.device("cpu"))(built.source)
    assert isinstance(placed.x, Pixels) and placed.x.streamed  # never read whole


def test_read_files_needs_a_size(tmp_path):
    from scenarios.datasets import load_dataset
    from scenarios.errors import InputError
    from scenarios.formats import check_spec

    write_tree(tmp_path / "tree")
    with pytest.raises(InputError, match="read: is 'files' without size"):
        check_spec({"folder": "tree", "read": "files"}, "folder")
    d = load_dataset({"folder": str(tmp_path / "tree"), "domain": "a", "size": 8,
                      "read": "files"})
    assert d.x.streamed and d.x[0].shape == (3, 8, 8)
