"""A report of a results table: ``report.md`` and one self-contained ``report.html``.

:func:`build_report` takes the tidy table (``scenario, method, seed, metric, value``; made by
dalib or by hand) and, when there are any, the runs' JSON records (for accuracy matrices,
training curves, failure reasons and the environment) and saved features (for t-SNE). Every
number comes from :mod:`analysis.stats`; the aggregated tables are also written as CSV.

The first section answers "which method is best, by how much, is it significant?" for each
scenario: the best mean of the scenario's main metric is **bold** only where the paired
interval of its difference to the runner-up (same seeds) excludes 0. The sections live in
their own modules: :mod:`~analysis.report.headline`, :mod:`~analysis.report.tables`,
:mod:`~analysis.report.selection`, :mod:`~analysis.report.figures` and
:mod:`~analysis.report.environment`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from analysis.domains import without_validation
from analysis.report.cells import (
    UPPER_BOUNDS,
    cell,
    diff_cell,
    kinds,
    prepare,
    significance,
)
from analysis.report.doc import Doc
from analysis.report.environment import failures_and_environment
from analysis.report.figures import kind_figures
from analysis.report.generalization import family_tables, source_effect_section
from analysis.report.headline import best_methods
from analysis.report.selection import (
    search_configurations,
    selected_configurations,
    transferability,
    validators,
)
from analysis.report.tables import kind_tables
from analysis.report.testtime import test_time_section
from analysis.stats import BOOTSTRAP_MIN_N, MIN_SEEDS, aggregate, configurations, ok_rows

__all__ = ["UPPER_BOUNDS", "build_report", "cell", "diff_cell", "prepare", "significance"]


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
    every = without_validation(ok_rows(table))  # validation runs serve the selection only
    agg_every = aggregate(every, ci=ci)
    # a search's single configurations are never ranked: its selected configuration is
    configs = configurations(every)
    ok = every[~every["method"].isin(configs)]
    agg = agg_every[~agg_every["method"].isin(configs)]
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
    winners = best_methods(doc, ok, agg, groups, ci)

    tables_dir = out / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    agg_every.to_csv(tables_dir / "aggregate.csv", index=False)
    comp_frames = []
    for kind, scenarios in groups.items():
        comp = kind_tables(doc, table, ok, agg, kind, scenarios, winners, ci, tables_dir)
        if not comp.empty:
            comp_frames.append(comp)
        selected_configurations(doc, ok[ok["scenario"].isin(scenarios)], records, kind,
                                tables_dir)
        search_configurations(doc, agg_every[agg_every["scenario"].isin(scenarios)
                                             & agg_every["method"].isin(configs)],
                              records, kind, tables_dir)
        if kind == "transfer":
            family_tables(doc, ok[ok["scenario"].isin(scenarios)], records, tables_dir)
            figures += source_effect_section(doc, ok[ok["scenario"].isin(scenarios)], records,
                                             tables_dir, out, colours)
            transferability(doc, ok[ok["scenario"].isin(scenarios)], tables_dir)
            figures += validators(doc, records, scenarios, tables_dir, out)
        if kind == "test-time":
            figures += test_time_section(doc, ok, records, scenarios, tables_dir, out, colours)
        figures += kind_figures(doc, kind, scenarios, agg, colours, records, features, out)
    if comp_frames:
        pd.concat(comp_frames, ignore_index=True).to_csv(tables_dir / "comparisons.csv",
                                                           index=False)
    failures_and_environment(doc, table, records)

    md, page = out / "report.md", out / "report.html"
    md.write_text("\n".join(doc.md))
    page.write_text(doc.render_html(title))
    return {"markdown": md, "html": page, "figures": figures,
            "tables": sorted(tables_dir.glob("*.csv"))}
