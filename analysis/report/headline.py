"""The report's first screen: which method is best in each scenario, by how much, and
whether the paired interval over seeds supports calling it."""

from __future__ import annotations

import pandas as pd

from analysis.report.cells import (
    NAMES,
    PRIMARY,
    baseline_of,
    best_of,
    cell,
    diff_cell,
    p_cell,
)
from analysis.report.doc import Bold, Doc
from analysis.stats import MIN_SEEDS, compare


def best_methods(doc: Doc, ok: pd.DataFrame, agg: pd.DataFrame, groups: dict[str, list[str]],
                 ci: str) -> dict[str, tuple]:
    """The "Which method is best" table; returns each scenario's best method and its paired
    comparison with the runner-up."""
    doc.heading("Which method is best")
    rows = []
    winners: dict[str, tuple] = {}  # scenario -> (best method, its comparison to the next)
    for kind, scenarios in groups.items():
        for sc in scenarios:
            metric = PRIMARY.get(kind) or str(ok[ok["scenario"] == sc]["metric"].iloc[0])
            best, vs = winners[sc] = best_of(ok, agg, sc, metric, ci)
            a = agg[(agg["scenario"] == sc) & (agg["metric"] == metric)]
            r = a[a["method"] == best].iloc[0]
            base = baseline_of(a["method"], kind)
            vb = compare(ok, sc, metric, best, base, ci) if base and base != best else None
            few = int(r["n"]) < MIN_SEEDS
            rows.append([sc, NAMES.get(metric, metric), str(int(r["n"])),
                         f"none called ({int(r['n'])} seed{'' if r['n'] == 1 else 's'}; best mean: "
                         f"{best})" if few
                         else Bold(best) if vs and vs["significant"] else best, cell(r),
                         f"{vs['baseline']}: {diff_cell(vs)}"
                         f"{' *' if vs['significant'] else ''}, p {p_cell(vs['p_wilcoxon'])}"
                         if vs else "",
                         f"{base}: {diff_cell(vb)}{' *' if vb['significant'] else ''}"
                         if vb else ""])
    doc.table(["scenario", "metric", "seeds", "best method", "its mean [CI]",
               "best - runner-up [CI]", "best - baseline [CI]"], rows)
    doc.para("The best method (upper-bound references `target-oracle`, `joint` and "
             "`cumulative` left out) is bold where it is significantly better than the runner-up.")
    return winners
