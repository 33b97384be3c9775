"""dalib: run, report and follow sweeps of transfer and continual-learning experiments.

Exit codes: 0 success, 1 some runs failed, 2 bad input (nothing written). This module holds
the parser and the error handling; each subcommand lives in :mod:`dalib.commands`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from scenarios.errors import InputError


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit 2, like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"dalib: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dalib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run a suite (a built-in name or a .toml path)")
    run.add_argument("suite")
    run.add_argument("--out", required=True, help="output directory (records, results.csv)")
    run.add_argument("--seeds", type=int, help="run seeds 0..N-1 instead of the suite's")
    run.add_argument("--methods", help="comma-separated subset of the suite's methods")
    run.add_argument("--scenarios", help="comma-separated subset of the suite's scenarios")
    run.add_argument("--device", help="auto, cpu or cuda (default: the suite's)")
    run.add_argument("--data-root", help="where dataset files are looked for first (then "
                     "$DALIB_DATA, ./data, ~/.cache/dalib)")
    run.add_argument("--jobs", type=int, metavar="N",
                     help="run in N processes, this one and N - 1 workers (default: one per "
                          "usable core, no more than there are runs; 1 on a GPU)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local (in process, or --jobs processes) or ray (each run a Ray task)")
    run.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    run.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                     help="bf16: train under bfloat16 autocast (evaluation in float32)")
    run.add_argument("--compile", action="store_true",
                     help="wrap each backbone in torch.compile")
    run.add_argument("--channels-last", action="store_true",
                     help="convert each model to the channels-last memory format (NHWC "
                     "convolutions, faster on GPUs with tensor cores)")
    run.add_argument("--pack", default="auto", metavar="auto|N|off",
                     help="train runs of one scenario and method that differ in seed, learning "
                          "rate, weight decay or loss weights as one batched model, up to N "
                          "runs at a time (auto: up to 64; off: every run alone)")
    run.add_argument("--logger", action="append", default=[], metavar="csv|tensorboard|wandb",
                     help="also log every run's losses to OUT/curves/*.csv, TensorBoard event "
                          "files (OUT/tensorboard/) or W&B (offline unless WANDB_MODE says "
                          "otherwise); repeatable")
    run.add_argument("--threads", type=int, metavar="N",
                     help="torch threads per process (default: 1, the same on every machine; "
                          "more helps a single large model on an idle machine); recorded in "
                          "every run, and a resumed sweep must use the same")
    run.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                     help="load a plugin (a .py file or a module) before the suite; repeatable")
    run.add_argument("--no-report", action="store_true",
                     help="skip writing OUT/report.md and OUT/report.html at the end")
    run.add_argument("--save-features", action="store_true",
                     help="save each transfer run's source/target test features (for t-SNE)")
    run.add_argument("--keep-models", action="store_true",
                     help="keep each transfer and stream run's trained model in OUT/models/ "
                          "(as the suite key keep_models = true; dalib.load_model reads them)")
    rep = sub.add_parser("report", help="write report.md and report.html from one or more "
                         "result directories (or results tables) and print the summary")
    rep.add_argument("dirs", nargs="+", metavar="DIR",
                     help="a dalib run directory, a directory with results.csv, or a CSV file")
    rep.add_argument("--out", help="where the report goes (default: DIR for one run directory, "
                     "./dalib-report otherwise)")
    rep.add_argument("--ci", choices=["t", "bootstrap"], default="t",
                     help="confidence intervals over seeds: t (Student-t, the default) or "
                          "bootstrap (cells with fewer than 10 seeds keep the t interval)")
    rep.add_argument("--markdown", action="store_true", help="also print report.md")
    lst = sub.add_parser("list", help="list datasets, formats, shifts, streams, backbones, "
                         "selection criteria, methods, built-in suites and reproduction entries")
    lst.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                     help="load a plugin first, so its entries are listed")
    status = sub.add_parser("status", help="where a sweep stands (running or not): runs done, "
                            "failed, running, remaining, time left")
    status.add_argument("dir", metavar="DIR", help="the --out directory of a dalib run")
    rp = sub.add_parser("reproduce", help="run the reproduction ledger (published results "
                        "re-run under their protocols) and write OUT/ledger.md")
    rp.add_argument("--entry", action="append", default=[], metavar="NAME",
                    help="run this entry only (a built-in entry name or an entry .toml); "
                         "repeatable (default: every built-in entry)")
    rp.add_argument("--size", choices=("reduced", "published", "smoke"), default="reduced",
                    help="reduced (default): each entry's protocol scaled to run on a CPU; "
                         "published: the paper's protocol, refused (exit 2) where its data or "
                         "device is missing; smoke: a tiny run that checks each entry works")
    rp.add_argument("--smoke", action="store_true", help="the same as --size smoke")
    rp.add_argument("--no-checks", action="store_true",
                    help="skip the entries' checks (the runs that measure the likely cause of "
                         "a value outside its published interval; not run at published size)")
    rp.add_argument("--out", help="output directory, one sub-directory per entry (default: "
                    "runs/reproduce, or runs/reproduce-SIZE for the other sizes)")
    rp.add_argument("--jobs", type=int, metavar="N",
                    help="processes per entry, as for dalib run (default: one per usable core)")
    rp.add_argument("--threads", type=int, metavar="N",
                    help="torch threads per process, as for dalib run (default: 1)")
    rp.add_argument("--device", help="auto, cpu or cuda (default: each entry's)")
    rp.add_argument("--data-root", help="where dataset files are looked for first")
    rp.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                    help="load a plugin before the entries; repeatable")
    data = sub.add_parser("data", help="show where dataset files are searched and what is "
                          "found; exit 1 when a dataset asked about cannot be loaded")
    data.add_argument("datasets", nargs="*", metavar="DATASET",
                      help="the datasets to check (default: every one)")
    data.add_argument("--data-root")
    return p


# each subcommand: its module in dalib.commands and its function (imported when it runs)
COMMANDS = {"run": ("run", "cmd_run"), "report": ("report", "cmd_report"),
            "list": ("listing", "cmd_list"), "data": ("status", "cmd_data"),
            "status": ("status", "cmd_status"), "reproduce": ("reproduce", "cmd_reproduce")}


def main(argv: list[str] | None = None) -> int:
    from dalib.store import DiskFull

    args = build_parser().parse_args(argv)
    try:
        module, name = COMMANDS[args.command]
        return getattr(importlib.import_module(f"dalib.commands.{module}"), name)(args)
    except InputError as exc:
        print(f"dalib: error: {exc}", file=sys.stderr)
        return 2
    except DiskFull as exc:
        print(f"dalib: error: {exc.strerror} (free some space and run the same command again: "
              "finished runs are kept)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("dalib: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (dalib list | head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file the command had to write or read
        print(f"dalib: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one line, not a traceback; DALIB_DEBUG=1 shows it
        if os.environ.get("DALIB_DEBUG"):
            raise
        print(f"dalib: internal error: {type(exc).__name__}: {exc} (run with DALIB_DEBUG=1 "
              "for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
