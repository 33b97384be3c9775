"""CIFAR-10 and CIFAR-100 (Krizhevsky 2009) in torchvision's layout, and their corrupted test
sets CIFAR-10-C and CIFAR-100-C (Hendrycks & Dietterich, ICLR 2019) in the layout of their
release, as RobustBench reads them (``robustbench/loaders.py``: the corruptions' order of
Tent, EATA, SAR and CoTTA, severity ``s`` = rows ``(s - 1) * 10000`` to ``s * 10000``).

Split CIFAR-100 (mammoth's ``seq-cifar100``, Avalanche's ``SplitCIFAR100``) is a ``split``
stream of ``cifar100`` with ``tasks = 10``: label order by default, as mammoth; other class
orders through the stream's ``classes`` key.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from scenarios import checks
from scenarios.benchmarks.copies import find, pooled
from scenarios.domain import Domain, from_arrays
from scenarios.errors import InputError

CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
               "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
               "elastic_transform", "pixelate", "jpeg_compression")
EXTRA_CORRUPTIONS = ("gaussian_blur", "saturate", "spatter", "speckle_noise")  # held out
PER_SEVERITY = 10_000
CLASSES = {  # the label names of the releases' meta files
    10: ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck"),
    100: (
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
        "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
        "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
        "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
        "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard",
        "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
        "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
        "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray",
        "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
        "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
        "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
        "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
    ),
}


class Cifar:
    """CIFAR-10 or CIFAR-100 from ``ROOT/cifar-10-batches-py`` (``cifar-100-python``);
    ``split``: ``train``, ``test`` or ``all`` (both, the test part marked as the official
    test set); ``check = "counts"`` asks for the release's 50,000 + 10,000 images."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.folder = "cifar-10-batches-py" if classes == 10 else "cifar-100-python"
        self.name = f"cifar{classes}"
        self.title = (f"CIFAR-{classes}: 60,000 32 x 32 colour images, {classes} classes "
                      "(torchvision's python layout)")
        self.__doc__ = self.title

    def root(self, data_root) -> Path:
        return find(self.name, self.folder, data_root, self._where()).parent

    def files(self, data_root=None, **_) -> list[Path]:
        try:
            folder = self.root(data_root) / self.folder
        except InputError:
            return []
        return sorted(p for p in folder.iterdir() if p.is_file())

    def domain_names(self, **_) -> list[str]:
        return []

    def _batches(self, split: str) -> list[str]:
        if self.classes == 100:
            return [split]
        return [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]

    def _read(self, folder: Path, split: str, check: str) -> tuple[np.ndarray, np.ndarray]:
        """One split's images (N x 32 x 32 x 3) and labels from the release's pickled
        batches (read as torchvision reads them), their number checked."""
        xs, ys = [], []
        for name in self._batches(split):
            path = folder / name
            if not path.is_file():
                raise InputError("dataset", f"{self.name}: {str(path)!r} is missing",
                                 expected=self._where())
            try:
                with open(path, "rb") as fh:
                    batch = pickle.load(fh, encoding="latin1")
                x = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(batch["labels" if self.classes == 10 else "fine_labels"])
            except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError,
                    ValueError) as exc:
                raise InputError("dataset", f"{self.name}: {str(path)!r} cannot be read "
                                 f"({type(exc).__name__}: a truncated or damaged copy)",
                                 expected=self._where()) from None
            xs.append(x.transpose(0, 2, 3, 1))
            ys.append(y)
        x, y = np.concatenate(xs), np.concatenate(ys)
        expected = 50_000 if split == "train" else 10_000
        if check == "counts" and len(x) != expected:
            raise InputError("dataset", f"{self.name}: the {split} split has {len(x)} images in "
                             f"{str(folder)!r}, the release {expected}", expected="a complete "
                             "copy (check = 'layout' reads a deliberate subset)")
        return x, y

    def _where(self) -> str:
        return (f"{self.folder}/ (the python version from cs.toronto.edu/~kriz/cifar.html, "
                f"unpacked as torchvision's CIFAR{self.classes}(download=True) leaves it) in "
                "one of the data roots (--data-root, $DALIB_DATA, ./data or ~/.cache/dalib; "
                "nothing is downloaded)")

    def verify(self, data_root: str | Path | None = None, split: str = "all",
               check: str = "counts") -> dict[str, int]:
        """Images per split of a complete copy (read, not kept)."""
        folder = self.root(data_root) / self.folder
        return {part: len(self._read(folder, part, check)[1]) for part in ("train", "test")
                if split in (part, "all")}

    def __call__(self, data_root: str | Path | None = None, split: str = "all",
                 check: str = "counts") -> Domain:
        checks.string(split, "split", ("train", "test", "all"))
        checks.string(check, "check", ("counts", "layout"))
        folder = self.root(data_root) / self.folder
        parts = [self._read(folder, part, check) for part in ("train", "test")
                 if split in (part, "all")]
        domain = from_arrays(np.concatenate([x for x, _ in parts]),
                             np.concatenate([y for _, y in parts]), name=self.name,
                             classes=CLASSES[self.classes], source=str(folder), layout="NHWC",
                             lazy=True)
        if split != "all":
            return domain
        return domain.with_(test_mask=torch.cat([torch.zeros(len(parts[0][1]), dtype=bool),
                                                 torch.ones(len(parts[1][1]), dtype=bool)]))


class CifarC:
    """CIFAR-10-C or CIFAR-100-C from ``ROOT/CIFAR-10-C`` (``CIFAR-100-C``): one
    ``CORRUPTION.npy`` of 50,000 32 x 32 x 3 images (5 severities x the 10,000 test
    images) per corruption and ``labels.npy``. ``domain`` picks a corruption (default: the
    15 of the benchmark pooled, one domain each), ``severity`` 1-5 (default 5)."""

    def __init__(self, classes: int) -> None:
        self.classes = classes
        self.folder = f"CIFAR-{classes}-C"
        self.name = f"cifar{classes}-c"
        self.title = (f"CIFAR-{classes}-C: 15 corruptions x 5 severities of the CIFAR-"
                      f"{classes} test set (plus 4 held-out corruptions)")
        self.__doc__ = self.title

    def root(self, data_root) -> Path:
        return find(self.name, self.folder, data_root, self._where())

    def _where(self) -> str:
        return (f"{self.folder}/{{{CORRUPTIONS[0]},...}}.npy and {self.folder}/labels.npy "
                "(zenodo.org/record/2535967 for CIFAR-10-C, 3555552 for CIFAR-100-C; "
                "RobustBench's layout) in one of the data roots (--data-root, $DALIB_DATA, "
                "./data or ~/.cache/dalib; nothing is downloaded)")

    def domain_names(self, **_) -> list[str]:
        return list(CORRUPTIONS)

    def files(self, data_root=None, domain: str | None = None, **_) -> list[Path]:
        try:
            folder = self.root(data_root)
        except InputError:
            return []
        names = [domain] if domain else list(CORRUPTIONS)
        return [folder / f"{n}.npy" for n in names] + [folder / "labels.npy"]

    def _array(self, path: Path, item_shape: tuple[int, ...], rows: int | None
               ) -> np.ndarray:
        """The memory-mapped array of one file, after checking it is whole: its header's
        shape and type, and its size. ``rows``: the rows it must have (None: any multiple
        of the 5 severities)."""
        if not path.is_file():
            raise InputError("dataset", f"{self.name}: {str(path)!r} is missing",
                             expected=self._where())
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise InputError("dataset", f"{self.name}: {str(path)!r} cannot be read ({exc}: a "
                             "truncated or damaged copy)", expected=self._where()) from None
        n = len(arr) if arr.ndim else 0
        if arr.shape[1:] != item_shape or n == 0 or n % 5 or (rows is not None and n != rows) \
                or (item_shape and arr.dtype != np.uint8):
            want = f"{rows:,}" if rows is not None else "5 x n"
            raise InputError("dataset", f"{self.name}: {str(path)!r} holds an array of shape "
                             f"{arr.shape} ({arr.dtype})", expected=f"{want} rows of shape "
                             f"{item_shape}" + (" uint8" if item_shape else "") + " as the "
                             "release has them (check = 'layout' reads a deliberate subset)")
        return arr

    def verify(self, data_root: str | Path | None = None, domain: str | None = None,
               check: str = "counts", **_) -> dict[str, int]:
        """Images per corruption (all severities) of a complete copy (headers read)."""
        folder = self.root(data_root)
        rows = len(self._array(folder / "labels.npy", (), 5 * PER_SEVERITY
                               if check == "counts" else None))
        return {n: len(self._array(folder / f"{n}.npy", (32, 32, 3), rows))
                for n in ([domain] if domain else CORRUPTIONS)}

    def __call__(self, data_root: str | Path | None = None, domain: str | None = None,
                 severity: int = 5, check: str = "counts") -> Domain:
        severity = checks.integer(severity, "severity", 1, 5, "an integer in 1..5")
        checks.string(check, "check", ("counts", "layout"))
        if domain is not None:
            checks.string(domain, "domain", CORRUPTIONS + EXTRA_CORRUPTIONS)
        folder = self.root(data_root)
        want = 5 * PER_SEVERITY if check == "counts" else None
        labels = self._array(folder / "labels.npy", (), want)
        n = len(labels) // 5
        rows = slice((severity - 1) * n, severity * n)
        names = [domain] if domain is not None else list(CORRUPTIONS)
        parts = []
        for name in names:
            x = self._array(folder / f"{name}.npy", (32, 32, 3), len(labels))
            parts.append(from_arrays(np.asarray(x[rows]), np.asarray(labels[rows]).astype(
                np.int64), name=f"{self.name}/{name}-{severity}", source=str(folder),
                classes=CLASSES[self.classes], layout="NHWC", lazy=True))
        return parts[0] if domain is not None else pooled(f"{self.name}-{severity}", parts,
                                                          names)
