"""ImageNet-C (Hendrycks & Dietterich, ICLR 2019) and Tiny ImageNet (Stanford CS231N), in the
layouts of their releases.

* ``imagenet-c``: ``ImageNet-C/<corruption>/<severity>/<wnid>/<image>.JPEG``, 50 validation
  images of each of the 1,000 classes per corruption and severity; classes in sorted wnid
  order (torchvision's ImageNet order, so torchvision's ImageNet weights read its labels).
  ``domain`` picks a corruption (default: the 15 of the benchmark, pooled), ``severity``
  1-5 (default 5). Tent, EATA, SAR and CoTTA resize to 256 and centre-crop 224: ``size =
  224`` here resizes the whole image (a difference to state).
* ``tinyimagenet``: ``tiny-imagenet-200/train/<wnid>/images/*.JPEG`` (500 per class) and
  ``val/images`` with ``val/val_annotations.txt`` (50 per class, kept as the test set);
  200 classes in sorted wnid order. Split Tiny ImageNet (mammoth's ``seq-tinyimg``) is a
  ``split`` stream of it with ``tasks = 10``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scenarios import checks, formats
from scenarios.benchmarks.cifar import CORRUPTIONS, EXTRA_CORRUPTIONS
from scenarios.benchmarks.copies import ROOTS_HELP, find, identity, pooled
from scenarios.domain import Domain
from scenarios.errors import InputError


def _class_folders(folder: Path, count: int, name: str, where: str) -> list[Path]:
    if not folder.is_dir():
        raise InputError("dataset", f"{name}: {str(folder)!r} is missing", expected=where)
    found = sorted(p for p in folder.iterdir() if p.is_dir())
    if len(found) != count:
        raise InputError("dataset", f"{name}: {str(folder)!r} holds {len(found)} class "
                         f"folders", expected=f"{count} (one per class); {where}")
    return found


class ImageNetC:
    """ImageNet-C: a corruption at a severity of ImageNet's validation set."""

    name = "imagenet-c"
    title = "ImageNet-C: 15 corruptions x 5 severities of ImageNet's 50,000 validation images"
    per = 50_000  # images per corruption and severity
    classes = 1000
    where = ("ImageNet-C/<corruption>/<severity>/<wnid>/<image>.JPEG (zenodo.org/record/"
             "2235448, unpacked as released) " + ROOTS_HELP)

    def __init__(self) -> None:
        self.__doc__ = self.title

    def domain_names(self, **_) -> list[str]:
        return list(CORRUPTIONS)

    def _images(self, data_root, domain: str, severity: int, check: str
                ) -> tuple[Path, list[Path], list[int], tuple[str, ...]]:
        root = find(self.name, "ImageNet-C", data_root, self.where)
        folder = root / domain / str(severity)
        wnids = _class_folders(folder, self.classes, self.name, self.where)
        paths, labels = [], []
        for label, d in enumerate(wnids):
            found = formats._images_in(d)
            paths += found
            labels += [label] * len(found)
        if check == "counts" and len(paths) != self.per:
            raise InputError("dataset", f"{self.name}: {domain} at severity {severity} has "
                             f"{len(paths)} images in {str(folder)!r}, the release "
                             f"{self.per:,}", expected="a complete copy (check = 'layout' "
                             f"reads a deliberate subset); {self.where}")
        return root, paths, labels, tuple(d.name for d in wnids)

    def _options(self, domain, severity: int, check: str) -> list[str]:
        checks.integer(severity, "severity", 1, 5, "an integer in 1..5")
        checks.string(check, "check", ("counts", "layout"))
        if domain is not None:
            checks.string(domain, "domain", CORRUPTIONS + EXTRA_CORRUPTIONS)
        return [domain] if domain is not None else list(CORRUPTIONS)

    def verify(self, data_root=None, domain: str | None = None, severity: int = 5,
               check: str = "counts", **_) -> dict[str, int]:
        return {d: len(self._images(data_root, d, severity, check)[1])
                for d in self._options(domain, severity, check)}

    def fingerprint(self, data_root=None, domain: str | None = None, severity: int = 5,
                    **_) -> dict[str, str]:
        try:
            parts = [self._images(data_root, d, severity, "layout")
                     for d in self._options(domain, severity, "layout")]
        except (InputError, OSError):
            return {}
        return identity(self.name, parts)

    def __call__(self, data_root: str | Path | None = None, domain: str | None = None,
                 severity: int = 5, size: int | list[int] = 224, check: str = "counts",
                 read: str = "cache") -> Domain:
        checks.string(read, "read", formats.READS)
        parts = []
        for d in self._options(domain, severity, check):
            root, paths, labels, wnids = self._images(data_root, d, severity, check)
            parts.append(formats.images_domain(paths, labels, wnids, formats._size(size), 3,
                                               read, str(root), f"{self.name}/{d}-{severity}"))
        return parts[0] if domain is not None else pooled(
            f"{self.name}-{severity}", parts, self._options(domain, severity, check))


class TinyImageNet:
    """Tiny ImageNet: 200 classes of 64 x 64 images, 500 training and 50 validation images
    each; ``split``: ``train``, ``val`` or ``all`` (both, the validation images kept as the
    test set)."""

    name = "tinyimagenet"
    title = "Tiny ImageNet: 200 classes, 100,000 training and 10,000 validation images (64 x 64)"
    split_counts = {"train": 100_000, "val": 10_000}
    where = ("tiny-imagenet-200/train/<wnid>/images/*.JPEG and tiny-imagenet-200/val/images "
             "with val/val_annotations.txt (cs231n.stanford.edu/tiny-imagenet-200.zip, "
             "unpacked) " + ROOTS_HELP)

    def __init__(self) -> None:
        self.__doc__ = self.title

    def domain_names(self, **_) -> list[str]:
        return []

    def _images(self, data_root, split: str, check: str
                ) -> tuple[Path, list[Path], list[int], list[bool], tuple[str, ...]]:
        checks.string(split, "split", ("train", "val", "all"))
        checks.string(check, "check", ("counts", "layout"))
        root = find(self.name, "tiny-imagenet-200", data_root, self.where)
        wnids = [p.name for p in _class_folders(root / "train", 200, self.name, self.where)]
        index = {w: i for i, w in enumerate(wnids)}
        paths, labels, test = [], [], []
        if split in ("train", "all"):
            for w in wnids:
                found = formats._images_in(root / "train" / w / "images")
                paths += found
                labels += [index[w]] * len(found)
            test += [False] * len(paths)
        if split in ("val", "all"):
            notes = root / "val" / "val_annotations.txt"
            if not notes.is_file():
                raise InputError("dataset", f"{self.name}: {str(notes)!r} is missing",
                                 expected=self.where)
            for i, line in enumerate(notes.read_text().splitlines(), 1):
                parts = line.split("\t")
                if len(parts) < 2 or parts[1] not in index:
                    raise InputError(f"line {i}", f"is {line[:120]!r}", expected="'file<TAB>"
                                     "wnid...' with a wnid of train/", source=str(notes))
                image = root / "val" / "images" / parts[0]
                if not image.is_file():
                    raise InputError("dataset", f"{self.name}: {str(image)!r} is missing "
                                     f"(named on line {i} of {notes.name})", expected=self.where)
                paths.append(image)
                labels.append(index[parts[1]])
                test.append(True)
        for part in ("train", "val"):
            n = sum(t == (part == "val") for t in test)
            if check == "counts" and split in (part, "all") and n != self.split_counts[part]:
                raise InputError("dataset", f"{self.name}: the {part} split has {n} images in "
                                 f"{str(root)!r}, the release {self.split_counts[part]:,}",
                                 expected="a complete copy (check = 'layout' reads a "
                                 f"deliberate subset); {self.where}")
        return root, paths, labels, test, tuple(wnids)

    def verify(self, data_root=None, split: str = "all", check: str = "counts", **_
               ) -> dict[str, int]:
        _, _, _, test, _ = self._images(data_root, split, check)
        return {p: sum(t == (p == "val") for t in test) for p in ("train", "val")
                if split in (p, "all")}

    def fingerprint(self, data_root=None, split: str = "all", **_) -> dict[str, str]:
        try:
            parts = [self._images(data_root, split, "layout")]
        except (InputError, OSError):
            return {}
        return identity(self.name, parts)

    def __call__(self, data_root: str | Path | None = None, split: str = "all",
                 size: int | list[int] = 64, check: str = "counts", read: str = "cache"
                 ) -> Domain:
        checks.string(read, "read", formats.READS)
        root, paths, labels, test, wnids = self._images(data_root, split, check)
        d = formats.images_domain(paths, labels, wnids, formats._size(size), 3, read,
                                  str(root), self.name)
        return d.with_(test_mask=torch.as_tensor(np.asarray(test)) if split == "all" else None)
