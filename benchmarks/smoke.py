"""``--smoke`` for every benchmark script: the same code path at tiny sizes, in seconds, so
that CI notices a script that no longer runs (``tests/test_benchmarks.py`` runs each one and
fails on an error or a ``nan`` in its output)."""

from __future__ import annotations

import argparse


def parse_args(parser: argparse.ArgumentParser, **tiny) -> argparse.Namespace:
    """The script's arguments; with ``--smoke``, the options in ``tiny`` take these values
    (the option names as their ``dest``, e.g. ``steps=10``)."""
    sizes = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in tiny.items())
    parser.add_argument("--smoke", action="store_true",
                        help=f"a check in seconds, not a measurement: {sizes}")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(tiny)
    return args
