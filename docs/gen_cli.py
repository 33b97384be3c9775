"""Write docs/cli.md, the command-line reference, from dalib's argument parser.

    python docs/gen_cli.py     # `make docs` runs it before building the site
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dalib.cli import build_parser


def reference() -> str:
    os.environ["COLUMNS"] = "100"  # the same wrapping on every terminal
    parser = build_parser()
    parts = ["# Command line", "", "Generated from `dalib --help` and each command's "
             "`--help`.", "", "```text", parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        parts += [f"## dalib {name}", "", "```text", command.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    Path(__file__).with_name("cli.md").write_text(reference())
