"""The report's tables of leave-one-domain-out families (scenarios named ``FAMILY/DOMAIN``,
:mod:`scenarios.multidomain`), as DomainBed prints them: one row per method, one column per
held-out domain and their average, one table per way of choosing the checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.report.cells import fmt
from analysis.report.doc import Doc
from analysis.stats import interval

PROTOCOLS = {"target_acc": "the selected checkpoint",
             "target_acc_lodo": "leave-one-domain-out validation: the checkpoint with the "
                                "best mean accuracy of the runs trained without each other "
                                "domain, tested on it",
             "target_acc_last": "the last checkpoint",
             "target_acc_oracle": "test-domain oracle: the best checkpoint on the held-out "
                                  "domain's test labels (an upper bound, never a result)"}


def families(records: list[dict], scenarios: list[str]) -> dict[str, dict[str, str]]:
    """``{family: {scenario: held-out domain}}`` of the leave-one-domain-out families among
    ``scenarios`` with two or more held-out domains (their validation runs left out)."""
    out: dict[str, dict[str, str]] = {}
    for r in records:
        data = r.get("config", {}).get("data", {})
        if "family" in data and "validation_domain" not in data and r["scenario"] in scenarios:
            out.setdefault(data["family"], {})[r["scenario"]] = str(data["held_out"])
    order = {sc: i for i, sc in enumerate(scenarios)}
    return {f: dict(sorted(m.items(), key=lambda kv: order[kv[0]]))
            for f, m in out.items() if len(m) >= 2}


def _cell(values: np.ndarray) -> str:
    if len(values) < 2:
        return f"{fmt(values.mean())} (n = {len(values)})" if len(values) else ""
    lo, hi = interval(values, "t")
    return f"{fmt(values.mean())} [{fmt(lo)}, {fmt(hi)}]"


def family_tables(doc: Doc, ok: pd.DataFrame, records: list[dict], tables_dir: Path) -> None:
    """One table per family and checkpoint protocol (written to ``tables/``)."""
    groups = families(records, list(dict.fromkeys(ok["scenario"])))
    if not groups:
        return
    doc.heading("Leave-one-domain-out", 3)
    selections = {r["scenario"]: r.get("selection") for r in records}
    for family, held_out in groups.items():
        members, held = list(held_out), list(held_out.values())
        criteria = sorted({selections.get(m) for m in members} - {None})
        for metric, what in PROTOCOLS.items():
            part = ok[ok["scenario"].isin(members) & (ok["metric"] == metric)]
            if part.empty:
                continue
            wide = part.pivot_table(index=["method", "seed"], columns="scenario",
                                    values="value", aggfunc="first")
            rows, csv = [], []
            for method in dict.fromkeys(part["method"]):
                per_seed = wide.loc[method]
                row = [method] + [_cell(per_seed[m].dropna().to_numpy()) if m in per_seed
                                  else "" for m in members]
                complete = per_seed.reindex(columns=members).dropna()
                row.append(_cell(complete.mean(axis=1).to_numpy()))
                rows.append(row)
                csv.append([method] + [per_seed[m].mean() if m in per_seed else np.nan
                                       for m in members] + [complete.mean(axis=1).mean()])
            label = what if metric != "target_acc" or not criteria else \
                f"{what} ({', '.join(criteria)})"
            doc.para(f"**{family}**, target accuracy at {label}: mean [95% CI] over seeds; "
                     "the average is taken per seed over the held-out domains.")
            doc.table(["method", *held, "average"], rows)
            pd.DataFrame(csv, columns=["method", *held, "average"]).to_csv(
                tables_dir / f"domains-{family.replace('/', '_')}-{metric}.csv", index=False)
