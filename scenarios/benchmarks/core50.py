"""CORe50 (Lomonaco & Maltoni, CoRL 2017) in its release's 128 x 128 layout
(``core50_128x128/s<session>/o<object>/C_<ss>_<oo>_<fff>.png``, as Avalanche's ``CORe50``
reads it): 50 objects of 10 categories filmed in 11 sessions. Each session is a domain
(``s1`` ... ``s11``); sessions 3, 7 and 10 are the test sessions of the NI and NC protocols.
``labels = "objects"`` (50 classes, default) or ``"categories"`` (10: objects 1-5, 6-10, ...
in order). The release's total of 164,866 images is checked when every session is read
(its per-session counts are not in this manifest)."""

from __future__ import annotations

from pathlib import Path

from scenarios import checks, formats
from scenarios.benchmarks.copies import ROOTS_HELP, find, identity, pooled
from scenarios.domain import Domain
from scenarios.errors import InputError

SESSIONS = tuple(f"s{i}" for i in range(1, 12))
TEST_SESSIONS = ("s3", "s7", "s10")
CATEGORIES = ("plug_adapter", "mobile_phone", "scissors", "light_bulb", "can", "glasses",
              "ball", "marker", "cup", "remote_control")
TOTAL = 164_866


class CORe50:
    name = "core50"
    title = "CORe50: 50 objects (10 categories) in 11 sessions, 164,866 images (128 x 128)"
    splits: dict = {}
    where = ("core50_128x128/s<session>/o<object>/*.png (core50_128x128.zip from "
             "vlomonaco.github.io/core50, unpacked) " + ROOTS_HELP)

    def __init__(self) -> None:
        self.__doc__ = self.title

    def domain_names(self, **_) -> list[str]:
        return list(SESSIONS)

    def _images(self, data_root, session: str) -> tuple[Path, list[Path], list[int]]:
        root = find(self.name, "core50_128x128", data_root, self.where)
        folder = root / session
        if not folder.is_dir():
            raise InputError("dataset", f"{self.name}: session folder {str(folder)!r} is "
                             "missing", expected=self.where)
        paths, objects = [], []
        for o in range(1, 51):
            found = formats._images_in(folder / f"o{o}") if (folder / f"o{o}").is_dir() else []
            if not found:
                raise InputError("dataset", f"{self.name}: {str(folder / f'o{o}')!r} is missing "
                                 "or empty", expected=f"o1 ... o50 in every session; "
                                 f"{self.where}")
            paths += found
            objects += [o - 1] * len(found)
        return root, paths, objects

    def _options(self, domain, labels: str, check: str) -> list[str]:
        checks.string(labels, "labels", ("objects", "categories"))
        checks.string(check, "check", ("counts", "layout"))
        if domain is not None:
            checks.string(domain, "domain", SESSIONS)
        return [domain] if domain is not None else list(SESSIONS)

    def _read(self, data_root, names: list[str], check: str) -> list[tuple]:
        parts = [self._images(data_root, s) for s in names]
        total = sum(len(p[1]) for p in parts)
        if check == "counts" and len(names) == len(SESSIONS) and total != TOTAL:
            raise InputError("dataset", f"{self.name}: the copy at {str(parts[0][0])!r} has "
                             f"{total} images, the release {TOTAL:,}", expected="a complete "
                             f"copy (check = 'layout' reads a deliberate subset); {self.where}")
        return parts

    def verify(self, data_root=None, domain: str | None = None, labels: str = "objects",
               check: str = "counts", **_) -> dict[str, int]:
        names = self._options(domain, labels, check)
        return {s: len(p[1]) for s, p in zip(names, self._read(data_root, names, check),
                                             strict=True)}

    def fingerprint(self, data_root=None, domain: str | None = None, **_) -> dict[str, str]:
        try:
            parts = [self._images(data_root, s) for s in self._options(domain, "objects",
                                                                         "layout")]
        except (InputError, OSError):
            return {}
        return identity(self.name, parts)

    def __call__(self, data_root: str | Path | None = None, domain: str | None = None,
                 labels: str = "objects", size: int | list[int] = 128, check: str = "counts",
                 read: str = "cache") -> Domain:
        checks.string(read, "read", formats.READS)
        names = self._options(domain, labels, check)
        classes = CATEGORIES if labels == "categories" else tuple(f"o{o}" for o in range(1, 51))
        parts = []
        for s, (root, paths, objects) in zip(names, self._read(data_root, names, check),
                                             strict=True):
            ys = [o // 5 for o in objects] if labels == "categories" else objects
            parts.append(formats.images_domain(paths, ys, classes, formats._size(size), 3,
                                               read, str(root), f"{self.name}/{s}"))
        return parts[0] if domain is not None else pooled(self.name, parts, names)
