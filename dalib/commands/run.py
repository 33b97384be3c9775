"""``dalib run SUITE --out DIR``: check every input, run the suite's runs (resuming a sweep),
print a line per run and the summary, write the report."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm

from dalib.commands.report import (
    STREAM_METRICS,
    TRANSFER_METRICS,
    print_summary,
    warn_records,
    write_report,
)
from scenarios.errors import InputError

MAX_JOBS = 256


def check_run_args(args: argparse.Namespace, suite) -> tuple[list[int] | None, str]:
    """The seeds and device of a ``dalib run``, every flag checked (exit 2 before anything
    is written)."""
    from dalib.engine import resolve_device
    from dalib.logging import check_loggers
    from scenarios.suite import MAX_SEEDS

    if args.seeds is not None and not 1 <= args.seeds <= MAX_SEEDS:
        raise InputError("--seeds", f"is {args.seeds}", expected=f"a count in 1..{MAX_SEEDS}")
    if args.jobs is not None and not 1 <= args.jobs <= MAX_JOBS:
        raise InputError("--jobs", f"is {args.jobs}", expected=f"a process count in 1..{MAX_JOBS}")
    if args.jobs is not None and args.jobs > 1 and args.executor == "ray":
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


def load_with_plugins(name_or_path: str, extra: list[str], data_root: str | None = None,
                      size: str = "reduced", check: str | None = None):
    """The suite and the plugins it runs with (resolved): installed entry points, the suite's
    ``plugins`` (files relative to it) and ``--plugin`` ones (relative to the current folder),
    loaded before the suite is checked, since its methods and datasets may come from them
    (after the built-ins, whose names they may not take)."""
    from dalib import plugins, registry  # noqa: F401  (the built-ins first)
    from scenarios.datasets import data_roots
    from scenarios.suite import load_suite, resolve_suite_path, suite_plugins

    data_roots(data_root)  # a --data-root that is not a folder: exit 2, whatever the suite reads
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
    return load_suite(name_or_path, data_root, size, check), tuple(dict.fromkeys(specs + own))


def split_names(text: str) -> list[str]:
    """Comma-separated names; a comma inside brackets belongs to a method's label
    (``ewc[fisher=sample,strength=600],naive`` is two methods)."""
    names, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth <= 0:
            names.append(text[start:i].strip())
            start = i + 1
    return [n for n in names if n]


def cmd_run(args: argparse.Namespace) -> int:
    from dalib.runner import check_owner, run_suite, validate
    from dalib.runspec import expand
    from dalib.status import time_left
    from dalib.store import check_out

    suite, plugins = load_with_plugins(args.suite, args.plugin, args.data_root,
                                       getattr(args, "size", "reduced"),
                                       getattr(args, "check", None))
    seeds, device = check_run_args(args, suite)
    methods = split_names(args.methods) if args.methods else None
    scenarios = split_names(args.scenarios) if getattr(args, "scenarios", None) else None
    runs = expand(suite, seeds, methods, scenarios)
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
            f"{k}={v:.2f}" if v == v else f"{k}=undefined"  # NaN: FWT under class-IL
            for k, v in record["metrics"].items() if k in TRANSFER_METRICS + STREAM_METRICS)
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
                              keep_models=getattr(args, "keep_models", False) or suite.keep_models,
                              executor=args.executor, address=args.address,
                              precision=args.precision, compile=args.compile,
                              channels_last=args.channels_last,
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
