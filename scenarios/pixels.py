"""Images kept as the uint8 arrays they were decoded into (usually the memory-mapped decode
cache), read as float32 only for the rows a batch or an evaluation chunk asks for.

A domain whose inputs are :class:`Pixels` holds a quarter of the float bytes, and none at
all when its array is memory-mapped: the operating system pages images in as batches read
them, so memory stays bounded as a data set grows. :class:`ImageFiles` keeps nothing: each
batch's files are decoded when it is asked for, in worker processes, the next batch while
the current one trains. Indexing returns exactly the tensor the
in-memory path holds (``uint8 / 255`` in float32, channels first), so numbers do not depend
on which path a run took. Selecting or pooling rows (:meth:`take`, :func:`cat`) stays lazy;
any other tensor operation on the whole set reads it all into memory first.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch


class ImageFiles:
    """Image files read as a uint8 array (N x H x W x C) would be: ``files[rows]`` decodes
    those files (as the decode cache does: PIL, converted to ``channels``, resized to
    ``size``) in ``workers`` processes; :meth:`prefetch` starts a later read."""

    def __init__(self, paths: list, size: tuple[int, int], channels: int, where: str,
                 workers: int | None = None) -> None:
        self.paths = np.asarray([str(p) for p in paths])
        self.size, self.channels, self.where = tuple(size), channels, where
        self.shape = (len(self.paths), self.size[0], self.size[1], channels)
        self.workers = workers or min(os.cpu_count() or 1, 4)
        self._pool = None
        self._pending: tuple[bytes, list] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def _submit(self, rows: np.ndarray) -> list:
        from scenarios.formats import _decode_chunk

        jobs = [(list(part), self.size, self.channels)
                for part in np.array_split(self.paths[rows], self.workers) if len(part)]
        if self.workers < 2:
            return [_Done(_decode_chunk(job)) for job in jobs]
        if self._pool is None:  # fork: the workers need only PIL and NumPy
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("fork"))
        return [self._pool.submit(_decode_chunk, job) for job in jobs]

    def prefetch(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        self._pending = (rows.tobytes(), self._submit(rows))

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        pending, self._pending = self._pending, None
        futures = pending[1] if pending and pending[0] == rows.tobytes() else \
            self._submit(rows)
        images = [a for f in futures for a in f.result()]
        for i, a in enumerate(images):
            if isinstance(a, str):
                from scenarios.errors import InputError

                raise InputError("images", f"{self.paths[rows[i]]!r} cannot be decoded ({a})",
                                 expected="image files (PNG, JPEG, ...)", source=self.where)
        return np.stack(images) if images else np.empty((0, *self.shape[1:]), np.uint8)

    def __getstate__(self) -> dict:  # a copy in another process starts its own workers
        return {**self.__dict__, "_pool": None, "_pending": None}


class _Done:
    """A result already there, read as a future's."""

    def __init__(self, value) -> None:
        self.value = value

    def result(self):
        return self.value


class Pixels:
    """Rows of one or more uint8 image arrays (N x H x W x C; or :class:`ImageFiles`), seen
    as a float32 tensor of shape (N, C, H, W) with values in [0, 1]."""

    def __init__(self, arrays: tuple[np.ndarray, ...] | np.ndarray,
                 part: np.ndarray | None = None, row: np.ndarray | None = None) -> None:
        self.arrays = tuple(arrays) if isinstance(arrays, tuple | list) else (arrays,)
        if part is None:
            part = np.concatenate([np.full(len(a), i) for i, a in enumerate(self.arrays)])
            row = np.concatenate([np.arange(len(a)) for a in self.arrays])
        self.part, self.row = part.astype(np.int64), row.astype(np.int64)
        h, w, c = self.arrays[0].shape[1:]
        self.shape = torch.Size((len(self.row), c, h, w))

    # ---- the tensor attributes the engine reads
    dtype = torch.float32
    device = torch.device("cpu")
    ndim = 4

    def dim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self.row)

    def numel(self) -> int:
        return int(np.prod(self.shape))

    nelement = numel

    def element_size(self) -> int:
        return 4  # the float32 it reads as

    def cpu(self) -> Pixels:
        return self

    def pin_memory(self) -> Pixels:
        return self

    # ---- reading
    def take(self, index) -> Pixels:
        """The rows at ``index``, still unread."""
        index = np.asarray(torch.as_tensor(index).cpu(), dtype=np.int64)
        return Pixels(self.arrays, self.part[index], self.row[index])

    def __getitem__(self, key) -> torch.Tensor:
        """The rows ``key`` selects (an integer, slice, index or mask; in a tuple, the rest
        indexes each image) as float32 images."""
        if isinstance(key, tuple):
            rows = self[key[0]]
            return rows[(slice(None), *key[1:])] if rows.dim() == 4 else rows[key[1:]]
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        part, row = self.part[key], self.row[key]
        single = np.ndim(part) == 0
        part, row = np.atleast_1d(part), np.atleast_1d(row)
        out = np.empty((len(row), *self.arrays[0].shape[1:]), np.uint8)
        for p in np.unique(part):
            where = part == p
            out[where] = self.arrays[p][row[where]]
        x = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().float() / 255.0
        return x[0] if single else x

    def prefetch(self, key) -> None:
        """Start reading the rows ``key`` selects where their source reads ahead (files)."""
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        part, row = self.part[key], self.row[key]
        for p in np.unique(part):
            if isinstance(self.arrays[p], ImageFiles):
                self.arrays[p].prefetch(row[part == p])

    @property
    def streamed(self) -> bool:
        """Whether some rows are read from their files each time (never held whole)."""
        return any(isinstance(a, ImageFiles) for a in self.arrays)

    def materialize(self) -> torch.Tensor:
        return self[np.arange(len(self))]

    def to(self, *args, **kwargs) -> torch.Tensor:
        return self.materialize().to(*args, **kwargs)

    def __getattr__(self, name: str):  # any other tensor method: on the whole set, read
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.materialize(), name)

    def __array__(self, dtype=None, copy=None):
        return self.materialize().numpy().astype(dtype or np.float32)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        def real(v):
            if isinstance(v, Pixels):
                return v.materialize()
            if isinstance(v, list | tuple):
                return type(v)(real(u) for u in v)
            return v

        return func(*real(args), **{k: real(v) for k, v in (kwargs or {}).items()})


def _whole(name: str):
    def op(self, *args):
        return getattr(self.materialize(), name)(*args)
    op.__name__ = name
    return op


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
              "__truediv__", "__rtruediv__", "__neg__", "__lt__", "__le__", "__gt__", "__ge__",
              "__eq__", "__ne__",
              "__iter__"):
    setattr(Pixels, _name, _whole(_name))


def take(x, index):
    """``x[index]`` for a tensor; the still unread rows for :class:`Pixels`."""
    return x.take(index) if isinstance(x, Pixels) else x[torch.as_tensor(index, dtype=torch.long)]


def cat(xs: list) -> torch.Tensor | Pixels:
    """Rows of several inputs, one after the other (unread when all are :class:`Pixels` of
    one image size)."""
    if all(isinstance(x, Pixels) for x in xs) and len({x.shape[1:] for x in xs}) == 1:
        arrays, parts, rows = [], [], []
        for x in xs:
            offset = len(arrays)
            arrays += list(x.arrays)
            parts.append(x.part + offset)
            rows.append(x.row)
        return Pixels(tuple(arrays), np.concatenate(parts), np.concatenate(rows))
    return torch.cat([x.materialize() if isinstance(x, Pixels) else x for x in xs])
