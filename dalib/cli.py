"""dalib: run, report and follow sweeps of transfer and continual-learning experiments.

Exit codes: 0 success, 1 some runs failed, 2 bad input (nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from scenarios.errors import InputError

TRANSFER_METRICS = ["target_acc", "source_acc", "target_train_acc", "target_acc_oracle", "ntg",
                    "gain_over_source_only", "source_drop"]
STREAM_METRICS = ["acc", "bwt", "fwt", "forgetting", "intransigence"]
MAX_JOBS = 256


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
    run.add_argument("--device", help="auto, cpu or cuda (default: the suite's)")
    run.add_argument("--data-root", help="where dataset files are looked for first (then "
                     "$DALIB_DATA, ./data, ~/.cache/dalib)")
    run.add_argument("--jobs", type=int, default=1,
                     help="run in N processes, this one and N - 1 workers (torch threads each: "
                          "cores / N)")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local (in process, or --jobs processes) or ray (each run a Ray task)")
    run.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    run.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                     help="bf16: train under bfloat16 autocast (evaluation in float32)")
    run.add_argument("--compile", action="store_true",
                     help="wrap each backbone in torch.compile")
    run.add_argument("--pack", default="auto", metavar="auto|N|off",
                     help="train runs of one scenario and method that differ in seed, learning "
                          "rate, weight decay or loss weights as one batched model, up to N "
                          "runs at a time (auto: up to 64; off: every run alone)")
    run.add_argument("--logger", action="append", default=[], metavar="csv|tensorboard|wandb",
                     help="also log every run's losses to OUT/curves/*.csv, TensorBoard event "
                          "files (OUT/tensorboard/) or W&B (offline unless WANDB_MODE says "
                          "otherwise); repeatable")
    run.add_argument("--threads", type=int, metavar="N",
                     help="torch threads per process (default: usable cores / jobs; 1 per "
                          "Ray task); recorded in every run, and a resumed sweep must use the "
                          "same")
    run.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                     help="load a plugin (a .py file or a module) before the suite; repeatable")
    run.add_argument("--no-report", action="store_true",
                     help="skip writing OUT/report.md and OUT/report.html at the end")
    run.add_argument("--save-features", action="store_true",
                     help="save each transfer run's source/target test features (for t-SNE)")
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
                         "selection criteria, methods and built-in suites")
    lst.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                     help="load a plugin first, so its entries are listed")
    status = sub.add_parser("status", help="where a sweep stands (running or not): runs done, "
                            "failed, running, remaining, time left")
    status.add_argument("dir", metavar="DIR", help="the --out directory of a dalib run")
    data = sub.add_parser("data", help="show where dataset files are searched and what is found")
    data.add_argument("--data-root")
    return p


def print_summary(table: pd.DataFrame) -> None:
    from analysis.stats import summary_table

    if "status" not in table:  # a table made by hand
        table = table.assign(status="ok", run_id="")
    ok = table[table["status"] == "ok"]
    for title, metrics in (("transfer", TRANSFER_METRICS), ("stream", STREAM_METRICS)):
        part = ok[ok["metric"].isin(metrics)].dropna(subset=["value"])
        if part.empty:
            continue
        print(f"\n{title} scenarios (mean ± std over seeds, accuracy in %):")
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(summary_table(part, metrics).to_string())
    failed = table[table["status"] != "ok"]
    if not failed.empty:
        print(f"\n{failed['run_id'].nunique()} run(s) failed: "
              + ", ".join(sorted(failed["run_id"].unique())))


def check_run_args(args: argparse.Namespace, suite) -> tuple[list[int] | None, str]:
    """The seeds and device of a ``dalib run``, every flag checked (exit 2 before anything
    is written)."""
    from dalib.engine import resolve_device
    from dalib.logging import check_loggers
    from scenarios.suite import MAX_SEEDS

    if args.seeds is not None and not 1 <= args.seeds <= MAX_SEEDS:
        raise InputError("--seeds", f"is {args.seeds}", expected=f"a count in 1..{MAX_SEEDS}")
    if not 1 <= args.jobs <= MAX_JOBS:
        raise InputError("--jobs", f"is {args.jobs}", expected=f"a process count in 1..{MAX_JOBS}")
    if args.jobs > 1 and args.executor == "ray":
        raise InputError("--jobs", f"is {args.jobs} with --executor ray", expected="one way to "
                         "run at a time: --jobs or --executor ray")
    if args.threads is not None and not 1 <= args.threads <= MAX_JOBS:
        raise InputError("--threads", f"is {args.threads}",
                         expected=f"a thread count in 1..{MAX_JOBS}")
    pack_size(args.pack)
    check_loggers(args.logger)
    device = args.device or suite.device
    try:
        resolve_device(device)
    except InputError as exc:
        raise exc if args.device else exc.within(suite.path, "device") from None
    return (list(range(args.seeds)) if args.seeds else None), device


def pack_size(value: str) -> int:
    """The largest pack ``--pack`` allows (1: off)."""
    from dalib.pack.plan import AUTO

    if value == "auto":
        return AUTO
    if value == "off":
        return 1
    if not value.isdigit() or not 1 <= int(value) <= 1024:
        raise InputError("--pack", f"is {value!r}", expected="auto, off or a pack size in 1..1024")
    return int(value)


def load_with_plugins(name_or_path: str, extra: list[str], data_root: str | None = None):
    """The suite and the plugins it runs with (resolved): installed entry points, the suite's
    ``plugins`` (files relative to it) and ``--plugin`` ones (relative to the current folder),
    loaded before the suite is checked, since its methods and datasets may come from them
    (after the built-ins, whose names they may not take)."""
    from dalib import plugins, registry  # noqa: F401  (the built-ins first)
    from scenarios.suite import load_suite, resolve_suite_path, suite_plugins

    path = resolve_suite_path(name_or_path)
    plugins.load_entry_points()
    specs = [plugins.resolve(p, path.parent) for p in suite_plugins(name_or_path)]
    try:
        plugins.load_all(specs)
    except InputError as exc:
        raise exc.within(str(path)) from None
    own = [plugins.resolve(p, Path.cwd()) for p in extra]
    try:
        plugins.load_all(own)
    except InputError as exc:
        raise InputError("--plugin", exc.problem, expected=exc.expected) from None
    return load_suite(name_or_path, data_root), tuple(dict.fromkeys(specs + own))


def cmd_run(args: argparse.Namespace) -> int:
    from dalib.runner import check_owner, run_suite, validate
    from dalib.runspec import expand
    from dalib.status import time_left
    from dalib.store import check_out

    suite, plugins = load_with_plugins(args.suite, args.plugin, args.data_root)
    seeds, device = check_run_args(args, suite)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    runs = expand(suite, seeds, methods)
    check_out(args.out)
    out = Path(args.out)
    check_owner(out, suite)
    work = validate(suite, runs, args.data_root)
    total = len(runs)
    done = [0]
    left = [sum(work[r.scenario.name] for r in runs)]  # planned steps not yet done
    trained = [0.0]  # planned steps trained here
    start = time.perf_counter()
    # one bar per sweep on a terminal (the line per run is printed above it), plain lines
    # otherwise
    bar = tqdm(total=total, desc=suite.name, unit="run", disable=not sys.stdout.isatty())

    def on_run(run, record, cached: bool) -> None:
        done[0] += 1
        status = "cached" if cached else record["status"]
        detail = record.get("error", "") if record["status"] != "ok" else " ".join(
            f"{k}={v:.2f}" for k, v in record["metrics"].items()
            if k in TRANSFER_METRICS + STREAM_METRICS)
        timing = ""
        left[0] -= work[run.scenario.name]
        if not cached:
            trained[0] += work[run.scenario.name]
            took = record.get("timings", {}).get("total_s")
            eta = time_left(time.perf_counter() - start, trained[0], left[0]) or 0.0
            timing = (f" ({took:.1f} s; " if took is not None else " (") + \
                f"sweep ETA {eta:.0f} s)"
        bar.write(f"[{done[0]}/{total}] {run.scenario.name} {run.method.label} seed={run.seed} "
                  f"{status}{timing} {detail} [{run.run_id}]")
        sys.stdout.flush()
        bar.update()

    print(f"suite {suite.name}: {total} runs -> {out} (logs: {out / 'logs'})")
    try:
        with bar:
            sweep = run_suite(suite, out, runs=runs, device=device, data_root=args.data_root,
                              on_run=on_run, save_features=args.save_features, jobs=args.jobs,
                              executor=args.executor, address=args.address,
                              precision=args.precision, compile=args.compile,
                              pack=pack_size(args.pack), threads=args.threads,
                              plugins=plugins, loggers=tuple(dict.fromkeys(args.logger)),
                              work=work)
    except KeyboardInterrupt:
        print(f"dalib: interrupted: {done[0]} of {total} runs done and saved in {out}; run the "
              "same command again to resume", file=sys.stderr)
        return 130
    warned = warn_records(sweep.skipped, sweep.dropped, sweep.stale)
    if sweep.unrepeatable:
        print(f"dalib: warning: {len(sweep.unrepeatable)} finished run(s) trained again with "
              "their pack gave other numbers than their records (kept): this machine does not "
              f"repeat its own results bit for bit: {', '.join(sweep.unrepeatable)}",
              file=sys.stderr)
    print_summary(sweep.table)
    print(f"\nresults: {out / 'results.csv'}")
    if not args.no_report:
        write_report([out], out, warn=False)
    return 1 if warned or (sweep.table["status"] != "ok").any() else 0


def warn_records(skipped, dropped: list[str], stale: list[str]) -> bool:
    """Name every file under ``runs/`` that is not a record and every run that left
    ``results.csv``; True when files were skipped (the exit code says so)."""
    for path, why in skipped:
        print(f"dalib: warning: skipped {path}: {why}", file=sys.stderr)
    moved = [r for r in dropped if r in set(stale)]
    lost = [r for r in dropped if r not in set(stale)]
    if moved:
        print(f"dalib: note: {len(moved)} run(s) of an earlier version of the suite moved to "
              f"stale/ and left results.csv: {', '.join(moved)}", file=sys.stderr)
    if lost:
        print(f"dalib: warning: {len(lost)} run(s) left results.csv (their records are gone or "
              f"unreadable): {', '.join(lost)}", file=sys.stderr)
    return bool(skipped)


def load_results(path: Path, warn: bool = True) -> tuple[pd.DataFrame, list[dict], dict, bool]:
    """The results table, run records and saved features of a run directory (the table
    made from the records, nothing written), a directory holding results.csv, or a CSV
    file; and whether files under ``runs/`` were skipped (each named in a warning)."""
    from dalib.store import load_features, read_records, results_from_records

    if (path / "runs").is_dir():
        found = read_records(path)
        if not found.records and not found.skipped:
            raise InputError("DIR", f"{str(path)!r} holds no run records yet ({path / 'runs'} "
                             "is empty)", expected="a directory a dalib run has finished runs "
                             "in (dalib status DIR tells how far a sweep is)")
        if warn:
            warn_records(found.skipped, [], [])
            for path, why in found.superseded:
                print(f"dalib: note: not counted {path}: {why}", file=sys.stderr)
        return (results_from_records(found.records), found.records,
                load_features(path, found.records), bool(found.skipped))
    csv = path / "results.csv" if path.is_dir() else path
    if not csv.is_file():
        raise InputError("DIR", f"{str(path)!r} is neither a run directory (with runs/) nor a "
                         "results table", expected="a dalib run directory, a directory with "
                         "results.csv or a .csv file")
    try:
        return pd.read_csv(csv), [], {}, False
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError("table", f"cannot be read as CSV: {exc}", source=str(csv)) from None


def merge(parts: list[tuple[str, pd.DataFrame, list[dict], dict]]
          ) -> tuple[pd.DataFrame, list[dict], dict]:
    """One table from several result directories. Where two hold the same scenario, method
    and seed, every method name is suffixed with its directory's name (``dann @ v1``) so
    both stay apart."""
    from analysis.report import prepare

    tables = []
    for name, table, _, _ in parts:
        try:
            tables.append(prepare(table))
        except ValueError as exc:
            raise InputError("table", str(exc), source=name) from None
    keys = [set(zip(t["scenario"], t["method"], t["seed"].astype(str), strict=True))
            for t in tables]
    clash = any(keys[i] & keys[j] for i in range(len(keys)) for j in range(i + 1, len(keys)))
    records, features, merged = [], {}, []
    for (name, _, recs, feats), table in zip(parts, tables, strict=True):
        label = Path(name).name if Path(name).name != "results.csv" else Path(name).parent.name

        def rename(method: str, label: str = label) -> str:
            return f"{method} @ {label}" if clash else method

        merged.append(table.assign(method=table["method"].map(rename)))
        records += [{**r, "method": rename(r["method"])} for r in recs]
        features.update({(sc, rename(m), seed): f for (sc, m, seed), f in feats.items()})
    return pd.concat(merged, ignore_index=True), records, features


def write_report(paths: list[Path], out: Path, ci: str = "t", warn: bool = True
                 ) -> tuple[pd.DataFrame, bool]:
    """Write ``OUT/report.md`` and ``OUT/report.html`` from result directories or tables;
    returns the (merged) results table and whether files under a ``runs/`` were skipped."""
    from analysis.report import build_report

    loaded = [load_results(p, warn) for p in paths]
    parts = [(str(p), *r[:3]) for p, r in zip(paths, loaded, strict=True)]
    table, records, features = merge(parts) if len(parts) > 1 else parts[0][1:]
    try:
        files = build_report(table, out, records=records, features=features, ci=ci,
                             sources=[str(p) for p in paths])
    except ValueError as exc:
        raise InputError("table", str(exc), source=str(paths[0])) from None
    print(f"report: {files['html']} ({len(files['figures']) // 2} figures)")
    return table, any(r[3] for r in loaded)


def cmd_report(args: argparse.Namespace) -> int:
    from dalib.store import check_out

    paths = [Path(d) for d in args.dirs]
    if args.out is not None:
        check_out(args.out)
        out = Path(args.out)
    elif len(paths) == 1 and paths[0].is_dir():
        out = paths[0]
    else:
        out = Path("dalib-report")
    table, skipped = write_report(paths, out, args.ci)
    if args.markdown:
        print((out / "report.md").read_text())
    else:
        print_summary(table)
    return 1 if skipped else 0


def _options(fn, skip: int = 1) -> str:
    """``key=default`` for the keyword options of a callable (after ``skip`` positionals)."""
    import inspect

    params = list(inspect.signature(fn).parameters.values())[skip:]
    return ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}"
                     for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                     and p.name != "data_root") or "-"


def _from(origin: str | None) -> str:
    return f"  [plugin {Path(origin).name}]" if origin else ""


def cmd_list(args: argparse.Namespace) -> int:
    from dalib import plugins
    from dalib.models import BACKBONES
    from dalib.registry import REGISTRY
    from dalib.selection import HIGHER_IS_BETTER
    from scenarios.datasets import DATASETS
    from scenarios.formats import FORMAT_HELP, FORMAT_KEYS
    from scenarios.shifts import SHIFTS
    from scenarios.stream import PROTOCOLS, STREAMS
    from scenarios.suite import NPZ_KEYS, builtin_suites

    plugins.load_entry_points()
    plugins.load_all([plugins.resolve(p, Path.cwd()) for p in args.plugin])
    print("datasets ({ dataset = NAME, ...options }):")
    for name, fn in DATASETS.items():
        print(f"  {name:<14} {(fn.__doc__ or '').strip().splitlines()[0]}"
              f"{_from(plugins.DATASET_ORIGINS.get(name))}")
        print(f"  {'':<14} options: {_options(fn, 0)}")
    print("data formats:")
    print(f"  {'npz':<14} {{ npz = FILE }} arrays x, y, optional task, classes, domain; keys "
          f"{', '.join(sorted(NPZ_KEYS - {'npz'}))}")
    for kind, help_text in FORMAT_HELP.items():
        keys = ", ".join(sorted(FORMAT_KEYS[kind] - {kind}))
        print(f"  {kind:<14} {{ {kind} = PATH }} {help_text}; keys {keys}, shifts")
    print("shifts:")
    for name, shift in SHIFTS.items():
        opts = ", ".join(shift.options) or "-"
        print(f"  {name:<14} options: {opts}{'  (training data only)' if shift.train_only else ''}")
    print(f"streams: {', '.join(STREAMS)}; protocols: {', '.join(PROTOCOLS)}")
    print("backbones ([model] arch = NAME, other keys are its options; bottleneck = WIDTH):")
    for name, fn in BACKBONES.items():
        print(f"  {name:<14} options: {_options(fn)}{_from(plugins.BACKBONE_ORIGINS.get(name))}")
    print("selection criteria (scenario key selection): " + ", ".join(
        f"{c} ({'higher' if up else 'lower'} is better)" for c, up in HIGHER_IS_BETTER.items()))
    print("methods:")
    for name, e in REGISTRY.items():
        print(f"  {name:<14} [{e.kind}] {e.description}{_from(e.origin)}")
        print(f"  {'':<14} hyperparameters: "
              + ", ".join(f"{k}={v}" for k, v in e.hyperparameters().items()))
    print("suites:")
    for name, desc in builtin_suites().items():
        print(f"  {name:<14} {desc}")
    return 0


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


COMMANDS = {"run": cmd_run, "report": cmd_report, "list": cmd_list, "data": cmd_data,
            "status": cmd_status}


def main(argv: list[str] | None = None) -> int:
    from dalib.store import DiskFull

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
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
