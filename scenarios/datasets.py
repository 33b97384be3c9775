"""Built-in datasets: each loader returns a :class:`Domain`. The digits are here; the field's
benchmarks by name (Office-31, DomainNet, CIFAR-10-C, ...) are in :mod:`scenarios.benchmarks`.

Data roots (:mod:`scenarios.roots`) are searched in order; nothing is downloaded at run
time: missing files give an error naming the files and every folder searched.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from scenarios import formats
from scenarios.benchmarks import BENCHMARKS
from scenarios.domain import Domain, load_npz, to_domain
from scenarios.errors import InputError, reject_unknown
from scenarios.roots import data_roots

DIGIT_CLASSES = tuple(str(i) for i in range(10))
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def mnist_root(data_root: str | Path | None = None) -> Path | None:
    """The first data root holding MNIST's four files under ``MNIST/raw``."""
    return next((r for r in data_roots(data_root)
                 if all((r / "MNIST" / "raw" / f).is_file() for f in MNIST_FILES)), None)


def mnist_files(data_root: str | Path | None = None, **_) -> list[Path]:
    """MNIST's four files in the first data root that holds them (none: no root does)."""
    root = mnist_root(data_root)
    return [root / "MNIST" / "raw" / f for f in MNIST_FILES] if root else []


def dataset_files(spec: dict, data_root: str | Path | None = None) -> list[Path]:
    """The files a ``{dataset = NAME, ...}`` table reads, as its loader declares them (its
    ``files(data_root, **options)``: MNIST's files for ``mnist`` and the datasets made from
    it, a user dataset's ``files=``): their contents are part of a run's identity."""
    loader = DATASETS.get(spec.get("dataset")) if isinstance(spec.get("dataset"), str) else None
    files = getattr(loader, "files", None)
    if files is None:
        return []
    options = {k: v for k, v in spec.items() if k not in ("dataset", "shifts")}
    return [Path(p) for p in files(data_root, **options)]


def dataset_fingerprint(spec: dict, data_root: str | Path | None = None) -> dict[str, str]:
    """A benchmark copy's identity (its loader's ``fingerprint(data_root, **options)``: the
    images' paths and sizes, hashed), for a ``{dataset = NAME}`` table that names one."""
    loader = DATASETS.get(spec.get("dataset")) if isinstance(spec.get("dataset"), str) else None
    fingerprint = getattr(loader, "fingerprint", None)
    if fingerprint is None:
        return {}
    return fingerprint(data_root, **{k: v for k, v in spec.items()
                                     if k not in ("dataset", "shifts")})


IDX_MAGIC = {"images": 2051, "labels": 2049}  # big-endian ints opening an IDX file


def check_mnist_files(root: Path) -> None:
    """MNIST's four IDX files under ``root/MNIST/raw`` are whole and agree: each opens with
    its magic number and dimensions, its size is the header plus one byte per value, and
    each images file has as many images as its labels file has labels. A damaged file is an
    input error naming it (rather than a silent wrong result or an internal error)."""
    counts = {}
    for name in MNIST_FILES:
        path = root / "MNIST" / "raw" / name
        kind = "images" if "images" in name else "labels"
        dims = 3 if kind == "images" else 1
        with open(path, "rb") as fh:
            data = fh.read(4 + 4 * dims)
        magic = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
        if magic != IDX_MAGIC[kind] or len(data) < 4 + 4 * dims:
            raise InputError("MNIST", f"is not an MNIST {kind} file (magic number {magic})",
                             expected=f"the IDX {kind} file of MNIST (magic {IDX_MAGIC[kind]}, "
                             "as torchvision or yann.lecun.com distribute it, uncompressed)",
                             source=str(path))
        shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
        size = 4 + 4 * dims + int(np.prod(shape))
        if path.stat().st_size != size or (kind == "images" and shape[1:] != [28, 28]):
            raise InputError("MNIST", f"has {path.stat().st_size} bytes for {kind} of shape "
                             f"{shape}", expected=f"{size} bytes of 28 x 28 {kind} (a truncated "
                             "or damaged file: copy it again)", source=str(path))
        counts[name] = shape[0]
    for images, labels in ((MNIST_FILES[0], MNIST_FILES[1]), (MNIST_FILES[2], MNIST_FILES[3])):
        if counts[images] != counts[labels]:
            raise InputError("MNIST", f"holds {counts[labels]} labels for {counts[images]} "
                             f"images in {images}", expected="one label per image (a file of "
                             "another copy of MNIST, or a damaged one)",
                             source=str(root / "MNIST" / "raw" / labels))


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
    check_mnist_files(root)
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


ROTATED_MNIST_ANGLES = (0, 15, 30, 45, 60, 75)
COLORED_MNIST_ENVS = {"+90%": 0.1, "+80%": 0.2, "-90%": 0.9}  # environment: colour flip rate


def _mnist_environments(data_root: str | None, count: int, seed: int
                        ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """All local MNIST digits (training and test files), shuffled with ``seed`` and dealt
    into ``count`` environments of equal size (DomainBed's ``MultipleEnvironmentMNIST``);
    cached by the files found (path, size, modification time), never by the root asked for."""
    files = mnist_files(data_root)
    if not files:
        load_mnist(data_root)  # the error naming every folder searched
    return _dealt(formats.cache_key(files, None, 0), str(files[0].parents[2]), count, seed)


@lru_cache(maxsize=4)
def _dealt(key: str, root: str, count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    mnist = load_mnist(root)
    order = torch.randperm(len(mnist), generator=torch.Generator().manual_seed(seed))
    return [(mnist.x[order[i::count]], mnist.y[order[i::count]]) for i in range(count)]


def _environments(name: str, parts: list[tuple[torch.Tensor, torch.Tensor]],
                  envs: list[str], classes: tuple[str, ...], domain) -> Domain:
    """The environments as one domain (``env`` per sample), or the one ``domain`` names."""
    pooled = Domain(name=name, x=torch.cat([x for x, _ in parts]),
                    y=torch.cat([y for _, y in parts]), classes=classes,
                    env=torch.cat([torch.full((len(y),), i) for i, (_, y) in enumerate(parts)]),
                    envs=tuple(envs))
    if domain is None:
        return pooled
    if str(domain) not in envs:
        raise InputError("domain", f"is {domain!r}", expected=f"one of {', '.join(envs)}")
    index = envs.index(str(domain))
    one = pooled.subset(torch.nonzero(pooled.env == index).flatten(), f"{name}/{domain}")
    return one.with_(env=None, envs=())


def load_rotated_mnist(data_root: str | Path | None = None,
                       angles: tuple[float, ...] | list[float] = ROTATED_MNIST_ANGLES,
                       domain: str | None = None, seed: int = 0) -> Domain:
    """Rotated MNIST (Ghifary et al. 2015, DomainBed's RotatedMNIST) from the local MNIST: all
    digits shuffled (``seed``) and dealt into one environment per angle (default 0, 15, ...,
    75 degrees), each rotated by its angle (bilinear; DomainBed rotates with bicubic). Domains
    are named by their angle; ``domain`` picks one."""
    from scenarios.shifts import rotate

    parts = []
    for (x, y), angle in zip(_mnist_environments(str(data_root) if data_root else None,
                                                  len(angles), seed), angles, strict=True):
        turned = rotate(Domain(name="", x=x, y=y, classes=DIGIT_CLASSES), None, angle)
        parts.append((turned.x, y))
    names = [f"{a:g}" for a in angles]
    return _environments("rotated-mnist", parts, names, DIGIT_CLASSES, domain)


def load_colored_mnist(data_root: str | Path | None = None, domain: str | None = None,
                       seed: int = 0) -> Domain:
    """Colored MNIST (Arjovsky et al. 2019, DomainBed's construction) from the local MNIST:
    the label is whether the digit is 5 or more, flipped for 25% of the samples; the colour
    (red or green: the other of 2 channels is zero) follows the label except for a share of
    each environment: 10% in ``+90%``, 20% in ``+80%``, 90% in ``-90%``, so colour predicts
    the label far better than the digit in the first two and the opposite way in the third.
    2 x 28 x 28 inputs, 2 classes; ``domain`` picks one environment; ``seed`` fixes the
    shuffle and the draws."""
    g = torch.Generator().manual_seed(seed + 1)
    parts = []
    for (x, digit), flip in zip(_mnist_environments(str(data_root) if data_root else None,
                                                     len(COLORED_MNIST_ENVS), seed),
                                COLORED_MNIST_ENVS.values(), strict=True):
        y = (digit >= 5).long() ^ (torch.rand(len(digit), generator=g) < 0.25).long()
        colour = y ^ (torch.rand(len(digit), generator=g) < flip).long()
        two = x.repeat(1, 2, 1, 1)
        two[torch.arange(len(x)), 1 - colour] = 0.0
        parts.append((two, y))
    return _environments("colored-mnist", parts, list(COLORED_MNIST_ENVS), ("0-4", "5-9"),
                         domain)


def uci_digits_files(data_root: str | Path | None = None, **_) -> list[Path]:
    """The file scikit-learn reads the UCI digits from (``sklearn/datasets/data``)."""
    import sklearn.datasets

    return [Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"]


load_mnist.files = load_rotated_mnist.files = load_colored_mnist.files = mnist_files
load_uci_digits.files = uci_digits_files
load_rotated_mnist.domain_names = lambda angles=ROTATED_MNIST_ANGLES, **_: [
    f"{a:g}" for a in angles]
load_colored_mnist.domain_names = lambda **_: list(COLORED_MNIST_ENVS)

DATASETS: dict[str, Callable[..., Domain]] = {
    "uci-digits": load_uci_digits,
    "mnist": load_mnist,
    "rotated-mnist": load_rotated_mnist,
    "colored-mnist": load_colored_mnist,
    **BENCHMARKS,
}


def _generated() -> None:
    """The generated sequence datasets (:mod:`scenarios.synthetic`, which reads this
    module's helpers)."""
    from scenarios.synthetic import load_synthetic_signals, load_synthetic_text

    DATASETS.update({"synthetic-signals": load_synthetic_signals,
                     "synthetic-text": load_synthetic_text})


_generated()


class UserDataset:
    """A registered ``loader(root, **options)`` as a dataset loader: the root is the first of
    :func:`data_roots` that exists (else the first), the result becomes a domain
    (:func:`~scenarios.domain.to_domain`)."""

    def __init__(self, name: str, loader: Callable, files: Callable | None = None) -> None:
        self.name, self.loader = name, loader
        if files is not None:
            self.files = lambda data_root, **options: files(self.root(data_root), **options)
        params = list(inspect.signature(loader).parameters.values())[1:]
        self.__signature__ = inspect.Signature(
            [inspect.Parameter("data_root", inspect.Parameter.KEYWORD_ONLY, default=None)]
            + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params
               if p.kind is not p.VAR_POSITIONAL])
        self.__doc__ = loader.__doc__ or f"user dataset {name!r}"

    @staticmethod
    def root(data_root: str | Path | None) -> Path:
        roots = data_roots(data_root)
        return next((r for r in roots if r.is_dir()), roots[0])

    def __call__(self, data_root: str | Path | None = None, **options) -> Domain:
        return to_domain(self.loader(self.root(data_root), **options), self.name)


def user_dataset(name: str, loader: Callable, files: Callable | None = None) -> None:
    """Add a user's ``loader(root, **options)`` under ``name``, with ``files(root, **options)``
    naming the files it reads (see ``dalib.register_dataset``)."""
    DATASETS[name] = UserDataset(name, loader, files)


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


def check_data(data_root: str | Path | None = None, names: list[str] | None = None
               ) -> dict[str, str]:
    """For each dataset named (default: every registered one), 'ok (N samples)' or
    'missing: ' and the error that loading it gives; unasked, a benchmark with no copy under
    any root is 'not here: ' (a copy found but incomplete is 'missing: ')."""
    from scenarios.benchmarks.copies import NoCopy

    status = {}
    for name in names or list(DATASETS):
        if name not in DATASETS:
            raise InputError("DATASET", f"is {name!r}",
                             expected=f"one of {', '.join(sorted(DATASETS))}")
        try:
            verify = getattr(DATASETS[name], "verify", None)
            if verify is not None:  # a benchmark: its copy checked, nothing decoded
                counts = verify(data_root=data_root)
                status[name] = (f"ok ({sum(counts.values())} images: "
                                f"{', '.join(f'{d} {n}' for d, n in counts.items())})")
            else:
                status[name] = f"ok ({len(DATASETS[name](data_root=data_root))} samples)"
        except NoCopy as exc:
            status[name] = f"{'missing' if names else 'not here'}: {exc}"
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
