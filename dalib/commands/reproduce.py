"""``dalib reproduce``: run the reproduction ledger's entries and write the ledger.

Each entry is a suite with a ``[reproduction]`` header (:mod:`scenarios.reproduction`), run by
``dalib run`` into ``OUT/ENTRY`` (progress, resume and identity as for any sweep); the ledger
(:mod:`analysis.ledger`) is then computed from the run records and written to
``OUT/ledger.md``, ``OUT/ledger-values.csv``, ``OUT/ledger-claims.csv`` and one figure per
entry under ``OUT/ledger-figures/``. An entry's checks (``[[reproduction.check]]``: the
measurement of a likely cause) run into ``OUT/checks/ENTRY/CHECK`` the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pandas as pd

from scenarios.errors import InputError


def resolve_entries(names: list[str]) -> dict[str, Path]:
    """The built-in entries, or those named (a built-in name or a path to an entry file)."""
    from scenarios.reproduction import entries

    known = entries()
    if not names:
        return known
    out: dict[str, Path] = {}
    for name in names:
        path = Path(name)
        if name in known:
            key, found = name, known[name]
        elif path.suffix == ".toml" and path.is_file():
            key, found = path.stem, path
        else:
            raise InputError("--entry", f"is {name!r}", expected="an entry file (.toml) or "
                             f"one of {', '.join(known)}")
        if key in out and out[key].resolve() != found.resolve():
            raise InputError("--entry", f"names two entries called {key!r} ({out[key]} and "
                             f"{found})", expected="entries with distinct names (each writes "
                             "OUT/NAME): rename one file")
        out[key] = found
    return out


def check_metrics(suite, path: Path) -> None:
    """Every value and claim of an entry names a metric its scenario's runs report
    (:mod:`dalib.metrics`): a misspelled one would only ever read as 'not resolved'."""
    from dalib import metrics

    kinds = {s.name: s.kind for s in suite.scenarios}
    for field, cell in suite.reproduction.cells():
        for scenario in cell.scenarios:
            kind = kinds[scenario]
            if not metrics.known(kind, cell.metric, cell.method):
                expected = "spearman[VALIDATOR] (numbers pooled over the methods)" \
                    if cell.method == "all" else f"a metric of {kind} runs: {metrics.names(kind)}"
                raise InputError(f"{field}.metric", f"is {cell.metric!r}",
                                 expected=expected, source=str(path))


def _pooled_rows(records: list[dict]) -> pd.DataFrame:
    """Numbers pooled over a seed's methods (``method = "all"``): each validator's rank
    correlation with target accuracy over every checkpoint of the seed."""
    from analysis.validators import checkpoint_table, seed_correlations

    table, directions = checkpoint_table(records)
    return seed_correlations(table, directions) if len(table) else pd.DataFrame()


def _cost(records: list[dict], planned: int, size: str, stamp: dict) -> tuple[str, float]:
    """A sentence on what the entry's runs cost (the sum of their run times; a packed run
    counts its share of the pack) and where (``stamp``: the entry's,
    :func:`~analysis.ledger.entry_stamp`), whether runs are missing, and the seconds."""
    total = sum(r.get("timings", {}).get("total_s", 0.0) for r in records)
    failed = sum(r.get("status") != "ok" for r in records)
    failures = f" {failed} of them failed (left out of the numbers; see their records)." \
        if failed else ""
    missing = (f" **Incomplete: {len(records)} of {planned} runs finished**; the same command "
               "resumes the entry, and its rows rest on the seeds finished so far."
               if len(records) < planned else "")
    return (f"Cost ({size} size): {len(records)} runs, "
            f"{total / 60:.1f} min of run time on {stamp['device']} ({stamp['device_name']}, "
            f"torch threads {stamp['threads']}).{failures}{missing}", total)


def _results(suite, out: Path, check=None) -> tuple[pd.DataFrame, list[dict], int]:
    """The per-seed results of the runs planned by ``suite`` (of a ``check``'s scenarios and
    methods only, where given) found under ``out``, their records and the number planned."""
    from dalib.runspec import expand
    from dalib.store import read_records, results_from_records

    planned = {r.run_id for r in (expand(suite, None, list(check.methods) or None,
                                         list(check.scenarios) or None)
                                  if check else expand(suite))}
    records = [r for r in read_records(out).records if r.get("run_id") in planned] \
        if out.is_dir() else []
    results = results_from_records(records) if records else pd.DataFrame(
        columns=["scenario", "method", "seed", "metric", "value", "status"])
    pooled = _pooled_rows(records)
    if len(pooled):
        results = pd.concat([results, pooled], ignore_index=True)
    return results, records, len(planned)


def ledger_entry(name: str, suite, out: Path, size: str,
                 checks: list[tuple[object, object, Path]] = (), absent: str | None = None
                 ) -> dict:
    """One entry's ledger section data, computed from its run records under ``out`` and
    those of its ``checks`` (each ``(check, its suite, its folder)``); ``absent``: why it
    did not run here (its data or device missing), said in place of its cost."""
    from analysis import ledger

    results, records, planned = _results(suite, out)
    found = [(c, _results(s, folder, c)) for c, s, folder in checks]
    measured = [(c.name, c.what, res) for c, (res, _, _) in found]
    header = dataclasses.asdict(suite.reproduction)
    values = ledger.value_table(results, header["values"], measured)
    shapes = ledger.shape_table(results, header["shapes"])
    checked = [r for _, (_, rs, _) in found for r in rs]
    stamp = ledger.entry_stamp(records + checked)  # every number on the entry's section
    cost, seconds = _cost(records, planned, size, stamp)
    if checked:
        spent = sum(r.get("timings", {}).get("total_s", 0.0) for r in checked)
        cost += (f" Its checks: {len(checked)} runs of {sum(n for _, (_, _, n) in found)}, "
                 f"{spent / 60:.1f} min.")
        seconds += spent
    if absent:
        cost = (f"Not run here ({size} size): {absent}. Its published values are listed "
                "for comparison; `dalib reproduce --entry " + name + "` runs it where they "
                "are.")
    return {"name": name, **{k: header[k] for k in ("citation", "source", "url", "protocol",
                                                    "published_seeds", "differences")},
            "values": values, "shapes": shapes, "cost": cost, "cost_s": seconds,
            "runs": f"{len(records)} / {planned}", "records": records + checked, "size": size,
            "published_size": header["published"], "stamp": stamp}


def write_ledger(entries: list[dict], out: Path, size: str) -> Path:
    """``OUT/ledger.md`` (figures under ``OUT/ledger-figures/``) and the two CSV tables."""
    from analysis import ledger, plots

    sections, values, claims, summary = [], [], [], []
    for e in entries:
        if len(e["values"]) or len(e["shapes"]):
            fig = plots.ledger_dots(e["values"], e["shapes"], e["name"])
            plots.save(fig, out / "ledger-figures" / e["name"])
            e["figure"] = f"ledger-figures/{e['name']}.png"
        sections.append(ledger.entry_markdown(e))
        stamp = {f"stamp_{k}": v for k, v in e["stamp"].items()}
        values.append(e["values"].assign(entry=e["name"], size=e["size"], **stamp))
        claims.append(e["shapes"].assign(entry=e["name"], size=e["size"], **stamp))
        c = ledger.counts(e["values"], e["shapes"])
        summary.append(f"| [{e['name']}](#{e['name']}) | {e['runs']} | {c['inside']} | "
                       f"{c['outside']} | "
                       f"{c['not compared']} | {c['holds']} | {c['reversed']} | "
                       f"{c['not resolved']} | {c['fragile']} |")
    pd.concat(values, ignore_index=True).to_csv(out / "ledger-values.csv", index=False)
    pd.concat(claims, ignore_index=True).to_csv(out / "ledger-claims.csv", index=False)
    what = {"smoke": "at smoke size: a check that every entry runs, not a reproduction",
            "reduced": "at reduced size: each entry's protocol scaled to run on a CPU, its "
                       "differences from the paper stated with it",
            "published": "at published size: each entry's protocol as the paper states it, "
                         "on the data and device it needs"}[size]
    flag = "" if size == "reduced" else f" --size {size}"
    head = ["# Reproduction ledger", "",
            f"Published results beside dalib's own, re-run under the published protocols "
            f"({what}) by `dalib reproduce{flag}`. dalib's numbers are "
            "means over seeds with 95% Student-t intervals; a published value is *inside* when "
            "it lies in dalib's interval. A published claim is tested on paired per-seed "
            "differences: it *holds* when their interval lies on the claimed side of zero. "
            "Each verdict gives the smallest difference its seeds resolve with 80% power; a "
            "verdict that changes when any one seed is left out is *fragile*, and an unresolved "
            "claim says how many seeds would resolve the observed difference.",
            "", "| entry | runs finished | values inside | outside | not compared | claims hold "
            "| reversed | not resolved | fragile verdicts |", "|---|---|---|---|---|---|---|---|---|",
            *summary, "",
            f"The whole ledger ({size} size) took "
            f"{sum(e['cost_s'] for e in entries) / 3600:.1f} h of run time; each entry's cost "
            "and stamp are given with it.", "",
            ledger.stamp_markdown(ledger.entry_stamp(
                [r for e in entries for r in e["records"]])).replace("this entry", "the ledger"),
            ""]
    path = out / "ledger.md"
    path.write_text("\n".join(head + sections))
    return path


def check_suites(name: str, path: Path, suite, args: argparse.Namespace, size: str,
                 out: Path) -> list[tuple[object, object, Path]]:
    """Each of the entry's checks with its suite (read and its runs planned, so a bad one
    stops everything before anything runs) and its folder ``OUT/checks/ENTRY/CHECK``."""
    from dalib.commands.run import load_with_plugins
    from dalib.runspec import expand

    found = []
    for i, c in enumerate(suite.reproduction.checks):
        check_suite = load_with_plugins(str(path), args.plugin, args.data_root, size=size,
                                        check=c.name)[0]
        try:
            expand(check_suite, None, list(c.methods) or None, list(c.scenarios) or None)
        except InputError as exc:
            raise InputError(f"reproduction.check[{i}]", exc.problem, expected=exc.expected,
                             source=str(path)) from None
        found.append((c, check_suite, out / "checks" / name / c.name))
    return found


def cmd_reproduce(args: argparse.Namespace) -> int:
    from dalib.cli import build_parser
    from dalib.commands.run import cmd_run, load_with_plugins
    from scenarios.reproduction import missing

    size = "smoke" if args.smoke else args.size
    chosen = resolve_entries(args.entry)
    out = Path(args.out or ("runs/reproduce" if size == "reduced" else f"runs/reproduce-{size}"))
    # every entry is read and checked before anything runs
    absent: dict[str, str] = {}  # entries whose data or device is not here, and why
    suites = {name: load_with_plugins(str(path), args.plugin, args.data_root, size=size)[0]
              for name, path in chosen.items()}
    for name, suite in suites.items():
        if suite.reproduction is None:
            raise InputError("reproduction", "is missing", expected="a [reproduction] table "
                             "(a ledger entry)").within(str(chosen[name]))
        check_metrics(suite, chosen[name])
        lacking = missing(suite.reproduction, args.data_root, args.device or "auto", size)
        if lacking and (size == "published" or args.entry):
            raise InputError("--size", f"is {size}, but entry {name!r} cannot run at that "
                             f"size here: {lacking}", expected="another size, or --entry "
                             "naming the entries whose data and device are here")
        if lacking:  # a benchmark not here: the ledger says so, the others run
            absent[name] = lacking
    # the checks measure causes of reduced-size gaps: none at published size
    skip = size == "published" or getattr(args, "no_checks", False)
    checks = {name: [] if skip or name in absent else
              check_suites(name, chosen[name], suite, args, size, out)
              for name, suite in suites.items()}

    def run(path: Path, folder: Path, check=None) -> int:
        run_args = build_parser().parse_args(
            ["run", str(path), "--out", str(folder), "--no-report",
             *(["--jobs", str(args.jobs)] if args.jobs else []),
             *(["--threads", str(args.threads)] if args.threads else []),
             *(["--device", args.device] if args.device else []),
             *(["--data-root", args.data_root] if args.data_root else []),
             *(f"--plugin={p}" for p in args.plugin)])
        run_args.size, run_args.check = size, check and check.name
        if check is not None:
            run_args.methods = ",".join(check.methods) or None
            run_args.scenarios = ",".join(check.scenarios) or None
        return cmd_run(run_args)

    status = 0
    for i, (name, path) in enumerate(chosen.items(), 1):
        if name in absent:
            print(f"== entry {i}/{len(chosen)}: {name}: not run here: {absent[name]}")
            continue
        print(f"== entry {i}/{len(chosen)}: {name}")
        status = max(status, run(path, out / name))
        for check, _, folder in checks[name]:
            print(f"== entry {i}/{len(chosen)}: {name}, check {check.name}")
            status = max(status, run(path, folder, check))
    entries = [ledger_entry(name, suite, out / name, size, checks[name], absent.get(name))
               for name, suite in suites.items()]
    path = write_ledger(entries, out, size)
    print(f"\nledger: {path}")
    return status
