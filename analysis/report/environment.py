"""The report's closing sections: the failed runs with their reasons, and the environment
the results came from (suites, seeds, versions, devices, compute time)."""

from __future__ import annotations

import pandas as pd

from analysis.report.doc import Doc


def failures_and_environment(doc: Doc, table: pd.DataFrame, records: list[dict]) -> None:
    """The "Failed runs" and "Environment" sections."""
    failed = table[table["status"] != "ok"].drop_duplicates(["scenario", "method", "seed"])
    doc.heading("Failed runs")
    if failed.empty:
        doc.para("None.")
    else:
        reasons = {r.get("run_id"): r.get("error", "") for r in records}
        doc.table(["scenario", "method", "seed", "reason"],
                  [[r["scenario"], r["method"], str(r["seed"]),
                    reasons.get(r.get("run_id"), "") or str(r["status"])]
                   for r in failed.to_dict("records")])
    doc.heading("Environment")
    doc.table(["setting", "value"], environment(table, records))


def environment(table: pd.DataFrame, records: list[dict]) -> list[list[str]]:
    """Setting, value rows: what the results are, and what made them."""
    rows = [["suite(s)", ", ".join(str(s) for s in dict.fromkeys(table.get("suite", ["-"])))],
            ["scenarios", str(table["scenario"].nunique())],
            ["methods", str(table["method"].nunique())],
            ["seeds", ", ".join(str(s) for s in sorted(set(table["seed"]), key=str))]]
    runs = table.groupby(["scenario", "method", "seed"]).ngroups
    failed = table[table["status"] != "ok"].groupby(["scenario", "method", "seed"]).ngroups
    rows.append(["runs", f"{runs} ({failed} failed)"])
    if records:
        vers = {}
        for r in records:
            for k, v in r.get("versions", {}).items():
                vers.setdefault(k, set()).add(str(v))
        rows.append(["versions", "; ".join(f"{k} {', '.join(sorted(v))}"
                                           for k, v in vers.items())])
        rows.append(["devices", ", ".join(sorted({str(r.get("device", "?")) for r in records}))])
        modes = {r["scenario"]: r["config"]["standardize"] for r in records
                 if isinstance(r.get("config"), dict) and "standardize" in r["config"]}
        if modes:
            rows.append(["inputs standardised", "; ".join(
                f"{sc}: {mode}" for sc, mode in modes.items())])
        settings = sorted({", ".join(f"{k} {v}" for k, v in r["settings"].items()
                                     if k not in ("device", "torch"))
                           for r in records if isinstance(r.get("settings"), dict)})
        if settings:
            rows.append(["execution settings", "; ".join(settings)])
        total = sum(r.get("timings", {}).get("total_s", 0.0) for r in records)
        rows.append(["compute time", f"{total / 60:.1f} min over all runs"])
        ends = sorted(r["finished"] for r in records if "finished" in r)
        if ends:
            rows.append(["finished", f"{ends[0]} .. {ends[-1]}"])
    return rows
