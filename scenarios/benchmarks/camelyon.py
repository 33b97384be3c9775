"""Camelyon17-WILDS (Bandi et al. 2018; Koh et al., ICML 2021): 96 x 96 patches of lymph-node
slides from five hospitals, tumour or not, in the WILDS release's layout
(``camelyon17_v1.0/metadata.csv`` and ``patches/patient_PPP_node_N/patch_patient_PPP_node_N_
x_X_y_Y.png``, as ``wilds/datasets/camelyon17_dataset.py`` reads them). Each hospital is a
domain (``hospital_0`` ... ``hospital_4``); WILDS trains on hospitals 0, 3 and 4, validates
out of distribution on 1 and tests on 2."""

from __future__ import annotations

from pathlib import Path

from scenarios import checks, formats
from scenarios.benchmarks.copies import ROOTS_HELP, find, identity, pooled
from scenarios.domain import Domain
from scenarios.errors import InputError

HOSPITALS = {f"hospital_{i}": n for i, n in enumerate((59_436, 34_904, 85_054, 129_838,
                                                       146_722))}


class Camelyon17:
    name = "camelyon17"
    title = "Camelyon17-WILDS: tumour patches from 5 hospitals (455,954 images, 96 x 96)"
    classes = ("normal", "tumor")
    splits: dict = {}
    where = ("camelyon17_v1.0/metadata.csv and camelyon17_v1.0/patches/ (the WILDS release, "
             "wilds.stanford.edu, unpacked) " + ROOTS_HELP)

    def __init__(self) -> None:
        self.__doc__ = self.title
        self.counts = HOSPITALS

    def domain_names(self, **_) -> list[str]:
        return list(HOSPITALS)

    def _images(self, data_root, domain: str, check: str
                ) -> tuple[Path, list[Path], list[int]]:
        import pandas as pd

        root = find(self.name, "camelyon17_v1.0", data_root, self.where)
        meta = root / "metadata.csv"
        if not meta.is_file():
            raise InputError("dataset", f"{self.name}: {str(meta)!r} is missing",
                             expected=self.where)
        frame = pd.read_csv(meta)
        missing = {"patient", "node", "x_coord", "y_coord", "tumor", "center"} - set(frame)
        if missing:
            raise InputError("dataset", f"{self.name}: {str(meta)!r} lacks the columns "
                             f"{', '.join(sorted(missing))}", expected=self.where)
        rows = frame[frame["center"] == int(domain.rsplit("_", 1)[1])]
        paths = [root / "patches" / f"patient_{p:03d}_node_{n}" /
                 f"patch_patient_{p:03d}_node_{n}_x_{x}_y_{y}.png"
                 for p, n, x, y in rows[["patient", "node", "x_coord", "y_coord"]].itertuples(
                     index=False, name=None)]
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise InputError("dataset", f"{self.name}: {domain}: {len(absent)} of the "
                             f"{len(paths)} patches metadata.csv names are missing (first "
                             f"{str(absent[0])!r})", expected=self.where)
        if check == "counts" and len(paths) != HOSPITALS[domain]:
            raise InputError("dataset", f"{self.name}: {domain} has {len(paths)} patches in "
                             f"{str(meta)!r}, the release {HOSPITALS[domain]:,}",
                             expected="a complete copy (check = 'layout' reads a deliberate "
                             f"subset); {self.where}")
        return root, paths, [int(t) for t in rows["tumor"]]

    def _options(self, domain, check: str) -> list[str]:
        checks.string(check, "check", ("counts", "layout"))
        if domain is not None:
            checks.string(domain, "domain", tuple(HOSPITALS))
        return [domain] if domain is not None else list(HOSPITALS)

    def verify(self, data_root=None, domain: str | None = None, check: str = "counts", **_
               ) -> dict[str, int]:
        return {d: len(self._images(data_root, d, check)[1])
                for d in self._options(domain, check)}

    def fingerprint(self, data_root=None, domain: str | None = None, **_) -> dict[str, str]:
        try:
            parts = [self._images(data_root, d, "layout") for d in self._options(domain,
                                                                                 "layout")]
        except (InputError, OSError):
            return {}
        return identity(self.name, parts)

    def __call__(self, data_root: str | Path | None = None, domain: str | None = None,
                 size: int | list[int] = 96, check: str = "counts", read: str = "cache"
                 ) -> Domain:
        checks.string(read, "read", formats.READS)
        names = self._options(domain, check)
        parts = []
        for d in names:
            root, paths, labels = self._images(data_root, d, check)
            parts.append(formats.images_domain(paths, labels, self.classes,
                                               formats._size(size), 3, read, str(root),
                                               f"{self.name}/{d}"))
        return parts[0] if domain is not None else pooled(self.name, parts, names)
