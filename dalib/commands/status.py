"""``dalib status DIR`` (where a sweep stands) and ``dalib data`` (where dataset files are
looked for, and what is found)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_data(args: argparse.Namespace) -> int:
    from scenarios.datasets import check_data, data_roots

    roots = data_roots(args.data_root)
    found = check_data(args.data_root, args.datasets)
    print("data roots searched, in order:")
    for r in roots:
        print(f"  {r}")
    for name, status in found.items():
        print(f"{name}: {status}")
    # a pre-flight check: 1 when a dataset asked about (default: every one) cannot be loaded
    return 0 if not any(s.startswith("missing") for s in found.values()) else 1


def cmd_status(args: argparse.Namespace) -> int:
    from dalib.status import format_status, sweep_status

    print(format_status(Path(args.dir), sweep_status(Path(args.dir))))
    return 0
