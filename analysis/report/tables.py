"""The report's tables of one kind of scenario (transfer, stream): every metric of every
method, each method against the kind's baseline (paired over seeds) and the average rank."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis.continual import FWT_UNDEFINED
from analysis.regression import is_factor_mae
from analysis.report.cells import (
    COLUMNS,
    DIFFERENCES,
    FAR_FROM_LAST,
    NAMES,
    PRIMARY,
    UPPER_BOUNDS,
    base_name,
    baseline_of,
    cell,
    diff_cell,
    p_cell,
    primary_of,
    selection_cost,
    significance,
    unconverged,
    undefined,
)
from analysis.report.doc import Bold, Doc
from analysis.stats import MIN_SEEDS, average_rank, comparisons


def kind_tables(doc: Doc, table: pd.DataFrame, ok: pd.DataFrame, agg: pd.DataFrame,
                kind: str, scenarios: list[str], winners: dict[str, tuple], ci: str,
                tables_dir: Path) -> pd.DataFrame:
    """The kind's tables, added to ``doc``; returns its paired comparisons (empty when it
    has no baseline)."""
    metrics = COLUMNS.get(kind) or list(dict.fromkeys(ok[ok["scenario"].isin(scenarios)]
                                                      ["metric"]))
    if kind == "transfer":  # several regression factors: each one's error after the mean's
        metrics = metrics + sorted(m for m in ok["metric"].unique() if is_factor_mae(m))
    present = [m for m in metrics
               if ((table["metric"] == m) & table["scenario"].isin(scenarios)).any()]
    doc.heading(f"{kind.capitalize()} scenarios")
    # each scenario's ranking metric (none for kinds without one)
    primaries = {sc: primary_of(ok, kind, sc) for sc in scenarios} if PRIMARY.get(kind) else {}
    rows, far, moving = [], [], []
    for sc in scenarios:
        primary = primaries.get(sc)
        a = agg[agg["scenario"] == sc]
        best, vs = winners[sc] if primary else (None, None)
        for method in dict.fromkeys(a["method"]):
            row = [sc, method]
            cost = selection_cost(ok, sc, method) if kind == "transfer" else None
            if cost is not None and abs(cost) >= FAR_FROM_LAST:
                far.append((sc, method, cost))
            flags = unconverged(ok, sc, method)
            if flags:
                moving.append((sc, method, *flags))
            for m in present:
                r = a[(a["method"] == method) & (a["metric"] == m)]
                if r.empty:
                    row.append("undefined" if undefined(table, sc, method, m) else "")
                    continue
                text = cell(r.iloc[0])
                if m in DIFFERENCES and r["n"].iloc[0] >= MIN_SEEDS and (
                        r["ci_low"].iloc[0] > 0 or r["ci_high"].iloc[0] < 0):
                    text += " *"
                if m == primary and far and far[-1][:2] == (sc, method):
                    text += " †"
                if m == primary and moving and moving[-1][:2] == (sc, method):
                    text += " ‡"
                bold = m == primary and method == best and vs is not None and vs["called"]
                row.append(Bold(text) if bold else text)
            rows.append(row)
    doc.table(["scenario", "method"] + [NAMES.get(m, m) for m in present], rows)
    if kind == "transfer" and "target_acc_last" in present:
        doc.para("`target acc` is read at the checkpoint the selection criterion picks without "
                 "target labels, `last` at the final checkpoint, `oracle pick` at the best one "
                 "on the target test labels (an upper bound, never a result).")
    if kind == "transfer" and "target_rmse_last" in present:
        doc.para("Regression scenarios: `target RMSE` and `target MAE` are errors in the "
                 "target's own units (lower is better), read at the checkpoint the selection "
                 "criterion picks; `last RMSE` at the final checkpoint, `oracle pick RMSE` at "
                 "the best one on the target test labels (an upper bound, never a result).")
    if far:
        doc.para(f"† the selected checkpoint is {FAR_FROM_LAST:g} points or more from the last "
                 "one (mean over seeds): " + "; ".join(
                     f"{m} in {sc} ({'+' if c > 0 else ''}{c:.1f} points against last: "
                     f"selection {'gained' if c > 0 else 'cost'} that much)"
                     for sc, m, c in far) + ". Read both columns before concluding.")
    if moving:
        doc.para("‡ not converged in some seeds: at the end of the budget the training loss "
                 "was still falling (more than 5% between the last two quarters of the "
                 "checkpoint intervals) or the selection criterion still rising at each of the "
                 "last 3 checkpoints; a longer budget may change the result: " + "; ".join(
                     f"{m} in {sc} ({k} of {n} seeds)" for sc, m, k, n in moving) + ".")
    if any("undefined" in r for r in rows):
        doc.para(f"FWT is {FWT_UNDEFINED}.")
    if kind == "stream" and "intransigence" in present and (
            agg[(agg["metric"] == "intransigence") & agg["scenario"].isin(scenarios)]["mean"]
            < 0).any():
        doc.para("Intransigence (Chaudhry et al. 2018) is the joint model's accuracy on a task "
                 "minus the method's right after learning it: negative values mean the method "
                 "learnt those tasks better than the joint model trained on all tasks at once "
                 "(fewer classes to tell apart at a time, or a joint model not trained to "
                 "convergence), not that it cannot learn.")
    frames, bases = [], {}
    # upper-bound references (joint, target-oracle, ...) are never compared or ranked
    ranked = ok[~ok["method"].map(lambda m: base_name(m) in UPPER_BOUNDS)]
    ranks = set(primaries.values())
    for sc in scenarios if ranks else []:
        part = ranked[ranked["scenario"] == sc]
        base = baseline_of(dict.fromkeys(part["method"]), kind)
        for metric in [primaries[sc]] + (["forgetting"] if kind == "stream" else []):
            if base:
                frames.append(comparisons(part, metric, base, ci))
                bases[base_name(base)] = None
    comp = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not comp.empty:
        doc.heading(f"{kind.capitalize()}: each method against {' or '.join(bases)} "
                    "(paired)", 3)
        doc.table(["scenario", "metric", "method", "seeds", "difference [CI]",
                   "Wilcoxon p (shown, not used)", "significant (paired CI excludes 0)"],
                  [[c["scenario"], NAMES.get(c["metric"], c["metric"]), c["method"],
                    str(c["n"]), diff_cell(c), p_cell(c["p_wilcoxon"]),
                    significance(c)]
                   for c in comp.to_dict("records")])
    if ranks and len(scenarios) > 1:  # by the scenarios' common metric, else the kind's
        primary = ranks.pop() if len(ranks) == 1 else PRIMARY[kind]
        ar = average_rank(ranked[ranked["scenario"].isin(scenarios)], primary)
        ar.to_csv(tables_dir / f"average_rank-{kind}.csv", index=False)
        doc.heading(f"{kind.capitalize()}: average rank over scenarios ({NAMES[primary]})", 3)
        doc.table(["method", "average rank", "scenarios"],
                  [[m, f"{r:.2f}", str(n)] for m, r, n in
                   zip(ar["method"], ar["average_rank"], ar["scenarios"], strict=True)])
    return comp
