"""A report of a results table: ``report.md`` and one self-contained ``report.html``.

:func:`build_report` takes the tidy table (``scenario, method, seed, metric, value``; made by
dalib or by hand) and, when there are any, the runs' JSON records (for accuracy matrices,
training curves, failure reasons and the environment) and saved features (for t-SNE). Every
number comes from :mod:`analysis.stats`; the aggregated tables are also written as CSV.

The first section answers "which method is best, by how much, is it significant?" for each
scenario: the best mean of the scenario's main metric is **bold** only where the paired
interval of its difference to the runner-up (same seeds) excludes 0.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from analysis.continual import FWT_UNDEFINED
from analysis.stats import (
    BOOTSTRAP_MIN_N,
    MIN_SEEDS,
    aggregate,
    average_rank,
    better,
    compare,
    comparisons,
    ok_rows,
)
from analysis.transfer import transfer_gaps
from analysis.transferability import SCORES, score_correlations
from analysis.validators import checkpoint_table, validator_study

REQUIRED = ["scenario", "method", "seed", "metric", "value"]
PRIMARY = {"transfer": "target_acc", "stream": "acc"}
BASELINE = {"transfer": "source-only", "stream": "naive"}
UPPER_BOUNDS = {"target-oracle", "joint", "cumulative"}  # references that see what others may not


def base_name(label: str) -> str:
    """A method's registry name from its label (``joint[shift=0] @ v1`` -> ``joint``)."""
    return label.split(" @ ")[0].split("[")[0]


def baseline_of(methods, kind: str) -> str | None:
    """The label of the kind's baseline (``source-only``, ``naive``) among ``methods``."""
    return next((m for m in methods if base_name(m) == BASELINE.get(kind)), None)
COLUMNS = {"transfer": ["target_acc", "gain_over_source_only", "ntg", "source_acc",
                        "source_drop", "target_acc_oracle"],
           "stream": ["acc", "bwt", "fwt", "forgetting", "intransigence"]}
DIFFERENCES = {"gain_over_source_only", "ntg", "source_drop", "bwt", "fwt"}
NAMES = {"target_acc": "target acc", "gain_over_source_only": "gain over source-only",
         "ntg": "NTG", "source_acc": "source acc", "source_drop": "source drop",
         "target_acc_oracle": "oracle pick (upper bound)", "acc": "ACC", "bwt": "BWT",
         "fwt": "FWT", "forgetting": "forgetting", "intransigence": "intransigence"}
# wide tables scroll inside their box; figures sit two per row on a wide screen, one below
# 1000 px
CSS = """body{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;
color:#222}.scroll{overflow-x:auto;max-width:100%;margin:.5em 0 1.5em}
table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;white-space:nowrap}th{background:#f2f2f2}
img{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}
.figures{display:grid;grid-template-columns:repeat(2,minmax(0,1fr));gap:1em 2em;
margin:1em 0 2em}figure{margin:0}
@media (max-width:1000px){.figures{grid-template-columns:minmax(0,1fr)}}
code{background:#f5f5f5;padding:0 .2em}"""


class Bold(str):
    """A table cell shown in bold."""


class Doc:
    """Headings, paragraphs, tables and figures, rendered to Markdown and HTML alike."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.md: list[str] = []
        self.html: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.md += ["#" * level + " " + text, ""]
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str) -> None:
        self.md += [text, ""]
        body = html.escape(text)
        body = re.sub(r"`([^`]+)`", r"<code>\1</code>", body)
        self.html.append(f"<p>{body}</p>")

    def table(self, header: list[str], rows: list[list]) -> None:
        def md(c) -> str:
            return f"**{c}**" if isinstance(c, Bold) else str(c)

        def ht(c) -> str:
            return f"<b>{html.escape(c)}</b>" if isinstance(c, Bold) else html.escape(str(c))

        self.md += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        self.md += ["| " + " | ".join(md(c) for c in r) + " |" for r in rows] + [""]
        self.html.append('<div class="scroll"><table><thead><tr>'
                         + "".join(f"<th>{html.escape(h)}</th>" for h in header)
                         + "</tr></thead><tbody>"
                         + "".join("<tr>" + "".join(f"<td>{ht(c)}</td>" for c in r) + "</tr>"
                                   for r in rows) + "</tbody></table></div>")

    def figure(self, png: Path, caption: str) -> None:
        rel = png.relative_to(self.root).as_posix()
        self.md += [f"![{caption}]({rel})", "", f"*{caption}* (also `{rel[:-4]}.svg`)", ""]
        data = base64.b64encode(png.read_bytes()).decode()
        item = (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        grid = '<div class="figures">'
        if self.html and self.html[-1].startswith(grid):  # consecutive figures share a grid
            self.html[-1] = self.html[-1][:-len("</div>")] + item + "</div>"
        else:
            self.html.append(f"{grid}{item}</div>")

    def render_html(self, title: str) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
                + "\n".join(self.html) + "\n</body></html>\n")


def prepare(results: pd.DataFrame) -> pd.DataFrame:
    """Check the columns, default ``status`` to ``ok`` and add gain over source-only, NTG and
    source drop when the table has ``target_acc`` but not these derived rows."""
    missing = [c for c in REQUIRED if c not in results]
    if missing:
        raise ValueError(f"the results table lacks column(s) {', '.join(missing)}; expected "
                         "columns scenario, method, seed, metric, value (suite, status optional)")
    values = pd.to_numeric(results["value"], errors="coerce")
    bad = values.isna() & results["value"].notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"column value, row {i + 1}: {results['value'].iloc[i]!r} is not a "
                         "number")
    table = results.assign(value=values)
    if "status" not in table:
        table = table.assign(status="ok")
    derived = {"gain_over_source_only", "ntg", "source_drop"}
    if not derived & set(table["metric"]):
        table = pd.concat([table, transfer_gaps(ok_rows(table))], ignore_index=True)
    return table


def kinds(table: pd.DataFrame) -> dict[str, list[str]]:
    """Scenarios by kind: ``transfer`` (with ``target_acc``), ``stream`` (with ``acc``) and
    ``other``, in order of appearance."""
    out: dict[str, list[str]] = {"transfer": [], "stream": [], "other": []}
    for sc, g in table.groupby("scenario", sort=False):
        metrics = set(g["metric"])
        kind = next((k for k, m in PRIMARY.items() if m in metrics), "other")
        out[kind].append(sc)
    return {k: v for k, v in out.items() if v}


def fmt(x: float) -> str:
    return "" if pd.isna(x) else f"{x:.2f}"


def cell(row: pd.Series) -> str:
    """``mean [ci_low, ci_high]`` (``mean (n = 1)`` for one seed)."""
    if row["n"] < 2:
        return f"{fmt(row['mean'])} (n = 1)"
    if pd.isna(row["ci_low"]):
        return fmt(row["mean"])
    return f"{fmt(row['mean'])} [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"


def diff_cell(c: dict) -> str:
    ci = "" if pd.isna(c["ci_low"]) else f" [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"
    return f"{c['diff']:+.2f}{ci}"


def undefined(table: pd.DataFrame, scenario: str, method: str, metric: str) -> bool:
    """The metric was recorded for the method, as NaN for every seed (FWT under class-IL)."""
    v = table[(table["scenario"] == scenario) & (table["method"] == method)
              & (table["metric"] == metric)]["value"]
    return len(v) > 0 and bool(v.isna().all())


def significance(c: dict) -> str:
    """Whether a paired comparison is significant, and by which test."""
    if c["n"] < MIN_SEEDS:
        return f"not assessed ({c['n']} seeds < {MIN_SEEDS})"
    return "yes (CI)" if c["significant"] else "no (CI)"


def p_cell(p: float) -> str:
    return "n/a" if pd.isna(p) else f"{p:.3f}"


def ranking(agg: pd.DataFrame, scenario: str, metric: str) -> list[str]:
    """Methods of ``scenario`` from best to worst mean ``metric``, upper-bound references
    (``target-oracle``, ``joint``, ``cumulative``) left out."""
    a = agg[(agg["scenario"] == scenario) & (agg["metric"] == metric)
            & ~agg["method"].map(lambda m: base_name(m) in UPPER_BOUNDS)]
    order = sorted(zip(a["mean"], a["method"], strict=True), key=lambda t: t[0],
                   reverse=not better(metric, 0.0, 1.0))
    return [m for _, m in order]


def best_of(table: pd.DataFrame, agg: pd.DataFrame, scenario: str, metric: str, ci: str
            ) -> tuple[str | None, dict | None]:
    """The method with the best mean and its paired comparison with the runner-up."""
    order = ranking(agg, scenario, metric)
    if not order:
        return None, None
    if len(order) == 1:
        return order[0], None
    return order[0], compare(table, scenario, metric, order[0], order[1], ci)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text)


def environment(table: pd.DataFrame, records: list[dict]) -> list[list[str]]:
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
        total = sum(r.get("timings", {}).get("total_s", 0.0) for r in records)
        rows.append(["compute time", f"{total / 60:.1f} min over all runs"])
        ends = sorted(r["finished"] for r in records if "finished" in r)
        if ends:
            rows.append(["finished", f"{ends[0]} .. {ends[-1]}"])
    return rows


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


def _curves(records: list[dict], scenario: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    curves, checkpoints = [], []
    for r in records:
        if r.get("scenario") != scenario or r.get("status") != "ok" or "curves" not in r:
            continue
        c = r["curves"]
        curves.append(pd.DataFrame({"step": c["step"], "loss": c["loss"], "method": r["method"],
                                    "seed": r["seed"]}))
        picked = r.get("metrics", {}).get("selected_step")
        for ck in r.get("checkpoints", []):
            checkpoints.append({"method": r["method"], "seed": r["seed"], "step": ck["step"],
                                "target_acc": ck["target_acc"], "selected": ck["step"] == picked})
    cols = ["method", "seed", "step", "target_acc", "selected"]
    return (pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
            pd.DataFrame(checkpoints, columns=cols))


def build_report(results: pd.DataFrame, out: str | Path, *, records: list[dict] | None = None,
                 features: dict[tuple[str, str, str], dict[str, np.ndarray]] | None = None,
                 ci: str = "t", sources: list[str] | None = None,
                 title: str | None = None) -> dict[str, Path | list[Path]]:
    """Write ``OUT/report.md``, ``OUT/report.html``, ``OUT/figures/*.png|svg`` and
    ``OUT/tables/*.csv``; returns their paths.

    ``features`` maps ``(scenario, method, seed)`` to arrays ``source``, ``target``,
    ``y_source``, ``y_target`` (a model's features of the source and target test sets); the
    t-SNE figure of a transfer scenario shows ``source-only`` (before adaptation) next to the
    method with the best mean target accuracy, for the first seed both have."""
    out = Path(out)
    records = records or []
    table = prepare(results)
    ok = ok_rows(table)
    agg = aggregate(ok, ci=ci)
    groups = kinds(ok) if not ok.empty else {}
    colours = plots.palette(table["method"])
    doc = Doc(out)
    figures: list[Path] = []
    suites = ", ".join(str(s) for s in dict.fromkeys(table["suite"])) if "suite" in table else ""
    title = title or f"dalib report{': ' + suites if suites else ''}"
    doc.heading(title, 1)
    interval = (f"expanded percentile bootstrap of the mean over seeds (10,000 resamples, "
                f"seed 0) where a cell has {BOOTSTRAP_MIN_N} or more seeds, the Student-t "
                "interval below" if ci == "bootstrap" else "Student-t interval over seeds")
    doc.para(f"Cells are mean [95% CI], the CI is the {interval}; accuracies in %. A cell with "
             "one seed shows n = 1 and no interval. Comparisons pair the seeds of the two "
             "methods: a difference is significant (`*`, bold best method) when its paired "
             f"95% {'t ' if ci == 't' else ''}interval excludes 0 and it rests on at least "
             f"{MIN_SEEDS} seeds; that interval decides, not the Wilcoxon signed-rank p, which is "
             "shown beside it and cannot fall below 0.05 before 6 seeds. Model selection never "
             "reads target test labels; the oracle pick is an upper bound.")
    if sources:
        doc.para("Results from: " + ", ".join(f"`{s}`" for s in sources))
    if not agg.empty and agg["n"].min() < MIN_SEEDS:
        doc.para(f"Some cells rest on {int(agg['n'].min())} seed(s): with fewer than "
                 f"{MIN_SEEDS} seeds no winner can be called and no difference is marked "
                 "significant. Run more seeds (`dalib run SUITE --seeds 5`) to compare methods.")

    # ---- first screen: the best method of each scenario
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

    # ---- one table per kind of scenario
    tables_dir = out / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    agg.to_csv(tables_dir / "aggregate.csv", index=False)
    comp_frames = []
    for kind, scenarios in groups.items():
        metrics = COLUMNS.get(kind) or list(dict.fromkeys(ok[ok["scenario"].isin(scenarios)]
                                                          ["metric"]))
        present = [m for m in metrics
                   if ((table["metric"] == m) & table["scenario"].isin(scenarios)).any()]
        doc.heading(f"{kind.capitalize()} scenarios")
        primary = PRIMARY.get(kind)
        rows = []
        for sc in scenarios:
            a = agg[agg["scenario"] == sc]
            best, vs = winners[sc] if primary else (None, None)
            for method in dict.fromkeys(a["method"]):
                row = [sc, method]
                for m in present:
                    r = a[(a["method"] == method) & (a["metric"] == m)]
                    if r.empty:
                        row.append("undefined" if undefined(table, sc, method, m) else "")
                        continue
                    text = cell(r.iloc[0])
                    if m in DIFFERENCES and r["n"].iloc[0] >= MIN_SEEDS and (
                            r["ci_low"].iloc[0] > 0 or r["ci_high"].iloc[0] < 0):
                        text += " *"
                    bold = m == primary and method == best and vs is not None and vs["significant"]
                    row.append(Bold(text) if bold else text)
                rows.append(row)
        doc.table(["scenario", "method"] + [NAMES.get(m, m) for m in present], rows)
        if any("undefined" in r for r in rows):
            doc.para(f"FWT is {FWT_UNDEFINED}.")
        frames = []
        for sc in scenarios if primary else []:
            part = ok[ok["scenario"] == sc]
            base = baseline_of(dict.fromkeys(part["method"]), kind)
            for metric in [primary] + (["forgetting"] if kind == "stream" else []):
                if base:
                    frames.append(comparisons(part, metric, base, ci))
        comp = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if not comp.empty:
            comp_frames.append(comp)
            doc.heading(f"{kind.capitalize()}: each method against {BASELINE[kind]} (paired)", 3)
            doc.table(["scenario", "metric", "method", "seeds", "difference [CI]",
                       "Wilcoxon p (shown, not used)", "significant (paired CI excludes 0)"],
                      [[c["scenario"], NAMES.get(c["metric"], c["metric"]), c["method"],
                        str(c["n"]), diff_cell(c), p_cell(c["p_wilcoxon"]),
                        significance(c)]
                       for c in comp.to_dict("records")])
        if primary and len(scenarios) > 1:
            ar = average_rank(ok[ok["scenario"].isin(scenarios)], primary)
            ar.to_csv(tables_dir / f"average_rank-{kind}.csv", index=False)
            doc.heading(f"{kind.capitalize()}: average rank over scenarios ({NAMES[primary]})", 3)
            doc.table(["method", "average rank", "scenarios"],
                      [[m, f"{r:.2f}", str(n)] for m, r, n in
                       zip(ar["method"], ar["average_rank"], ar["scenarios"], strict=True)])
        _selected(doc, ok[ok["scenario"].isin(scenarios)], records, kind, tables_dir)
        if kind == "transfer":
            _transferability(doc, ok[ok["scenario"].isin(scenarios)], tables_dir)
            figures += _validators(doc, records, scenarios, tables_dir, out)
        figures += _kind_figures(doc, kind, scenarios, agg, colours, records, features, out)
    if comp_frames:
        pd.concat(comp_frames, ignore_index=True).to_csv(tables_dir / "comparisons.csv",
                                                           index=False)

    # ---- failures and environment
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

    md, page = out / "report.md", out / "report.html"
    md.write_text("\n".join(doc.md))
    page.write_text(doc.render_html(title))
    return {"markdown": md, "html": page, "figures": figures,
            "tables": sorted(tables_dir.glob("*.csv"))}


def _selected(doc: Doc, ok: pd.DataFrame, records: list[dict], kind: str,
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
                     fmt(same.get(f"{primary}_oracle_hp", float("nan"))),
                     fmt(same.get("selection_regret", float("nan")))])
    pd.DataFrame(rows, columns=["scenario", "method", "seed", "selected_config", primary,
                                f"{primary}_oracle_hp", "selection_regret"]).to_csv(
        tables_dir / f"selected-{kind}.csv", index=False)
    doc.heading(f"{kind.capitalize()}: selected configurations", 3)
    doc.para("Hyperparameter search: the configuration each seed's selection chose without "
             "target labels, its result, the best configuration on the test labels (an upper "
             "bound, never a result) and the regret.")
    doc.table(["scenario", "method", "seed", "selected configuration", NAMES.get(primary),
               "oracle configuration (upper bound)", "regret"], rows)


def _validators(doc: Doc, records: list[dict], scenarios: list[str], tables_dir: Path,
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
             "guard dalib's selection applies. Target labels are used for this study only.")
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


def _transferability(doc: Doc, ok: pd.DataFrame, tables_dir: Path) -> None:
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


def _kind_figures(doc: Doc, kind: str, scenarios: list[str], agg: pd.DataFrame, colours: dict,
                  records: list[dict], features, out: Path) -> list[Path]:
    """The figures of one kind of scenario, added to ``doc``; returns the files written."""
    figdir = out / "figures"
    written: list[Path] = []
    a = agg[agg["scenario"].isin(scenarios)]

    def add(fig, name: str, caption: str) -> None:
        paths = plots.save(fig, figdir / _slug(name))
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
        curves, checkpoints = _curves(records, sc)
        if not curves.empty:
            add(plots.training_curves(curves, checkpoints, colours, f"{sc}: training",
                                      upper=upper),
                f"{sc}-training", f"{sc}: training loss per step"
                + (" and target test accuracy at each checkpoint, mean over seeds per method; "
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
