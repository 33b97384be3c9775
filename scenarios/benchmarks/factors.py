"""Image regression benchmarks: dSprites (Matthey et al. 2017) in its colour, noisy and
scream variants and MPI3D (Gondal et al., NeurIPS 2019) in its real, realistic and toy
renderings, as TLlib reads them (``tllib/vision/datasets/regression/dsprites.py``,
``mpi3d.py`` and ``image_regression.py``, thuml/Transfer-Learning-Library): ``ROOT/
image_list/{domain}_{train,test}.txt``, one image per line, its path relative to ``ROOT``
and then the values of the dataset's factors. Each domain's targets are the factors TLlib
predicts (dSprites: scale, position x, position y; MPI3D: the horizontal and vertical axis
of the arm, divided by 39), several continuous targets per image (a ``regression = true``
scenario); the lists' ``test`` images are the domain's official test split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scenarios import checks, formats
from scenarios.benchmarks.copies import ROOTS_HELP, find, identity, pooled
from scenarios.benchmarks.tree import CHECKS
from scenarios.domain import Domain
from scenarios.errors import InputError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class FactorImageList:
    """A benchmark of images and continuous factors in TLlib's image-list layout."""

    name: str
    title: str
    folder: str  # ROOT's name under a data root
    domain_dirs: tuple[str, ...]  # image_list/{domain}_{split}.txt
    factors: tuple[str, ...]  # the factors predicted, in the model's output order
    columns: tuple[int, ...]  # each factor's value column (after the path)
    divisor: float  # TLlib's target transform: value / divisor
    size: int  # TLlib's default resize
    source: str
    counts: dict | None = None  # no published image counts: a copy is its lists' files
    splits: tuple = ()

    @property
    def classes(self) -> tuple[str, ...]:
        """The model's outputs: one per factor."""
        return self.factors

    @property
    def where(self) -> str:
        lists = ", ".join(f"image_list/{d}_{s}.txt" for d in self.domain_dirs[:1]
                          for s in SPLITS)
        return (f"{self.folder}/ with {lists} (and the other domains' lists) and the images "
                f"they name, from {self.source}, {ROOTS_HELP}")

    def domain_names(self, **_) -> list[str]:
        return list(self.domain_dirs)

    def _domains(self, domain: str | None, check: str) -> list[str]:
        """The domains asked for (one, or every one), ``domain`` and ``check`` checked."""
        checks.string(check, "check", CHECKS)
        if domain is not None:
            checks.string(domain, "domain", self.domain_dirs)
            return [domain]
        return list(self.domain_dirs)

    def _read(self, data_root, domain: str, check: str
              ) -> tuple[Path, list[Path], np.ndarray, np.ndarray]:
        """One domain's images, factor values (divided as TLlib does) and test flags; every
        listed file must exist (``check = "counts"``; ``"layout"`` only reads the lists)."""
        root = find(self.name, self.folder, data_root, self.where)
        paths, values, test = [], [], []
        for split in SPLITS:
            listed = root / "image_list" / f"{domain}_{split}.txt"
            if not listed.is_file():
                raise InputError("dataset", f"{self.name}: {str(listed)!r} is missing",
                                 expected=self.where)
            for n, line in enumerate(listed.read_text().splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    row = [float(v) for v in parts[1:]]
                except ValueError:
                    row = []
                if len(row) <= max(self.columns):
                    raise InputError("dataset", f"{self.name}: {str(listed)!r} line {n} is "
                                     f"{line.strip()[:80]!r}", expected=f"an image path and "
                                     f"at least {max(self.columns) + 1} numbers")
                path = Path(parts[0])
                paths.append(path if path.is_absolute() else root / path)
                values.append([row[c] / self.divisor for c in self.columns])
                test.append(split == "test")
        if not paths:
            raise InputError("dataset", f"{self.name}: {domain}'s image lists are empty",
                             expected=self.where)
        if check == "counts":
            absent = [p for p in paths if not p.is_file()]
            if absent:
                raise InputError("dataset", f"{self.name}: {domain}: {len(absent)} of the "
                                 f"{len(paths)} listed images are missing (first "
                                 f"{str(absent[0])!r})", expected=self.where)
        return root, paths, np.asarray(values, np.float32), np.asarray(test)

    def verify(self, data_root=None, domain: str | None = None, check: str = "counts", **_
               ) -> dict[str, int]:
        return {d: len(self._read(data_root, d, check)[1])
                for d in self._domains(domain, check)}

    def fingerprint(self, data_root=None, domain: str | None = None, **_) -> dict[str, str]:
        try:  # identity stats every file: a missing one is an OSError there
            parts = [self._read(data_root, d, "layout")
                     for d in self._domains(domain, "layout")]
            return identity(self.name, [(root, paths, [" ".join(map(str, v)) for v in values])
                                        for root, paths, values, _ in parts])
        except (InputError, OSError):
            return {}

    def __call__(self, data_root: str | Path | None = None, domain: str | None = None,
                 size: int | list[int] | None = None, check: str = "counts",
                 read: str = "cache") -> Domain:
        checks.string(read, "read", formats.READS)
        names = self._domains(domain, check)
        parts = []
        for d in names:
            root, paths, values, test = self._read(data_root, d, check)
            part = formats.images_domain(paths, values, self.factors,
                                         formats._size(size or self.size), 3, read,
                                         str(root), f"{self.name}/{d}")
            parts.append(part.with_(test_mask=torch.as_tensor(test)))
        return parts[0] if domain is not None else pooled(self.name, parts, names)


DSPRITES = FactorImageList(
    name="dsprites",
    title="dSprites (TLlib's regression variants): 3 domains (color, noisy, scream); "
          "targets scale, position x, position y",
    folder="dSprites", domain_dirs=("color", "noisy", "scream"),
    factors=("scale", "position_x", "position_y"), columns=(2, 4, 5), divisor=1.0, size=128,
    source="TLlib's download list (tllib/vision/datasets/regression/dsprites.py: "
           "image_list.zip, color.tgz, noisy.tgz, scream.tgz)")

MPI3D = FactorImageList(
    name="mpi3d",
    title="MPI3D (TLlib's regression domains): 3 domains (real, realistic, toy); targets "
          "the arm's horizontal and vertical axis / 39",
    folder="mpi3d", domain_dirs=("real", "realistic", "toy"),
    factors=("horizontal_axis", "vertical_axis"), columns=(0, 1), divisor=39.0, size=224,
    source="TLlib's download list (tllib/vision/datasets/regression/mpi3d.py: "
           "image_list.zip, real.tgz, realistic.tgz, toy.tgz)")
