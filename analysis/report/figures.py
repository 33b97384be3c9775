"""The report's figures of one kind of scenario: metrics with intervals, NTG heatmaps and
NTG against source label noise, accuracy matrices and task curves, training curves with the
selected checkpoints, t-SNE of the features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from analysis.report.cells import (
    COLUMNS,
    DIFFERENCES,
    NAMES,
    UPPER_BOUNDS,
    base_name,
    ranking,
    slug,
)
from analysis.report.doc import Doc
from analysis.stats import MIN_SEEDS


def kind_figures(doc: Doc, kind: str, scenarios: list[str], agg: pd.DataFrame, colours: dict,
                  records: list[dict], features, out: Path) -> list[Path]:
    """The figures of one kind of scenario, added to ``doc``; returns the files written."""
    figdir = out / "figures"
    written: list[Path] = []
    a = agg[agg["scenario"].isin(scenarios)]

    def add(fig, name: str, caption: str) -> None:
        paths = plots.save(fig, figdir / slug(name))
        written.extend(paths)
        doc.figure(paths[0], caption)

    doc.heading(f"{kind.capitalize()}: figures", 3)
    upper = {m for m in a["method"] if base_name(m) in UPPER_BOUNDS}
    metrics = [m for m in COLUMNS.get(kind, [])
               if m in set(a["metric"]) and m != "target_acc_oracle"]
    drawn = (" Upper-bound references are grey and dashed, below the dotted line, and never "
             "ranked." if upper else "")
    zero = f"a line marks 0 and * an interval that excludes it (with {MIN_SEEDS}+ seeds)."
    diffs = [NAMES[m] for m in metrics if m in DIFFERENCES]
    marks = f" In the panels of differences ({', '.join(diffs)}) {zero}" if diffs else ""

    def rows(sc: str, metric: str) -> pd.DataFrame:
        return a[(a["scenario"] == sc) & (a["metric"] == metric)]

    if len(scenarios) < len(metrics):  # fewer figures: one per scenario, a panel per metric
        for sc in scenarios:
            panels = [(NAMES[m], "", r, m in DIFFERENCES) for m in metrics
                      if not (r := rows(sc, m)).empty]
            add(plots.interval_panels(panels, colours, upper=upper,
                                      title=f"{sc}: mean and 95% CI over seeds"),
                f"{sc}-metrics", f"{sc}: each metric (panel) of each method: the mean over "
                f"seeds (point) and its 95% interval (line).{drawn}{marks}")
    else:  # one figure per metric, a panel per scenario
        for m in metrics:
            panels = [(sc, NAMES[m], r, m in DIFFERENCES) for sc in scenarios
                      if not (r := rows(sc, m)).empty]
            add(plots.interval_panels(panels, colours, upper=upper,
                                      title=f"{NAMES[m]}: mean and 95% CI over seeds"),
                f"{kind}-{m}", f"{NAMES[m]} of each method in each scenario (panel): the mean "
                f"over seeds (point) and its 95% interval (line).{drawn}"
                + (f" A difference: {zero}" if m in DIFFERENCES else ""))
    ntg = a[a["metric"] == "ntg"]
    if ntg["scenario"].nunique() >= 2:
        add(plots.difference_heatmap(a, "ntg", "NTG = acc(target-only) - acc(method), mean over "
                                     "seeds (* interval above 0: significant negative transfer)",
                                     "NTG (points)", upper),
            f"{kind}-ntg-heatmap", "Mean NTG of each method (row) in each condition (column): red "
            "where the source hurts (negative transfer), blue where it helps; * marks an "
            f"interval above 0, - one below 0 (with at least {MIN_SEEDS} seeds)."
            + (" Upper-bound references below the line, unmarked." if upper else ""))
        levels = noise_levels(records)
        if len(levels) >= 3:
            add(plots.difference_vs_level(a, levels, "ntg", colours, "source label noise rate",
                                          "NTG (points)",
                                          "NTG against source label noise (band: 95% CI)",
                                          upper),
                f"{kind}-ntg-vs-noise", "Mean NTG of each method (line, band: 95% interval) "
                "against the rate of label noise in the source, one panel per number k of "
                "labelled target samples per class; above 0 the source hurts."
                + (" Upper-bound references grey and dashed." if upper else ""))
    for sc in scenarios:
        matrices = _matrices(records, sc)
        if matrices:
            add(plots.accuracy_heatmaps(matrices, sc), f"{sc}-accuracy-matrix",
                f"{sc}: accuracy matrix of each method (panel), mean over seeds: row 'after task "
                "i' holds the accuracy on every task (column) once task i is learned; below the "
                "diagonal is what is remembered, above it what is known of tasks not yet seen.")
            if any(R.shape[0] == R.shape[1] + 1 for R in matrices.values()):
                add(plots.task_curves(matrices, sc), f"{sc}-task-curves",
                    f"{sc}: accuracy on each task (line) from the moment it is learned to the "
                    "end of the stream, one panel per method, mean over seeds; a falling line "
                    "is forgetting.")
        anytime = _anytime(records, sc)
        if not anytime.empty:
            add(plots.anytime_curves(anytime, colours, sc, upper), f"{sc}-anytime",
                f"{sc}: accuracy on the test samples of the tasks and classes seen so far, "
                "evaluated during the single pass at the points the stream's anytime = N "
                "sets, mean over seeds per method; the mean of each line is the method's "
                "anytime_acc.")
        curves, checkpoints = _curves(records, sc)
        if not curves.empty:
            metric = checkpoints.columns[3]
            add(plots.training_curves(curves, checkpoints, colours, f"{sc}: training",
                                      upper=upper, metric=metric),
                f"{sc}-training", f"{sc}: training loss per step"
                + (f" and target test {'RMSE' if metric == 'target_rmse' else 'accuracy'} "
                   "at each checkpoint, mean over seeds per method; "
                   "x marks the checkpoint each seed's model selection picked (selection does "
                   "not read these target labels)" if not checkpoints.empty
                   else ", mean over seeds per method") + ".")
        chosen, seed = _tsne_features(features or {}, agg, sc)
        if chosen:
            add(plots.tsne(chosen, f"{sc}, seed {seed}"), f"{sc}-tsne",
                f"{sc}: t-SNE of the source (blue) and target (orange) test-set features of "
                f"seed {seed}, {' (before adaptation) and '.join(chosen)} (best mean target "
                "accuracy); where the colours mix, the model maps both domains alike.")
    return written


def _tsne_features(features: dict, agg: pd.DataFrame, scenario: str) -> tuple[dict, str]:
    """``{source-only: arrays, best method: arrays}`` for the first seed with both saved,
    and that seed."""
    order = [m for m in ranking(agg, scenario, "target_acc") if m != "source-only"]
    if not order:
        return {}, ""
    seeds = sorted({k[2] for k in features if k[0] == scenario and k[1] == order[0]}
                   & {k[2] for k in features if k[0] == scenario and k[1] == "source-only"})
    if not seeds:
        return {}, ""
    return {m: features[(scenario, m, seeds[0])] for m in ("source-only", order[0])}, seeds[0]


def _matrices(records: list[dict], scenario: str) -> dict[str, np.ndarray]:
    by_method: dict[str, list] = {}
    for r in records:
        if r.get("scenario") == scenario and r.get("status") == "ok" and "accuracy_matrix" in r:
            by_method.setdefault(r["method"], []).append(np.asarray(r["accuracy_matrix"]))
    return {m: np.mean(v, axis=0) for m, v in by_method.items()
            if len({a.shape for a in v}) == 1}


def noise_levels(records: list[dict]) -> pd.DataFrame:
    """``scenario, level, group``: the source label-noise rate of each scenario whose records
    name one, grouped by the scenario's k (labelled target samples per class)."""
    rows = {}
    for r in records:
        data = r.get("config", {}).get("data", {})
        shifts = data.get("source", {}).get("shifts", []) if isinstance(data.get("source"),
                                                                         dict) else []
        rate = next((sh.get("rate") for sh in shifts if sh.get("name") == "label-noise"), None)
        if rate is not None:
            rows[r["scenario"]] = (float(rate), f"k = {data.get('k', 0)}")
    return pd.DataFrame([(sc, lv, g) for sc, (lv, g) in rows.items()],
                        columns=["scenario", "level", "group"])


def _anytime(records: list[dict], scenario: str) -> pd.DataFrame:
    """``method, seed, step, accuracy``: the anytime evaluations of a task-free stream's
    runs (``step``: the samples seen)."""
    rows = [{"method": r["method"], "seed": r["seed"], "step": seen, "accuracy": acc}
            for r in records if r.get("scenario") == scenario and r.get("status") == "ok"
            for seen, acc in r.get("anytime_curve", [])]
    return pd.DataFrame(rows, columns=["method", "seed", "step", "accuracy"])


def _curves(records: list[dict], scenario: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    curves, checkpoints = [], []
    for r in records:
        if r.get("scenario") != scenario or r.get("status") != "ok" or \
                "loss" not in r.get("curves", {}):  # test-time runs log no training loss
            continue
        c = r["curves"]
        curves.append(pd.DataFrame({"step": c["step"], "loss": c["loss"], "method": r["method"],
                                    "seed": r["seed"]}))
        picked = r.get("metrics", {}).get("selected_step")
        for ck in r.get("checkpoints", []):
            metric = "target_rmse" if "target_rmse" in ck else "target_acc"  # regression
            checkpoints.append({"method": r["method"], "seed": r["seed"], "step": ck["step"],
                                metric: ck[metric], "selected": ck["step"] == picked})
    cols = ["method", "seed", "step", "target_rmse" if checkpoints and "target_rmse" in
            checkpoints[0] else "target_acc", "selected"]
    return (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
            pd.DataFrame(checkpoints, columns=cols))
