"""A tensor-resident domain: all samples of one data distribution, ready for index gathers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from scenarios import pixels
from scenarios.errors import InputError

SIGNALS = {"NCL": 3, "NLC": 3, "NL": 2}  # 1-D signals: N x channels x length, and its ndim
LAYOUTS = ("NCHW", "NHWC", *SIGNALS)
MAX_CLASSES = 100_000  # labels beyond this are a data error, not a million-way head
NPZ_MAGIC = b"PK"  # .npz files are zip archives
TARGET = "value"  # the one output of a model of continuous targets, as its class name


@dataclass(frozen=True)
class Domain:
    """Samples ``x`` (float32 in [0, 1], shape ``(N, C, H, W)`` or ``(N, D)``) and labels ``y``.

    ``y`` is ``None`` for unlabelled data. ``task`` optionally gives each sample's task id (for
    streams read from arrays); ``test_mask`` marks the dataset's own test split where it has one
    (MNIST's ``t10k`` files), so scenarios keep official test sets as test sets. ``env`` gives
    each sample's environment (the source domain it comes from, an index into ``envs``, their
    names) in data pooled from several domains (:mod:`scenarios.multidomain`).
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor | None
    classes: tuple[str, ...]
    task: torch.Tensor | None = None
    test_mask: torch.Tensor | None = None
    meta: dict = field(default_factory=dict, compare=False)
    env: torch.Tensor | None = None
    envs: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, index: torch.Tensor | np.ndarray, name: str | None = None) -> Domain:
        """The samples at ``index`` (every per-sample field follows)."""
        index = torch.as_tensor(index, dtype=torch.long)

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index]

        return replace(self, name=name or self.name, x=pixels.take(self.x, index), y=pick(self.y),
                       task=pick(self.task), test_mask=pick(self.test_mask),
                       env=pick(self.env))

    def with_(self, **changes) -> Domain:
        """A copy with some fields replaced."""
        return replace(self, **changes)

    def unlabelled(self) -> Domain:
        return replace(self, y=None)

    def class_counts(self) -> np.ndarray:
        if self.y is None:
            raise ValueError(f"domain {self.name!r} has no labels")
        return np.bincount(self.y.numpy(), minlength=self.num_classes)

    def to(self, device: torch.device | str) -> Domain:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return replace(self, x=move(self.x), y=move(self.y), task=move(self.task),
                       env=move(self.env))


def concat(domains: list[Domain], name: str) -> Domain:
    """One domain holding the samples of several (labels required, classes must agree)."""
    first = domains[0]
    for d in domains[1:]:
        if d.input_shape != first.input_shape:
            raise InputError(name, f"domain {d.name!r} has input shape {d.input_shape}",
                             expected=f"the shape of {first.name!r}, {first.input_shape}")
    tasks = None
    if all(d.task is not None for d in domains):
        tasks = torch.cat([d.task for d in domains])
    envs = None
    if all(d.env is not None and d.envs == first.envs for d in domains):
        envs = torch.cat([d.env for d in domains])
    return Domain(name=name, x=pixels.cat([d.x for d in domains]),
                  y=torch.cat([d.y for d in domains]), classes=first.classes, task=tasks,
                  env=envs, envs=first.envs if envs is not None else (), meta=first.meta)


def channels_first(x: np.ndarray, layout: str | None, where: str) -> np.ndarray:
    """4-d images as N x C x H x W. ``layout`` (``NCHW`` or ``NHWC``) says which they are;
    without it the layout is read from the shape when only one axis can be channels (1, 3 or
    4 of them), and an error asks for it otherwise."""
    if x.ndim != 4:
        if layout is not None:
            raise InputError("layout", f"is {layout!r} but x has shape {x.shape}",
                             expected="a layout only for 4-d images", source=where)
        return x
    first, last = x.shape[1] <= 4, x.shape[3] <= 4
    if layout is not None and (first, last) == ((False, True) if layout == "NCHW" else
                                                 (True, False)):
        axis = 1 if layout == "NCHW" else 3
        raise InputError("layout", f"is {layout!r} but x has shape {x.shape}: that reads "
                         f"{x.shape[axis]} channels, while axis {4 - axis} looks like channels",
                         expected=f"layout = {'NHWC' if layout == 'NCHW' else 'NCHW'!r} for these "
                         "arrays (or transpose them)", source=where)
    if layout is None:
        if first and last:
            raise InputError("layout", f"is ambiguous for x of shape {x.shape}",
                             expected="layout = 'NCHW' or 'NHWC' in the data table",
                             source=where)
        layout = "NHWC" if last else "NCHW"
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "NHWC" else x


def from_arrays(x, y=None, *, name: str = "arrays", task=None, classes=None,
                source: str | None = None, layout: str | None = None,
                lazy: bool = False) -> Domain:
    """Validate user arrays and build a domain.

    ``x``: N x D, N x H x W, N x C x H x W or N x H x W x C (see :func:`channels_first`),
    numeric, finite; or a 1-D signal with ``layout`` ``NCL``, ``NLC`` or ``NL`` (kept as
    N x C x L). Integer images (uint8) are scaled to [0, 1] by 255; float data and signals
    are kept as given. ``y``: N integers in [0, C), C at most ``MAX_CLASSES``, or N real
    numbers, continuous targets (floats that are not all non-negative integers; for
    ``regression = true`` scenarios, :mod:`scenarios.regression`), or N x d real numbers,
    d continuous factors per sample (``classes`` names them; ``y0``.. otherwise). ``task``: N
    non-negative integers. Errors name ``source`` (a file) and the field. ``lazy``: uint8
    N x H x W x C images stay as they are (:class:`~scenarios.pixels.Pixels`: a memory-mapped
    array is read a batch at a time).
    """
    where = source or name
    x = np.asarray(x)
    if x.ndim < 2:
        raise InputError("x", f"has shape {x.shape}", expected="N x D, N x H x W or N x C x H x W",
                         source=where)
    if x.shape[0] == 0:
        raise InputError("x", "is empty", expected="at least one sample", source=where)
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or \
            np.issubdtype(x.dtype, np.complexfloating):
        raise InputError("x", f"has dtype {x.dtype}", expected="real numbers (integers, floats "
                         "or booleans)", source=where)
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).reshape(len(x), -1).any(1).sum())
        raise InputError("x", f"has NaN or inf values in {bad} samples",
                         expected="finite numbers", source=where)
    if x.dtype.kind == "f" and x.dtype.itemsize > 4:  # float32 holds every smaller type
        flat = x.reshape(len(x), -1)
        bad = np.abs(flat) > np.finfo(np.float32).max
        if bad.any():
            sample = int(np.flatnonzero(bad.any(1))[0])
            raise InputError("x", f"has {int(bad.sum())} values beyond float32's range (first "
                             f"{flat[sample][bad[sample]][0]:g} in sample {sample})",
                             expected="values within +-3.4e38 (dalib trains in float32: "
                             "rescale them)", source=where)
    if x.ndim > 4:
        raise InputError("x", f"has {x.ndim} dimensions",
                         expected="N x D, N x H x W or N x C x H x W", source=where)
    if layout in SIGNALS:  # 1-D signals: kept as N x C x L, never scaled
        if x.ndim != SIGNALS[layout]:
            raise InputError("layout", f"is {layout!r} but x has shape {x.shape}",
                             expected=f"{SIGNALS[layout]}-d arrays for {layout}, or another "
                             "layout", source=where)
        x = x[:, None] if layout == "NL" else x.transpose(0, 2, 1) if layout == "NLC" else x
        xt = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
    elif lazy and x.dtype == np.uint8 and x.ndim == 4 and layout == "NHWC":
        xt = pixels.Pixels(x)
    else:
        x = channels_first(x, layout, where)
        if x.ndim == 3:
            x = x[:, None]
        xt = torch.as_tensor(x.astype(np.float32))
        if x.dtype == np.uint8:
            xt = xt / 255.0
    yt = None
    if y is not None and _continuous(y):
        if len(y) != len(x):
            raise InputError("y", f"has {len(y)} values but x has {len(x)} samples",
                             expected=f"a vector of length {len(x)}", source=where)
        if not np.isfinite(np.asarray(y)).all():
            raise InputError("y", "has values that are not finite", expected="finite targets",
                             source=where)
        yt = torch.as_tensor(np.asarray(y, dtype=np.float32))
        if yt.ndim == 2 and yt.shape[1] == 1:  # one factor: one target per sample
            yt = yt[:, 0]
        if yt.ndim == 1:
            classes = (TARGET,)
        elif classes is None:
            classes = tuple(f"y{j}" for j in range(yt.shape[1]))
        elif len(classes) != yt.shape[1]:
            raise InputError("y", f"has {yt.shape[1]} factors but {len(classes)} names",
                             expected="a name per factor", source=where)
        else:
            classes = tuple(classes)
    elif y is not None:
        yt = _int_field(y, "y", len(x), where)
        if int(yt.max()) >= MAX_CLASSES:
            raise InputError("y", f"has label {int(yt.max())}", expected=f"class labels "
                             f"0..C-1 with C <= {MAX_CLASSES}", source=where)
        n_classes = len(classes) if classes is not None else int(yt.max()) + 1
        if classes is not None and int(yt.max()) >= n_classes:
            raise InputError("y", f"has label {int(yt.max())}",
                             expected=f"labels in [0, {n_classes})", source=where)
        classes = tuple(classes) if classes is not None else tuple(str(c) for c in range(n_classes))
    else:
        classes = tuple(classes or ())
    tt = None if task is None else _int_field(task, "task", len(x), where)
    return Domain(name=name, x=xt, y=yt, classes=classes, task=tt)


def _continuous(y) -> bool:
    """Whether labels are continuous targets: floats not all non-negative integers, or an
    N x d array of floats (d factors per sample)."""
    arr = np.asarray(y)
    if arr.dtype.kind == "f" and arr.ndim == 2:  # several factors per sample
        return True
    return arr.dtype.kind == "f" and arr.ndim == 1 and not (
        np.isfinite(arr).all() and np.all(arr == np.round(arr)) and (arr >= 0).all())


def _int_field(values, field_name: str, n: int, where: str) -> torch.Tensor:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != n:
        raise InputError(field_name, f"has shape {arr.shape} but x has {n} samples",
                         expected=f"a vector of length {n}", source=where)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise InputError(field_name, "has non-integer values", expected="integers",
                             source=where)
    elif arr.dtype.kind not in "iub":
        raise InputError(field_name, f"has dtype {arr.dtype}", expected="integers", source=where)
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        raise InputError(field_name, f"has negative value {int(arr.min())}",
                         expected="integers >= 0", source=where)
    return torch.as_tensor(arr)


def load_npz(path: str | Path, name: str | None = None, layout: str | None = None,
             domain: int | str | None = None) -> Domain:
    """Read ``x``, optional ``y``, optional ``task`` and optional ``classes`` from an ``.npz``.

    A file with a ``domain`` array (one value per sample) holds several domains: ``domain``
    picks the samples of one of them, and is required for such a file."""
    path = Path(path)
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "does not exist"
        raise InputError("npz", f"file {str(path)!r} {problem}", expected="an .npz file",
                         source=str(path))
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
    except OSError as exc:
        raise InputError("npz", f"cannot be read ({exc.strerror})", expected="a readable file",
                         source=str(path)) from None
    if magic != NPZ_MAGIC:
        raise InputError("npz", "is not an .npz archive", expected="a file written by "
                         "numpy.savez (a zip of .npy arrays)", source=str(path))
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # zipfile, pickle and format errors all mean the same to a user
        raise InputError("npz", f"cannot be read ({exc})", expected="a NumPy .npz archive",
                         source=str(path)) from exc
    unknown = set(arrays) - {"x", "y", "task", "classes", "domain"}
    if unknown:
        raise InputError(", ".join(sorted(unknown)), "unknown array",
                         expected="only x, y, task, classes, domain", source=str(path))
    if "x" not in arrays:
        raise InputError("x", "missing", expected="an array named x", source=str(path))
    if "y" not in arrays:
        raise InputError("y", "missing", expected="an array named y (integer labels)",
                         source=str(path))
    classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else None
    if "classes" in arrays and arrays["classes"].ndim != 1:
        raise InputError("classes", f"has shape {arrays['classes'].shape}",
                         expected="a vector of class names", source=str(path))
    x, y, task = arrays["x"], arrays["y"], arrays.get("task")
    if "domain" in arrays:
        keep = _domain_rows(arrays["domain"], domain, len(x), str(path))
        x, y = x[keep], np.asarray(y)[keep] if np.ndim(y) == 1 and len(y) == len(x) else y
        task = task[keep] if task is not None and np.ndim(task) == 1 and len(task) == len(keep) \
            else task
    elif domain is not None:
        raise InputError("domain", f"is {domain!r} but the file has no domain array",
                         expected="an array named domain in the .npz file", source=str(path))
    return from_arrays(x, y, name=name or path.stem, task=task, classes=classes,
                       source=str(path), layout=layout)


def _domain_rows(values: np.ndarray, domain, n: int, where: str) -> np.ndarray:
    """The rows whose ``domain`` value equals ``domain`` (compared as text, so 2 and "2"
    match)."""
    if values.ndim != 1 or len(values) != n:
        raise InputError("domain", f"has shape {values.shape} but x has {n} samples",
                         expected=f"a vector of length {n}", source=where)
    names = sorted({str(v) for v in values.tolist()})
    if domain is None:
        raise InputError("domain", f"array holds {len(names)} domains ({', '.join(names[:10])})",
                         expected="domain = VALUE in the data table to pick one", source=where)
    keep = np.flatnonzero(np.array([str(v) for v in values.tolist()]) == str(domain))
    if not len(keep):
        raise InputError("domain", f"is {domain!r}, not in the file",
                         expected=f"one of {', '.join(names[:20])}", source=where)
    return keep


def from_dataset(dataset, *, name: str = "dataset", classes=None, layout: str | None = None
                 ) -> Domain:
    """A domain from any map-style dataset (``len`` and ``dataset[i] -> (x, y, ...)``, a torch
    ``Dataset`` for example): every sample is read once (tensors, NumPy arrays and PIL images
    alike) and checked as :func:`from_arrays` checks arrays; ``classes`` defaults to the
    dataset's ``classes`` attribute."""
    try:
        n = len(dataset)
    except TypeError:
        raise InputError("dataset", f"{type(dataset).__name__} has no length",
                         expected="a map-style dataset (len and [i])", source=name) from None
    xs, ys = [], []
    for i in range(n):
        item = dataset[i]
        if not isinstance(item, tuple | list) or len(item) < 2:
            raise InputError("dataset", f"item {i} is a {type(item).__name__}",
                             expected="(x, y) pairs", source=name)
        x, y = item[0], item[1]
        xs.append(x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
        ys.append(int(y))
    if not xs:
        raise InputError("dataset", "is empty", expected="at least one sample", source=name)
    shapes = {a.shape for a in xs}
    if len(shapes) > 1:
        raise InputError("dataset", f"holds samples of {len(shapes)} shapes "
                         f"({', '.join(map(str, sorted(shapes)[:3]))})",
                         expected="samples of one shape (resize them in the dataset)",
                         source=name)
    classes = classes if classes is not None else getattr(dataset, "classes", None)
    return from_arrays(np.stack(xs), np.array(ys), name=name, classes=classes, source=name,
                       layout=layout)


def to_domain(data, name: str) -> Domain:
    """A domain from what a user's loader returns: a :class:`Domain`, ``(x, y)`` or ``(x, y,
    classes)``, a dict of arrays (``x``, ``y``, optional ``classes``, ``task``, ``layout``) or
    a map-style dataset."""
    if isinstance(data, Domain):
        return data
    if isinstance(data, dict):
        unknown = set(data) - {"x", "y", "classes", "task", "layout"}
        if unknown or "x" not in data:
            raise InputError("dataset", f"loader returned a dict with keys {sorted(data)}",
                             expected="x, y and optional classes, task, layout", source=name)
        return from_arrays(data["x"], data.get("y"), name=name, task=data.get("task"),
                           classes=data.get("classes"), source=name, layout=data.get("layout"))
    if isinstance(data, tuple) and len(data) in (2, 3):
        return from_arrays(data[0], data[1], name=name,
                           classes=data[2] if len(data) == 3 else None, source=name)
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return from_dataset(data, name=name)
    raise InputError("dataset", f"loader returned a {type(data).__name__}",
                     expected="(x, y), a dict of arrays, a map-style Dataset or a Domain",
                     source=name)
