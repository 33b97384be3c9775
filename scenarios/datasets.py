"""Built-in datasets and the data root: each loader returns a :class:`Domain`.

Data roots, searched in order: the ``data_root`` argument (``--data-root``), the
``DALIB_DATA`` environment variable, ``./data`` (where torchvision's ``download=True`` puts
files by default) and the user cache directory ``~/.cache/dalib``. Nothing is downloaded at
run time: missing files give an error naming the files and every folder searched.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from scenarios import formats
from scenarios.domain import Domain, load_npz, to_domain
from scenarios.errors import InputError, reject_unknown

DIGIT_CLASSES = tuple(str(i) for i in range(10))
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def data_roots(data_root: str | Path | None = None) -> list[Path]:
    """The directories searched for dataset files, in order."""
    roots = []
    if data_root:
        roots.append(Path(data_root))
    if os.environ.get("DALIB_DATA"):
        roots.append(Path(os.environ["DALIB_DATA"]))
    roots.append(Path("data").absolute())
    roots.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dalib")
    return roots


def mnist_root(data_root: str | Path | None = None) -> Path | None:
    """The first data root holding MNIST's four files under ``MNIST/raw``."""
    return next((r for r in data_roots(data_root)
                 if all((r / "MNIST" / "raw" / f).is_file() for f in MNIST_FILES)), None)


def dataset_files(spec: dict, data_root: str | Path | None = None) -> list[Path]:
    """The files a built-in dataset reads (their contents are part of a run's identity)."""
    if spec.get("dataset") == "mnist":
        root = mnist_root(data_root)
        return [root / "MNIST" / "raw" / f for f in MNIST_FILES] if root else []
    return []


def load_uci_digits(data_root: str | Path | None = None) -> Domain:
    """UCI optical digits (1,797 samples, 8 x 8, values 0..16 scaled to [0, 1]).

    Embedded in scikit-learn, so always available offline.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    return Domain(name="uci-digits", x=x, y=torch.as_tensor(d.target, dtype=torch.long),
                  classes=DIGIT_CLASSES)


def load_mnist(data_root: str | Path | None = None, split: str = "all") -> Domain:
    """MNIST read by torchvision's own loader from ``ROOT/MNIST/raw`` (``download=False``).

    ``split``: ``train``, ``test`` or ``all`` (both, with the ``t10k`` part marked as the
    dataset's test split so scenarios keep it as their test set).
    """
    if split not in ("train", "test", "all"):
        raise InputError("split", f"is {split!r}", expected="'train', 'test' or 'all'")
    from torchvision.datasets import MNIST

    root = mnist_root(data_root)
    if root is None:
        searched = ", ".join(str(r / "MNIST" / "raw") for r in data_roots(data_root))
        raise InputError("dataset", f"mnist files not found; searched {searched}",
                         expected=f"{', '.join(MNIST_FILES)} in DIR/MNIST/raw, with DIR one of "
                                  "those (--data-root, $DALIB_DATA, ./data or ~/.cache/dalib; "
                                  "nothing is downloaded: `dalib data` shows what is found)")
    parts = []
    for train in (True, False):
        if split == ("test" if train else "train"):
            continue
        ds = MNIST(str(root), train=train, download=False)
        parts.append((ds.data, ds.targets, torch.full((len(ds.targets),), not train)))
    x = torch.cat([p[0] for p in parts]).float()[:, None] / 255.0
    return Domain(name="mnist", x=x, y=torch.cat([p[1] for p in parts]).long(),
                  classes=DIGIT_CLASSES,
                  test_mask=torch.cat([p[2] for p in parts]) if split == "all" else None)


DATASETS: dict[str, Callable[..., Domain]] = {
    "uci-digits": load_uci_digits,
    "mnist": load_mnist,
}


class UserDataset:
    """A registered ``loader(root, **options)`` as a dataset loader: the root is the first of
    :func:`data_roots` that exists (else the first), the result becomes a domain
    (:func:`~scenarios.domain.to_domain`)."""

    def __init__(self, name: str, loader: Callable) -> None:
        self.name, self.loader = name, loader
        params = list(inspect.signature(loader).parameters.values())[1:]
        self.__signature__ = inspect.Signature(
            [inspect.Parameter("data_root", inspect.Parameter.KEYWORD_ONLY, default=None)]
            + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params
               if p.kind is not p.VAR_POSITIONAL])
        self.__doc__ = loader.__doc__ or f"user dataset {name!r}"

    def __call__(self, data_root: str | Path | None = None, **options) -> Domain:
        roots = data_roots(data_root)
        root = next((r for r in roots if r.is_dir()), roots[0])
        return to_domain(self.loader(root, **options), self.name)


def user_dataset(name: str, loader: Callable) -> None:
    """Add a user's ``loader(root, **options)`` under ``name`` (see ``dalib.register_dataset``)."""
    DATASETS[name] = UserDataset(name, loader)


def load_dataset(spec: dict, *, data_root: str | Path | None = None,
                 base_dir: Path | None = None) -> Domain:
    """A domain from a data spec: ``{dataset = NAME, ...options}``, ``{npz = PATH}`` or a
    format of :mod:`scenarios.formats` (``folder``, ``list``, ``table``).

    Paths are relative to ``base_dir`` (the suite file's folder).
    """
    spec = dict(spec)
    kind = formats.format_of(spec)
    if kind is not None:
        return formats.LOADERS[kind](spec, base_dir)
    if "npz" in spec:
        path = Path(spec.pop("npz"))
        reject_unknown(spec, ("layout", "domain"), what="key beside npz")
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        return load_npz(path, layout=spec.get("layout"), domain=spec.get("domain"))
    loader, options = dataset_loader(spec)
    return loader(data_root=data_root, **options)


def dataset_loader(spec: dict) -> tuple[Callable[..., Domain], dict]:
    """The loader a ``{dataset = NAME, ...}`` spec names and its options, checked
    (``shifts`` is left to the caller)."""
    if "dataset" not in spec:
        raise InputError("dataset", "missing", expected="dataset = NAME or npz = PATH")
    name = spec["dataset"]
    if not isinstance(name, str) or name not in DATASETS:
        raise InputError("dataset", f"unknown dataset {name!r}",
                         expected=f"one of {', '.join(sorted(DATASETS))}")
    loader = DATASETS[name]
    options = {k: v for k, v in spec.items() if k not in ("dataset", "shifts")}
    params = inspect.signature(loader).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        reject_unknown(options, set(params) - {"data_root"}, what=f"option of dataset {name!r}")
    return loader, options


def check_data(data_root: str | Path | None = None) -> dict[str, str]:
    """For each built-in dataset, 'ok (N samples)' or the error that loading it gives."""
    status = {}
    for name, loader in DATASETS.items():
        try:
            status[name] = f"ok ({len(loader(data_root=data_root))} samples)"
        except InputError as exc:
            status[name] = f"missing: {exc}"
    return status


def stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, part) with ``fraction`` of every class in ``part`` (at least one each)."""
    part = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = max(1, int(round(fraction * len(idx)))) if len(idx) > 1 else 0
        part.append(idx[:n])
    part = np.sort(np.concatenate(part)) if part else np.array([], dtype=np.int64)
    rest = np.setdiff1d(np.arange(len(y)), part)
    return rest, part
