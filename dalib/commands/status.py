"""``dalib status DIR`` (where a sweep stands) and ``dalib data`` (where dataset files are
looked for, and what is found)."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_data(args: argparse.Namespace) -> int:
    from scenarios.datasets import check_data, data_roots

    print("data roots searched, in order:")
    for r in data_roots(args.data_root):
        print(f"  {r}")
    for name, status in check_data(args.data_root).items():
        print(f"{name}: {status}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from dalib.status import format_status, sweep_status

    print(format_status(Path(args.dir), sweep_status(Path(args.dir))))
    return 0
