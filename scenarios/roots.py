"""Where dataset files are looked for: the ``data_root`` argument (``--data-root``), the
``DALIB_DATA`` environment variable, ``./data`` (where torchvision's ``download=True`` puts
files by default) and the user cache directory ``~/.cache/dalib``, in that order."""

from __future__ import annotations

import os
from pathlib import Path

from scenarios.errors import InputError


def data_roots(data_root: str | Path | None = None) -> list[Path]:
    """The directories searched for dataset files, in order. A ``data_root`` that is not a
    directory is an error (a mistyped ``--data-root`` would otherwise run silently on the
    files of another root)."""
    roots = []
    if data_root:
        if not Path(data_root).is_dir():
            raise InputError("--data-root", f"{str(data_root)!r} is not a directory",
                             expected="an existing folder holding the dataset files (`dalib "
                             "data --data-root DIR` shows what it finds)")
        roots.append(Path(data_root))
    if os.environ.get("DALIB_DATA"):
        roots.append(Path(os.environ["DALIB_DATA"]))
    roots.append(Path("data").absolute())
    roots.append(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dalib")
    return roots
