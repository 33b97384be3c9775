"""Aggregation over seeds."""

from __future__ import annotations

import pandas as pd

GROUP = ["suite", "scenario", "method", "metric"]


def aggregate(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof = 1) and n over seeds for every suite, scenario, method, metric."""
    keys = [k for k in GROUP if k in results]
    g = results.dropna(subset=["value"]).groupby(keys, sort=False)["value"]
    return g.agg(mean="mean", std="std", n="count").reset_index()


def summary_table(results: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """One row per scenario and method, one column per metric, cells ``mean ± std (n)``."""
    agg = aggregate(results)
    if metrics is not None:
        agg = agg[agg["metric"].isin(metrics)]
    agg = agg.assign(cell=[f"{m:.2f} ± {0.0 if pd.isna(s) else s:.2f}"
                           for m, s in zip(agg["mean"], agg["std"], strict=True)])
    table = agg.pivot_table(index=["scenario", "method"], columns="metric", values="cell",
                            aggfunc="first", sort=False)
    order = [m for m in (metrics or list(dict.fromkeys(agg["metric"]))) if m in table.columns]
    return table[order].fillna("")
