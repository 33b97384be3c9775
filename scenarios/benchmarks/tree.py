"""Benchmarks whose copy is a folder of images: where a copy lives, whether it is complete,
and its domains as :class:`~scenarios.domain.Domain` objects.

A benchmark declares its domains with their image counts (the manifest), its classes in the
reference library's order and the layouts copies come in: TLlib's (domain folders beside an
``image_list`` folder of ``path label`` files) and DomainBed's (``root/domain/class/image``,
as torchvision's ``ImageFolder`` reads it). A class's label is its position in the reference
order whichever layout is read, so a model trained on one copy reads another.

A copy is checked before anything is decoded: every domain folder, every class folder or
listed image, and the number of images per domain against the manifest (``check = "counts"``,
the default; ``check = "layout"`` compares folders only, for a deliberate subset). A copy's
identity (every image's relative path, label, size and modification time) enters the
run's.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from scenarios import checks, formats
from scenarios.benchmarks.copies import NoCopy, identity, pooled
from scenarios.domain import Domain
from scenarios.errors import InputError
from scenarios.roots import data_roots

CHECKS = ("counts", "layout")
DEFAULT_SIZE = 224  # pixels: the input side of the ImageNet backbones the benchmarks use


@dataclass(frozen=True)
class Layout:
    """One way a copy is laid out under a data root: the benchmark's ``folders`` (names it
    goes by, the first the usual one), each domain's folder of class folders (relative to
    it) and, for list layouts, each domain's image lists (``{split}`` filled in) with paths
    relative to the benchmark's folder and labels counted from ``label_base``."""

    name: str
    folders: tuple[str, ...]
    domain_dirs: dict[str, str]
    lists: dict[str, str] = field(default_factory=dict)
    label_base: int = 0

    def describe(self, benchmark: ImageBenchmark) -> str:
        first = benchmark.domains[0]
        text = f"{self.folders[0]}/{self.domain_dirs[first]}/<class>/<image>"
        if self.lists:
            split = next(iter(benchmark.splits), "")
            text += f" with {self.folders[0]}/{self.lists[first].format(split=split)}"
        domains = ", ".join(self.domain_dirs[d] for d in benchmark.domains)
        return f"{self.name}: {text} (domain folders {domains})"


@dataclass(frozen=True)
class Copy:
    """A copy found on disk: its folder and the layout it follows."""

    root: Path
    layout: Layout


@dataclass(frozen=True)
class ImageBenchmark:
    """A benchmark of image domains. ``counts``: images per domain in the published copy;
    ``splits``: the official splits where the reference defines them (image lists), with
    their counts per domain."""

    name: str
    title: str
    reference: str
    source: str
    classes: tuple[str, ...]
    counts: dict[str, int]
    layouts: tuple[Layout, ...]
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    counts_note: str = ""  # what is uncertain about the counts, said when a copy differs

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.counts)

    # ---- finding and checking a copy

    def find(self, data_root: str | Path | None) -> Copy:
        """The first copy under the data roots: in the first layout whose folders it has
        (a domain folder, and the image lists where the layout has them), else in the first
        layout whose name it has (its checks then name what is missing); none is an input
        error naming every folder searched, the layouts and where the files come from."""
        roots = data_roots(data_root)
        for root in roots:
            candidate = None
            for layout in self.layouts:
                for name in layout.folders:
                    folder = root / name
                    if not folder.is_dir():
                        continue
                    candidate = candidate or Copy(folder, layout)
                    lists = not layout.lists or (folder / Path(
                        next(iter(layout.lists.values()))).parent).is_dir()
                    if lists and any((folder / d).is_dir() for d in layout.domain_dirs.values()):
                        return Copy(folder, layout)
            if candidate is not None:
                return candidate
        searched = ", ".join(str(r) for r in roots)
        raise NoCopy("dataset", f"{self.name}: no copy found; searched {searched}",
                         expected=self._where())

    def _where(self) -> str:
        layouts = "; or ".join(lay.describe(self) for lay in self.layouts)
        return (f"{layouts}; in one of the data roots (--data-root, $DALIB_DATA, ./data or "
                f"~/.cache/dalib); the files come from {self.source} (nothing is downloaded)")

    def images(self, copy: Copy, domain: str, split: str = "all") -> tuple[list[Path], list[int],
                                                                          list[bool]]:
        """A domain's image paths, labels and test flags (the official test split's images),
        checked against the layout: an absent folder, list or image is an input error."""
        if copy.layout.lists:
            return self._listed(copy, domain, split)
        if split != "all":
            raise InputError("split", f"is {split!r}, but the copy at {str(copy.root)!r} has no "
                             "image lists", expected=f"split = 'all', or the {self._list_layout()}"
                             " layout (its lists define the splits)")
        folder = self._domain_folder(copy, domain)
        present = {p.name: p for p in folder.iterdir() if p.is_dir()}
        missing = [c for c in self.classes if c not in present]
        if missing:
            extra = sorted(set(present) - set(self.classes))
            hint = f"; found {', '.join(map(repr, extra[:5]))} instead" if extra else ""
            raise InputError("dataset", f"{self.name}: {len(missing)} class folder(s) missing "
                             f"in {str(folder)!r}: {', '.join(map(repr, missing[:5]))}{hint}",
                             expected=self._where())
        paths, labels = [], []
        for label, name in enumerate(self.classes):
            found = formats._images_in(present[name])
            paths += found
            labels += [label] * len(found)
        return paths, labels, [False] * len(paths)

    def _list_layout(self) -> str:
        return next((lay.name for lay in self.layouts if lay.lists), "list")

    def _domain_folder(self, copy: Copy, domain: str) -> Path:
        folder = copy.root / copy.layout.domain_dirs[domain]
        if folder.is_dir():
            return folder
        level = copy.root  # the first part of the path that is missing, and its siblings
        for part in Path(copy.layout.domain_dirs[domain]).parts:
            if not (level / part).is_dir():
                break
            level = level / part
        found = sorted(p.name for p in level.iterdir() if p.is_dir()) if level.is_dir() else []
        close = [f for f in found if _plain(f) == _plain(part)] or \
            difflib.get_close_matches(part, found, n=1, cutoff=0.6)
        hint = f" (found {close[0]!r} in {str(level)!r}: renamed?)" if close else ""
        raise InputError("dataset", f"{self.name}: domain {domain!r}: folder "
                         f"{str(folder)!r} is missing{hint}", expected=self._where())

    def _listed(self, copy: Copy, domain: str, split: str) -> tuple[list[Path], list[int],
                                                                    list[bool]]:
        splits = list(self.splits) or [""]
        if split != "all" and split not in splits:
            raise InputError("split", f"is {split!r}", expected=f"one of all, "
                             f"{', '.join(s for s in splits if s)}" if splits != [""] else
                             "'all' (this benchmark has no official splits)")
        self._domain_folder(copy, domain)
        paths, labels, test = [], [], []
        for part in splits if split == "all" else [split]:
            path = copy.root / copy.layout.lists[domain].format(split=part)
            if not path.is_file():
                raise InputError("dataset", f"{self.name}: image list {str(path)!r} is missing",
                                 expected=self._where())
            for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if not line.strip():
                    continue
                parts = line.rsplit(maxsplit=1)
                label = int(parts[1]) - copy.layout.label_base if len(parts) == 2 and \
                    parts[1].lstrip("-").isdigit() else -1
                if not 0 <= label < len(self.classes):
                    raise InputError(f"line {i}", f"is {line[:200]!r}", expected=f"'path label' "
                                     f"with a label in {copy.layout.label_base}.."
                                     f"{len(self.classes) - 1 + copy.layout.label_base}",
                                     source=str(path))
                paths.append(copy.root / parts[0])
                labels.append(label)
                test.append(part == "test")
        absent = [p for p in paths if not p.is_file()]
        if absent:
            raise InputError("dataset", f"{self.name}: domain {domain!r}: {len(absent)} of the "
                             f"{len(paths)} images its lists name are missing (first "
                             f"{str(absent[0])!r})", expected=self._where())
        return paths, labels, test

    def expected_count(self, domain: str, split: str) -> int:
        return self.counts[domain] if split == "all" else self.splits[split][domain]

    def check(self, copy: Copy, domain: str, split: str, found: int, how: str) -> None:
        """The manifest's check of one domain's image count (``how = "counts"``)."""
        expected = self.expected_count(domain, split)
        if how == "counts" and found != expected:
            part = "" if split == "all" else f" ({split} split)"
            raise InputError("dataset", f"{self.name}: domain {domain!r}{part} has {found} "
                             f"images in {str(copy.root)!r}, the published copy {expected}",
                             expected="a complete copy (copy the missing files again; check "
                             "= 'layout' in the data table reads a deliberate subset); "
                             f"the files come from {self.source}{self.counts_note}")

    # ---- loading

    def load(self, data_root: str | Path | None = None, domain: str | None = None,
             split: str = "all", size: int | list[int] = DEFAULT_SIZE,
             check: str = "counts", read: str = "cache") -> Domain:
        """One domain (``domain = NAME``) or every domain pooled (each sample's ``env``),
        decoded once at ``size`` (RGB) and cached, or with ``read = "files"`` decoded batch
        by batch in worker processes (nothing kept); ``split`` keeps an official split."""
        checks.string(read, "read", formats.READS)
        copy, names = self._start(data_root, domain, check, split)
        parts = []
        for name in names:
            paths, labels, test = self.images(copy, name, split)
            self.check(copy, name, split, len(paths), check)
            d = formats.images_domain(paths, labels, self.classes, formats._size(size), 3,
                                      read, str(copy.root), f"{self.name}/{name}")
            parts.append(d.with_(test_mask=torch.as_tensor(test) if any(test) else None))
        return parts[0] if domain is not None else pooled(self.name, parts, names)

    def _start(self, data_root, domain, check: str, split: str) -> tuple[Copy, list[str]]:
        checks.string(check, "check", CHECKS)
        checks.string(split, "split", ("all", *self.splits))
        if domain is not None and domain not in self.domains:
            raise InputError("domain", f"is {domain!r}", expected=f"one of "
                             f"{', '.join(self.domains)} ({self.name})")
        return self.find(data_root), [domain] if domain is not None else list(self.domains)

    def verify(self, data_root: str | Path | None = None, domain: str | None = None,
               split: str = "all", check: str = "counts") -> dict[str, int]:
        """Images per domain of a complete copy (the checks of :meth:`load`, nothing
        decoded)."""
        copy, names = self._start(data_root, domain, check, split)
        out = {}
        for name in names:
            paths, _, _ = self.images(copy, name, split)
            self.check(copy, name, split, len(paths), check)
            out[name] = len(paths)
        return out

    def fingerprint(self, data_root: str | Path | None = None, domain: str | None = None,
                    split: str = "all", **_) -> dict[str, str]:
        """The copy's identity (:func:`~scenarios.benchmarks.copies.identity`) and its
        layout."""
        try:
            copy, names = self._start(data_root, domain, "layout", split)
            out = identity(self.name, [(copy.root, *self.images(copy, name, split))
                                       for name in names])
        except (InputError, OSError):
            return {}  # loading names the problem
        return {k: f"{copy.layout.name}:{v}" for k, v in out.items()}

    def domain_names(self, **_) -> list[str]:
        return list(self.domains)

    def files(self, data_root: str | Path | None = None, **_) -> list[Path]:
        """The copy's image lists (its images enter the identity through
        :meth:`fingerprint`)."""
        try:
            copy = self.find(data_root)
        except InputError:
            return []
        return sorted({copy.root / lst.format(split=s) for lst in copy.layout.lists.values()
                       for s in (self.splits or [""])})

    def __call__(self, data_root: str | Path | None = None, domain: str | None = None,
                 split: str = "all", size: int | list[int] = DEFAULT_SIZE,
                 check: str = "counts", read: str = "cache") -> Domain:
        return self.load(data_root, domain=domain, split=split, size=size, check=check,
                         read=read)


def _plain(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())
