"""The report's test-time section: the online error per domain of the stream (mean [95% CI]
over seeds), adaptation that hurts against the unadapted source model (paired by seed, per
domain: negative transfer), and the online error over the stream (a figure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from analysis.report.cells import diff_cell, values_cell
from analysis.report.doc import Doc
from analysis.stats import MIN_SEEDS, compare
from analysis.testtime import error_curve

REFERENCE = "source-only"  # the source model, unadapted


def domain_table(ok: pd.DataFrame, scenario: str, order: list[str] | None = None
                 ) -> tuple[list[str], pd.DataFrame]:
    """The stream's domains (in ``order``, the stream's, where given) and the per-seed
    online error of each method on each (columns ``method``, ``seed``, then one per domain),
    the methods in the table's order (the suite's), as in the other tables."""
    part = ok[(ok["scenario"] == scenario) & ok["metric"].str.startswith("online_error[")]
    order = order or []
    found = dict.fromkeys(part["metric"].str.slice(len("online_error["), -1))
    domains = sorted(found, key=lambda d: order.index(d) if d in order else len(order))
    wide = part.assign(domain=part["metric"].str.slice(len("online_error["), -1)).pivot_table(
        index=["method", "seed"], columns="domain", values="value", aggfunc="first")
    methods = list(dict.fromkeys(part["method"]))
    wide = wide.reindex(columns=domains).reset_index()
    return domains, wide.sort_values("method", key=lambda m: m.map(methods.index),
                                     kind="stable", ignore_index=True)


def stream_order(records: list[dict], scenario: str) -> list[str]:
    """The domains of a test-time scenario's stream in the order it visits them first."""
    for r in records:
        if r.get("scenario") == scenario and "online" in r:
            o = r["online"]
            return [o["names"][d] for d in dict.fromkeys(o["domain"])]
    return []


def hurts(ok: pd.DataFrame, scenario: str, domains: list[str]) -> list[list[str]]:
    """Per method and domain where adapting raised the online error over the unadapted
    model's, paired by seed (:func:`analysis.stats.compare`: its interval above 0 on 4+
    seeds)."""
    part = ok[ok["scenario"] == scenario]
    rows = []
    for method in dict.fromkeys(part["method"]):
        if method == REFERENCE:
            continue
        for d in domains:
            c = compare(part, scenario, f"online_error[{d}]", method, REFERENCE)
            if c["significant"] and c["diff"] > 0:
                rows.append([method, d, diff_cell(c)])
    return rows


def test_time_section(doc: Doc, ok: pd.DataFrame, records: list[dict], scenarios: list[str],
                      tables_dir: Path, out: Path, colours: dict) -> list[Path]:
    """Per test-time scenario: the per-domain table, the domains where adapting hurt, and
    the online error over the stream; returns the figure files."""
    figures: list[Path] = []
    for sc in scenarios:
        domains, wide = domain_table(ok, sc, stream_order(records, sc))
        if not domains:
            continue
        doc.heading(f"Test-time: {sc}", 3)
        doc.para("Online error (%) per domain of the stream, each batch predicted before the "
                 "method adapted on it: mean [95% CI] over seeds. `source-only` is the source "
                 "model unadapted.")
        rows = [[m] + [values_cell(part[d].dropna().to_numpy()) for d in domains]
                for m, part in wide.groupby("method", sort=False)]
        doc.table(["method", *domains], rows, wrap=True)
        wide.to_csv(tables_dir / f"test-time-{sc.replace('/', '_')}-domains.csv", index=False)
        bad = hurts(ok, sc, domains)
        doc.para("Adaptation that hurt (online error above the unadapted model's, paired "
                 f"over {MIN_SEEDS}+ seeds): " + ("; ".join(f"{m} on {d} ({v})"
                                                       for m, d, v in bad) if bad else "none."))
        figures += _curves(doc, records, sc, out, colours)
    return figures


def _curves(doc: Doc, records: list[dict], scenario: str, out: Path, colours: dict
            ) -> list[Path]:
    runs = [r for r in records if r["scenario"] == scenario and r["status"] == "ok"
            and "online" in r]
    if not runs:
        return []
    first = runs[0]["online"]
    window = max(first["batch_size"], len(first["pred"]) // 150)  # about 150 points
    curves: dict[str, list[np.ndarray]] = {}
    for r in runs:
        curve = error_curve(np.array(r["online"]["pred"]), np.array(r["online"]["label"]),
                            window)
        curves.setdefault(r["method"], []).append(curve)
    domain = np.array(first["domain"])
    starts = [i for i in range(1, len(domain)) if domain[i] != domain[i - 1]]
    fig = plots.online_error(
        {m: np.mean(c, 0) for m, c in curves.items()}, window,
        [(s, first["names"][domain[s]]) for s in [0, *starts]], colours,
        f"{scenario}: online error over the stream (mean over seeds, windows of {window})")
    paths = plots.save(fig, out / "figures" / f"test-time-{scenario.replace('/', '_')}")
    doc.figure(paths[0], f"{scenario}: online error over the stream, each method's mean over "
               "seeds; vertical lines mark where a domain begins")
    return paths
