"""``dalib report DIR...``: a report from run directories or results tables; and the summary
and warnings ``dalib run`` prints at its end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from scenarios.errors import InputError

TRANSFER_METRICS = ["target_acc", "target_acc_last", "source_acc", "target_train_acc",
                    "target_acc_oracle", "ntg", "gain_over_source_only", "source_drop",
                    "target_rmse", "target_mae", "target_rmse_last", "source_rmse",
                    "target_rmse_oracle", "ntg_rmse", "gain_over_source_only_rmse"]
STREAM_METRICS = ["acc", "bwt", "fwt", "forgetting", "intransigence"]
TEST_TIME_METRICS = ["online_error", "source_acc", "final_majority_share"]


def print_summary(table: pd.DataFrame) -> None:
    from analysis.domains import without_validation
    from analysis.stats import configurations, summary_table

    if "status" not in table:  # a table made by hand
        table = table.assign(status="ok", run_id="")
    ok = without_validation(table[table["status"] == "ok"])
    configs = configurations(ok)
    if configs:  # searched methods appear as their selected configuration
        print(f"\n{len(configs)} configurations of searched methods are in the report, "
              "not ranked here")
        ok = ok[~ok["method"].isin(configs)]
    test_time = set(ok.loc[ok["metric"] == "online_error", "scenario"])
    for title, metrics, rows in (
            ("transfer", TRANSFER_METRICS, ~ok["scenario"].isin(test_time)),
            ("stream", STREAM_METRICS, ~ok["scenario"].isin(test_time)),
            ("test-time", TEST_TIME_METRICS, ok["scenario"].isin(test_time))):
        part = ok[rows & ok["metric"].isin(metrics)].dropna(subset=["value"])
        if part.empty:
            continue
        print(f"\n{title} scenarios (mean ± std over seeds; accuracy and error in %, "
              "regression errors in the target's units):")
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(summary_table(part, metrics).to_string())
    failed = table[table["status"] != "ok"]
    if not failed.empty:
        print(f"\n{failed['run_id'].nunique()} run(s) failed: "
              + ", ".join(sorted(failed["run_id"].unique())))


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
