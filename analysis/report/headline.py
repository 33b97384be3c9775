"""The report's first screen: which method is best in each scenario, by how much, and
whether the paired interval over seeds supports calling it."""

from __future__ import annotations

import pandas as pd

from analysis.report.cells import (
    NAMES,
    baseline_of,
    best_of,
    cell,
    diff_cell,
    p_cell,
    primary_of,
)
from analysis.report.doc import Bold, Doc
from analysis.stats import MIN_SEEDS, PRACTICAL_POINTS, compare, negligible


def best_methods(doc: Doc, ok: pd.DataFrame, agg: pd.DataFrame, groups: dict[str, list[str]],
                 ci: str) -> dict[str, tuple]:
    """The "Which method is best" table; returns each scenario's best method and its paired
    comparison with the runner-up."""
    doc.heading("Which method is best")
    rows = []
    winners: dict[str, tuple] = {}  # scenario -> (best method, its comparison to the next)
    for kind, scenarios in groups.items():
        for sc in scenarios:
            metric = primary_of(ok, kind, sc)
            best, vs = winners[sc] = best_of(ok, agg, sc, metric, ci)
            a = agg[(agg["scenario"] == sc) & (agg["metric"] == metric)]
            r = a[a["method"] == best].iloc[0]
            last = agg[(agg["scenario"] == sc) & (agg["method"] == best)
                       & (agg["metric"] == f"{metric}_last")]
            base = baseline_of(a["method"], kind)
            vb = compare(ok, sc, metric, best, base, ci) if base and base != best else None
            n = int(r["n"])
            called = vs is not None and vs["called"]
            rows.append([sc, NAMES.get(metric, metric),
                         Bold(best) if called else best, cell(r),
                         cell(last.iloc[0]) if len(last) else "",
                         f"{vs['baseline']}: {diff_cell(vs)}{' *' if called else ''}, "
                         f"p {p_cell(vs['p_wilcoxon'])}" if vs else "",
                         f"{base}: {diff_cell(vb)}{' *' if vb['significant'] else ''}"
                         if vb else "", verdict(n, vs)])
    doc.table(["scenario", "metric", "best method", "its mean [CI]", "last", "best - runner-up "
               "[CI]", "best - baseline [CI]", "verdict"], rows, wrap=True)
    doc.para("The best method (upper-bound references `target-oracle`, `joint` and "
             "`cumulative` left out) is bold, and called, where its paired interval against the "
             f"runner-up excludes 0 with at least {MIN_SEEDS} seeds and it leads by "
             f"{PRACTICAL_POINTS} points or more (a smaller gap is too small to matter: the "
             "field's tables read gaps under a point as ties). `last` is its result at the "
             "final checkpoint. Where no verdict is possible, the number of seeds a paired t "
             "interval would need to exclude 0 with 80% probability, were the true "
             "difference the observed one, is given.")
    return winners


def verdict(n: int, vs: dict | None) -> str:
    """Whether the best method is called, and if not, what more seeds would take."""
    if vs is None:
        return f"{n} seed{'' if n == 1 else 's'}; no runner-up"
    if vs["called"]:
        return f"called ({n} seeds)"
    if negligible(vs["metric"], vs["diff"]):
        return (f"none called: the lead ({vs['diff']:+.2f}) is under {PRACTICAL_POINTS} points, "
                "too small to matter (practically equal)")
    needed = vs.get("seeds_needed")
    more = "more seeds cannot separate them at this difference" if needed is None else \
        f"about {int(needed)} seeds would (80% power at {vs['diff']:+.2f})"
    return f"none called: {n} seed{'' if n == 1 else 's'}; {more}"
