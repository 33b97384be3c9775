"""The named benchmarks on generated copies in each layout (names, lists and labels as the
reference libraries have them, counts scaled down): complete copies read with the reference
class order, incomplete and renamed ones refused before anything runs, naming what is
missing."""

import json
import pickle
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dalib.cli import main
from dalib.plugins import register_benchmark
from scenarios.benchmarks import BENCHMARKS, ImageBenchmark
from scenarios.benchmarks.cifar import CORRUPTIONS
from scenarios.datasets import DATASETS, check_data, load_dataset
from scenarios.errors import InputError
from scenarios.multidomain import domain_names

TREES = [b for b in BENCHMARKS.values() if isinstance(b, ImageBenchmark)]
CASES = [(b, lay) for b in TREES for lay in b.layouts]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Images cached under the test's folder; no data root but the test's; registrations
    undone."""
    monkeypatch.setenv("DALIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DALIB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    saved = dict(DATASETS)
    yield
    DATASETS.clear()
    DATASETS.update(saved)


def colour(label: int) -> tuple[int, int, int]:
    """A flat colour that encodes a class (decoded back by :func:`decoded_labels`)."""
    return label % 256, 50 * (label // 256), 128


def decoded_labels(x) -> np.ndarray:
    pixels = (x[:, :, 0, 0].numpy() * 255).round().astype(int)
    return pixels[:, 0] + 256 * (pixels[:, 1] // 50)


def write_copy(root: Path, bench: ImageBenchmark, layout_name: str,
               per_class: int | None = None) -> ImageBenchmark:
    """A copy of ``bench`` in one of its layouts under ``root``, ``per_class`` images per
    class and domain (default one; two, one per split, where the benchmark has splits), and the
    benchmark with the copy's counts as its manifest (registered under its own name)."""
    layout = next(lay for lay in bench.layouts if lay.name == layout_name)
    per_class = per_class or (2 if bench.splits else 1)
    base = root / layout.folders[0]
    counts, splits = {}, {s: {} for s in bench.splits}
    for domain in bench.domains:
        lines = {s: [] for s in (bench.splits or [""])}
        for label, name in enumerate(bench.classes):
            folder = base / layout.domain_dirs[domain] / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                path = folder / f"{k:04d}.png"
                Image.new("RGB", (6 + k, 5), colour(label)).save(path)
                part = list(lines)[k % len(lines)]
                lines[part].append(f"{path.relative_to(base)} {label + layout.label_base}")
        counts[domain] = per_class * len(bench.classes)
        for part, rows in lines.items():
            if part:
                splits[part][domain] = len(rows)
            if layout.lists:
                path = base / layout.lists[domain].format(split=part)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("\n".join(rows) + "\n")
    return replace(bench, counts=counts, splits=splits)


@pytest.mark.parametrize("bench,layout", CASES, ids=[f"{b.name}-{lay.name}" for b, lay in CASES])
def test_a_complete_copy_reads_with_the_reference_class_order(tmp_path, bench, layout):
    scaled = write_copy(tmp_path / "data", bench, layout.name)
    DATASETS[bench.name] = scaled
    assert scaled.verify(tmp_path / "data") == scaled.counts
    domain = bench.domains[-1]
    d = load_dataset({"dataset": bench.name, "domain": domain, "size": 4},
                     data_root=tmp_path / "data")
    assert len(d) == scaled.counts[domain] and d.classes == bench.classes
    assert d.input_shape == (3, 4, 4)
    assert (decoded_labels(d.x) == d.y.numpy()).all()  # each image has its own class's label
    if bench.splits and layout.lists:  # the official test split is kept as the test set
        assert int(d.test_mask.sum()) == scaled.splits["test"][domain]
        train = load_dataset({"dataset": bench.name, "domain": domain, "split": "train",
                              "size": 4}, data_root=tmp_path / "data")
        assert len(train) == scaled.splits["train"][domain]


def test_the_published_manifest_checks_a_full_size_copy(tmp_path, capsys):
    """Office-31 at its published counts (4,110 images): complete is read (`dalib data`
    exit 0), one image short is refused with the domain and both counts (exit 1)."""
    bench = BENCHMARKS["office31"]
    layout = bench.layouts[0]
    base = tmp_path / "data" / layout.folders[0]
    for domain, count in bench.counts.items():
        rows = []
        for i in range(count):
            label = i % len(bench.classes)
            folder = base / layout.domain_dirs[domain] / bench.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"frame_{i:04d}.jpg").write_bytes(b"")  # verify decodes nothing
            rows.append(f"{domain}/images/{bench.classes[label]}/frame_{i:04d}.jpg {label}")
        (base / "image_list").mkdir(exist_ok=True)
        (base / "image_list" / f"{domain}.txt").write_text("\n".join(rows))
    assert bench.verify(tmp_path / "data") == bench.counts
    assert main(["data", "office31", "--data-root", str(tmp_path / "data")]) == 0
    assert "office31: ok (4110 images: amazon 2817, dslr 498, webcam 795)" in \
        capsys.readouterr().out
    lines = (base / "image_list" / "dslr.txt").read_text().splitlines()
    (base / "image_list" / "dslr.txt").write_text("\n".join(lines[:-1]))
    with pytest.raises(InputError, match="domain 'dslr' has 497 images .* published copy 498"):
        bench.verify(tmp_path / "data")
    assert bench.verify(tmp_path / "data", check="layout")["dslr"] == 497
    assert main(["data", "office31", "--data-root", str(tmp_path / "data")]) == 1
    assert "domain 'dslr' has 497 images" in capsys.readouterr().out


def suite(tmp_path: Path, data: str, method: str = "source-only") -> Path:
    path = tmp_path / "s.toml"
    path.write_text(f'name = "bench"\nseeds = 1\n[budget]\nsteps = 4\nbatch_size = 8\n'
                    f'[model]\narch = "mlp"\nhidden = [16]\n[[scenario]]\nname = "a-w"\n'
                    f'kind = "transfer"\n{data}\nmethods = ["{method}"]\n')
    return path


def test_a_run_on_a_benchmark_records_the_copy_and_reruns_when_it_changes(tmp_path):
    """A new user's suite on a subset they made on purpose (check = 'layout'): it runs, the
    record names the copy's identity, and a changed image re-runs it."""
    write_copy(tmp_path / "data", BENCHMARKS["office31"], "tllib", per_class=4)
    data = ('source = { dataset = "office31", domain = "amazon", size = 8, check = "layout" }\n'
            'target = { dataset = "office31", domain = "webcam", size = 8, check = "layout" }')
    path, out = suite(tmp_path, data), tmp_path / "out"
    args = ["run", str(path), "--out", str(out), "--no-report", "--data-root",
            str(tmp_path / "data")]
    assert main(args) == 0
    first = next((out / "runs").rglob("*.json"))
    copy = json.loads(first.read_text())["config"]["files"]["office31#copy"]
    stamp = first.stat().st_mtime_ns
    assert main(args) == 0  # the same copy: the run is kept
    assert list((out / "runs").rglob("*.json")) == [first] and first.stat().st_mtime_ns == stamp
    image = next((tmp_path / "data" / "office31" / "webcam").rglob("*.png"))
    Image.new("RGB", (9, 9), (1, 2, 3)).save(image)  # another image: another copy, a new run
    assert main(args) == 0
    record = json.loads(next((out / "runs").rglob("*.json")).read_text())
    assert record["config"]["files"]["office31#copy"] != copy


@pytest.mark.parametrize("damage,message", [
    ("image", r"domain 'webcam' has 30 images .* published copy 31"),
    ("class", r"1 class folder\(s\) missing .*'trash_can'"),
    ("domain", r"domain 'dslr': folder .*dslr/images' is missing"),
    ("renamed", r"folder .*dslr/images' is missing \(found 'DSLR' in .*: renamed\?\)"),
    ("listed", r"domain 'webcam': 1 of the 31 images its lists name are missing"),
    ("none", r"office31-mine: no copy found; searched .* TLlib's download list"),
])
def test_an_incomplete_or_renamed_copy_is_exit_2_naming_what_is_missing(tmp_path, capsys,
                                                                        damage, message):
    bench = BENCHMARKS["office31"]
    layout = "folders" if damage in ("image", "class") else "tllib"
    scaled = write_copy(tmp_path / "data", bench, layout)
    register_benchmark(replace(scaled, name="office31-mine"))
    base = tmp_path / "data" / "office31"
    if damage in ("image", "listed"):
        next((base / "webcam" / "images" / "mug").iterdir()).unlink()
    elif damage == "class":
        for p in (base / "webcam" / "images" / "trash_can").iterdir():
            p.unlink()
        (base / "webcam" / "images" / "trash_can").rmdir()
    elif damage in ("domain", "renamed"):
        (base / "dslr").rename(base / ("DSLR" if damage == "renamed" else "other"))
    elif damage == "none":
        (base).rename(tmp_path / "data" / "elsewhere")
    domain = "dslr" if damage in ("domain", "renamed") else "webcam"
    data = ('source = { dataset = "office31-mine", domain = "amazon", size = 8 }\n'
            f'target = {{ dataset = "office31-mine", domain = "{domain}", size = 8 }}')
    out = tmp_path / "out"
    assert main(["run", str(suite(tmp_path, data)), "--out", str(out), "--data-root",
                 str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    assert re.search(message, err), err


def test_the_domainbed_layout_of_office_home_has_its_space(tmp_path):
    """DomainBed's Office-Home keeps the archive's 'Real World'; TLlib's is 'Real_World':
    both read as the domain Real_World."""
    bench = BENCHMARKS["office-home"]
    scaled = write_copy(tmp_path / "data", bench, "domainbed")
    assert (tmp_path / "data" / "office_home" / "Real World").is_dir()
    DATASETS["office-home"] = scaled
    d = load_dataset({"dataset": "office-home", "domain": "Real_World", "size": 4},
                     data_root=tmp_path / "data")
    assert len(d) == 65


def test_a_benchmark_expands_into_its_domains_and_pools_them(tmp_path):
    scaled = write_copy(tmp_path / "data", BENCHMARKS["pacs"], "domainbed")
    DATASETS["pacs"] = scaled
    spec = {"dataset": "pacs", "size": 4}
    assert domain_names(spec, None) == ["art_painting", "cartoon", "photo", "sketch"]
    pooled = load_dataset(spec, data_root=tmp_path / "data")
    assert pooled.envs == scaled.domains and len(pooled) == 28
    assert np.bincount(pooled.env.numpy()).tolist() == [7, 7, 7, 7]


def test_data_reports_benchmarks_found_and_not_here(tmp_path):
    write_copy(tmp_path / "data", BENCHMARKS["vlcs"], "domainbed")
    register_benchmark(replace(BENCHMARKS["vlcs"], name="vlcs-mine",
                               counts=dict.fromkeys(BENCHMARKS["vlcs"].domains, 5)))
    status = check_data(tmp_path / "data")
    assert status["vlcs-mine"].startswith("ok (20 images: Caltech101 5")
    assert status["vlcs"].startswith("missing: ") and "1415" in status["vlcs"]
    assert status["pacs"].startswith("not here: ")
    assert check_data(tmp_path / "data", ["pacs"])["pacs"].startswith("missing: ")


def write_corruptions(folder: Path, n: int, names=CORRUPTIONS) -> np.ndarray:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 5 * n)
    np.save(folder / "labels.npy", labels)
    for i, name in enumerate(names):
        x = np.zeros((5 * n, 32, 32, 3), np.uint8)
        x[:, 0, 0, 0] = i  # the corruption
        x[:, 0, 0, 1] = np.repeat(np.arange(5), n)  # the severity, from 0
        np.save(folder / f"{name}.npy", x)
    return labels


def test_cifar10c_reads_a_corruption_at_a_severity_and_pools_the_fifteen(tmp_path):
    labels = write_corruptions(tmp_path / "data" / "CIFAR-10-C", 4)
    d = load_dataset({"dataset": "cifar10-c", "domain": "fog", "severity": 3,
                      "check": "layout"}, data_root=tmp_path / "data")
    assert len(d) == 4 and (d.y.numpy() == labels[8:12]).all()
    assert (d.x[:, 0, 0, 0] * 255).round().tolist() == [CORRUPTIONS.index("fog")] * 4
    assert (d.x[:, 1, 0, 0] * 255).round().tolist() == [2] * 4
    pooled = load_dataset({"dataset": "cifar10-c", "check": "layout"},
                          data_root=tmp_path / "data")
    assert pooled.envs == CORRUPTIONS and len(pooled) == 60
    assert d.classes[0] == "airplane" and len(d.classes) == 10


def test_cifar10c_refuses_a_short_damaged_or_incomplete_copy(tmp_path):
    folder = tmp_path / "data" / "CIFAR-10-C"
    write_corruptions(folder, 4)
    with pytest.raises(InputError, match="50,000 rows"):
        load_dataset({"dataset": "cifar10-c", "domain": "fog"}, data_root=tmp_path / "data")
    (folder / "snow.npy").unlink()
    with pytest.raises(InputError, match="snow.npy' is missing"):
        load_dataset({"dataset": "cifar10-c", "check": "layout"}, data_root=tmp_path / "data")
    data = (folder / "fog.npy").read_bytes()
    (folder / "fog.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="fog.npy' cannot be read"):
        load_dataset({"dataset": "cifar10-c", "domain": "fog", "check": "layout"},
                     data_root=tmp_path / "data")


def write_cifar(folder: Path, classes: int, n: int) -> None:
    folder.mkdir(parents=True)
    names = ([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if classes == 10
             else ["train", "test"])
    key = "labels" if classes == 10 else "fine_labels"
    for i, name in enumerate(names):
        data = np.full((n, 3072), i, np.uint8)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": data, key: [j % classes for j in range(n)]}, fh)


@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_reads_the_python_layout_with_its_test_split(tmp_path, classes):
    folder = "cifar-10-batches-py" if classes == 10 else "cifar-100-python"
    write_cifar(tmp_path / "data" / folder, classes, 6)
    d = load_dataset({"dataset": f"cifar{classes}", "check": "layout"},
                     data_root=tmp_path / "data")
    train = 30 if classes == 10 else 6
    assert len(d) == train + 6 and int(d.test_mask.sum()) == 6 and d.num_classes == classes
    with pytest.raises(InputError, match=f"the train split has {train} images"):
        load_dataset({"dataset": f"cifar{classes}"}, data_root=tmp_path / "data")


def test_list_shows_the_benchmarks_with_their_domains(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("office31", "office-home", "visda2017", "domainnet", "pacs", "vlcs",
                 "terra-incognita", "cifar10-c", "cifar100"):
        assert f"  {name} " in out
    assert "amazon (2,817), dslr (498), webcam (795); 31 classes" in out
    assert "splits: all, train, test" in out


def test_imagenet_c_reads_a_corruption_at_a_severity_with_the_sorted_wnids(tmp_path):
    base = tmp_path / "data" / "ImageNet-C"
    wnids = [f"n{i:08d}" for i in range(1000)]
    for severity in (2, 5):
        for i, w in enumerate(wnids[::-1]):  # written in another order than sorted
            folder = base / "fog" / str(severity) / w
            folder.mkdir(parents=True)
            Image.new("RGB", (5, 4), colour(999 - i)).save(folder / f"ILSVRC_{i}.png")
    d = load_dataset({"dataset": "imagenet-c", "domain": "fog", "severity": 2, "size": 4,
                      "check": "layout"}, data_root=tmp_path / "data")
    assert len(d) == 1000 and d.classes[:2] == ("n00000000", "n00000001")
    assert (decoded_labels(d.x) == d.y.numpy()).all()
    with pytest.raises(InputError, match="fog at severity 5 has 1000 images .* 50,000"):
        load_dataset({"dataset": "imagenet-c", "domain": "fog"}, data_root=tmp_path / "data")
    with pytest.raises(InputError, match=r"ImageNet-C/snow/5' is missing"):
        load_dataset({"dataset": "imagenet-c", "domain": "snow", "check": "layout"},
                     data_root=tmp_path / "data")
    (base / "fog" / "2" / wnids[3] / "ILSVRC_996.png").unlink()
    (base / "fog" / "2" / wnids[3]).rmdir()
    with pytest.raises(InputError, match="holds 999 class folders"):
        load_dataset({"dataset": "imagenet-c", "domain": "fog", "severity": 2,
                      "check": "layout"}, data_root=tmp_path / "data")


def test_tiny_imagenet_reads_train_and_annotated_val_as_the_test_set(tmp_path):
    base = tmp_path / "data" / "tiny-imagenet-200"
    wnids = [f"n{i:08d}" for i in range(200)]
    notes = []
    for i, w in enumerate(wnids):
        folder = base / "train" / w / "images"
        folder.mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (64, 64), colour(i)).save(folder / f"{w}_{k}.JPEG", format="PNG")
        (base / "val" / "images").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), colour(i)).save(base / "val" / "images" / f"val_{i}.JPEG",
                                                   format="PNG")
        notes.append(f"val_{i}.JPEG\t{w}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(notes))
    d = load_dataset({"dataset": "tinyimagenet", "size": 8, "check": "layout"},
                     data_root=tmp_path / "data")
    assert len(d) == 600 and int(d.test_mask.sum()) == 200 and d.num_classes == 200
    assert (decoded_labels(d.x) == d.y.numpy()).all()
    with pytest.raises(InputError, match="the train split has 400 images .* 100,000"):
        load_dataset({"dataset": "tinyimagenet"}, data_root=tmp_path / "data")
    (base / "val" / "images" / "val_7.JPEG").unlink()
    with pytest.raises(InputError, match="val_7.JPEG' is missing \\(named on line 8"):
        load_dataset({"dataset": "tinyimagenet", "check": "layout"},
                     data_root=tmp_path / "data")


def test_camelyon17_reads_hospitals_from_the_metadata(tmp_path):
    base = tmp_path / "data" / "camelyon17_v1.0"
    rows = ["patient,node,x_coord,y_coord,tumor,slide,center,split"]
    for h in range(5):
        for k in range(4):
            patient, node, x, y = 10 * h + 1, k % 2, 100 + k, 200
            folder = base / "patches" / f"patient_{patient:03d}_node_{node}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (96, 96), colour(k % 2)).save(
                folder / f"patch_patient_{patient:03d}_node_{node}_x_{x}_y_{y}.png")
            rows.append(f"{patient},{node},{x},{y},{k % 2},{h},{h},0")
    (base / "metadata.csv").write_text("\n".join(rows))
    spec = {"dataset": "camelyon17", "size": 8, "check": "layout"}
    assert domain_names(spec, None)[2] == "hospital_2"
    d = load_dataset({**spec, "domain": "hospital_2"}, data_root=tmp_path / "data")
    assert len(d) == 4 and d.classes == ("normal", "tumor")
    assert (decoded_labels(d.x) == d.y.numpy()).all()
    pooled = load_dataset(spec, data_root=tmp_path / "data")
    assert np.bincount(pooled.env.numpy()).tolist() == [4] * 5
    with pytest.raises(InputError, match="hospital_1 has 4 patches .* 34,904"):
        load_dataset({"dataset": "camelyon17", "domain": "hospital_1"},
                     data_root=tmp_path / "data")
    next((base / "patches").rglob("*.png")).unlink()
    with pytest.raises(InputError, match="1 of the 4 patches metadata.csv names are missing"):
        load_dataset({**spec, "domain": "hospital_0"}, data_root=tmp_path / "data")


def test_core50_reads_sessions_with_objects_or_categories(tmp_path):
    base = tmp_path / "data" / "core50_128x128"
    for s in range(1, 12):
        for o in range(1, 51):
            folder = base / f"s{s}" / f"o{o}"
            folder.mkdir(parents=True)
            Image.new("RGB", (128, 128), colour(o - 1)).save(folder / f"C_{s:02d}_{o:02d}_000.png")
    spec = {"dataset": "core50", "size": 4, "check": "layout"}
    assert domain_names(spec, None)[:3] == ["s1", "s2", "s3"]
    d = load_dataset({**spec, "domain": "s3"}, data_root=tmp_path / "data")
    assert len(d) == 50 and d.classes[9] == "o10"  # o10 after o9, not after o1
    assert (decoded_labels(d.x) == d.y.numpy()).all()
    cats = load_dataset({**spec, "domain": "s3", "labels": "categories"},
                        data_root=tmp_path / "data")
    assert cats.num_classes == 10 and cats.y.tolist() == [o // 5 for o in range(50)]
    with pytest.raises(InputError, match="has 550 images, the release 164,866"):
        load_dataset({"dataset": "core50", "size": 4}, data_root=tmp_path / "data")
    for p in (base / "s7" / "o12").iterdir():
        p.unlink()
    with pytest.raises(InputError, match="s7/o12' is missing or empty"):
        load_dataset({**spec, "domain": "s7"}, data_root=tmp_path / "data")
