"""Report sections on selection: the configurations a hyperparameter search chose, the
validator study of the checkpoints and whether transferability scores predict the outcome."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from analysis import plots
from analysis.report.cells import NAMES, PRIMARY, cell, fmt
from analysis.report.doc import Doc
from analysis.transferability import SCORES, score_correlations
from analysis.validators import checkpoint_table, validator_study


def selected_configurations(doc: Doc, ok: pd.DataFrame, records: list[dict], kind: str,
              tables_dir: Path) -> None:
    """The configuration hyperparameter search selected per scenario, method and seed (the
    label of the chosen run), with the oracle configuration's score and the regret."""
    chosen = ok[ok["metric"] == "selected_trial"]
    if chosen.empty or kind not in PRIMARY:
        return
    labels = {r["run_id"]: r["method"] for r in records}
    primary = PRIMARY[kind]
    rows = []
    for r in chosen.to_dict("records"):
        same = ok[(ok["scenario"] == r["scenario"]) & (ok["method"] == r["method"])
                  & (ok["seed"] == r["seed"])].set_index("metric")["value"]
        rows.append([r["scenario"], r["method"], str(r["seed"]),
                     labels.get(r.get("run_id"), f"trial {int(r['value'])}"),
                     fmt(same.get(primary, float("nan"))),
                     fmt(same.get(f"{primary}_last", float("nan"))),
                     fmt(same.get(f"{primary}_oracle_hp", float("nan"))),
                     fmt(same.get("selection_regret", float("nan")))])
    pd.DataFrame(rows, columns=["scenario", "method", "seed", "selected_config", primary,
                                f"{primary}_last", f"{primary}_oracle_hp",
                                "selection_regret"]).to_csv(
        tables_dir / f"selected-{kind}.csv", index=False)
    doc.heading(f"{kind.capitalize()}: selected configurations", 3)
    doc.para("Hyperparameter search: the configuration each seed's selection chose without "
             "target labels, its result (and at its last checkpoint, for transfer runs), the "
             "best configuration on the test labels (an upper bound, never a result) and the "
             "regret.")
    doc.table(["scenario", "method", "seed", "selected configuration", NAMES.get(primary),
               "last", "oracle configuration (upper bound)", "regret"], rows)


def search_configurations(doc: Doc, agg: pd.DataFrame, records: list[dict], kind: str,
                          tables_dir: Path) -> None:
    """Every configuration of the kind's searched methods, apart from the method tables:
    ranking them against each other would choose on the test labels."""
    if agg.empty or kind not in PRIMARY:
        return
    primary = PRIMARY[kind]
    groups = {r["method"]: r["search"]["group"] for r in records
              if isinstance(r.get("search"), dict)}
    a = agg[agg["metric"] == primary]
    rows = [[r["scenario"], groups.get(r["method"], ""), r["method"], str(int(r["n"])), cell(r)]
            for _, r in a.iterrows()]
    pd.DataFrame(rows, columns=["scenario", "searched method", "configuration", "seeds",
                                primary]).to_csv(tables_dir / f"configurations-{kind}.csv",
                                                 index=False)
    doc.heading(f"{kind.capitalize()}: every configuration of a search", 3)
    doc.para("Each configuration's own result, for reading the search space. These are not "
             "methods: picking the best of them here would choose on the target test labels. "
             "The method tables and the headline hold each searched method's selected "
             "configuration (chosen per seed without target labels; see the table above).")
    doc.table(["scenario", "searched method", "configuration", "seeds",
               f"{NAMES.get(primary, primary)} [CI]"], rows)


def validators(doc: Doc, records: list[dict], scenarios: list[str], tables_dir: Path,
                out: Path) -> list[Path]:
    """The validator study of the transfer scenarios' checkpoints (:mod:`analysis.validators`):
    a table and a figure; returns the figure files."""
    table, directions = checkpoint_table(records)
    if table.empty:
        return []
    study = validator_study(table[table["scenario"].isin(scenarios)], directions)
    if study.empty:
        return []
    study.to_csv(tables_dir / "validators.csv", index=False)
    doc.heading("Validators: which criterion chooses best?", 3)
    doc.para("Over every checkpoint of every run (the configurations of a searched method "
             "pooled under its name): Spearman's rho between each validator's score (signed: "
             "higher is better) and target accuracy, and its mean regret, the best target "
             "accuracy among a method's candidates of a seed minus the one the validator picks "
             "(Musgrave et al. 2022). Raw scores: SND is ranked here without the source-accuracy "
             "guard dalib's selection applies. Target labels are used for this study only. "
             "In regression scenarios the target score is the negative target RMSE, and the "
             "regret is in the target's units.")
    doc.table(["scenario", "validator", "Spearman rho", "mean regret", "checkpoints",
               "best"],
              [[r["scenario"], r["validator"], fmt(r["spearman"]), fmt(r["regret"]),
                str(r["candidates"]), "yes" if r["best"] else ""]
               for r in study.to_dict("records")])
    paths = plots.save(plots.validator_bars(study, "validators: rank correlation and regret"),
                       out / "figures" / "transfer-validators")
    doc.figure(paths[0], "each validator's rank correlation with target accuracy and its "
               "mean regret, per scenario")
    return paths


def transferability(doc: Doc, ok: pd.DataFrame, tables_dir: Path) -> None:
    """Kendall's tau across scenarios between each transferability score of the source-trained
    model and each method's target accuracy and NTG."""
    tau = score_correlations(ok)
    if tau.empty:
        return
    tau.to_csv(tables_dir / "transferability_tau.csv", index=False)
    n = int(tau["scenarios"].max())
    doc.heading("Transferability: do the scores predict the outcome?", 3)
    doc.para(f"Kendall's tau across {n} scenarios between each score of the `source-only` model "
             "(computed before any target training, from the k labelled target samples per "
             "class; mean over seeds) and each method's mean target accuracy (first table) and "
             "NTG (second). PAD is a distance: a good predictor of accuracy has tau < 0 there.")
    for metric in ("target_acc", "ntg"):
        t = tau[tau["metric"] == metric]
        scores = [sc for sc in SCORES if sc in set(t["score"])]
        rows = []
        for method in dict.fromkeys(t["method"]):
            m = t[t["method"] == method].set_index("score")["tau"]
            rows.append([method] + [fmt(m.get(sc, float("nan"))) for sc in scores])
        doc.table([f"tau with {NAMES[metric]}"] + scores, rows)
