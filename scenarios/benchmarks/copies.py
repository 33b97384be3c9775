"""What every named benchmark does with a copy on disk: find it under the data roots, hash
its identity, pool its domains."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from scenarios import pixels
from scenarios.domain import Domain
from scenarios.errors import InputError
from scenarios.roots import data_roots

ROOTS_HELP = ("in one of the data roots (--data-root, $DALIB_DATA, ./data or ~/.cache/dalib; "
              "nothing is downloaded)")


class NoCopy(InputError):
    """No copy of a benchmark under any data root (as opposed to an incomplete one)."""


def find(name: str, folder: str, data_root, where: str) -> Path:
    """``ROOT/folder`` under the first data root that has it; none is :class:`NoCopy`
    naming every root searched and ``where`` the files go and come from."""
    roots = data_roots(data_root)
    found = next((r / folder for r in roots if (r / folder).is_dir()), None)
    if found is None:
        raise NoCopy("dataset", f"{name}: no copy found; searched "
                     f"{', '.join(str(r) for r in roots)}", expected=where)
    return found


def identity(name: str, parts: list[tuple]) -> dict[str, str]:
    """A copy's identity from its domains' ``(root, paths, labels, ...)``: each image's path
    (relative to the copy's root), label, size and modification time, hashed (as image
    folders' identity: a copy copied anew, with new times, runs again)."""
    h = hashlib.sha256()
    for root, paths, labels, *_ in parts:
        for p, y in zip(paths, labels, strict=True):
            st = p.stat()
            h.update(f"{p.relative_to(root)}\0{y}\0{st.st_size}\0{st.st_mtime_ns}\n"
                     .encode())
    return {f"{name}#copy": h.hexdigest()[:16]}


def pooled(name: str, parts: list[Domain], names: list[str]) -> Domain:
    """Several domains of one benchmark as one, each sample's ``env`` naming its domain
    (their images still unread); a part's official test images stay marked."""
    masks = [p.test_mask for p in parts]
    test = torch.cat([m if m is not None else torch.zeros(len(p), dtype=torch.bool)
                      for m, p in zip(masks, parts, strict=True)]) \
        if any(m is not None for m in masks) else None
    return Domain(name=name, x=pixels.cat([p.x for p in parts]),
                  y=torch.cat([p.y for p in parts]), classes=parts[0].classes,
                  env=torch.cat([torch.full((len(p),), i) for i, p in enumerate(parts)]),
                  envs=tuple(names), test_mask=test)
