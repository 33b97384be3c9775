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


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``values`` (NaNs for fewer than 2)."""
    from scipy import stats

    v = pd.Series(values, dtype=float).dropna()
    if len(v) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / len(v) ** 0.5
    return float(v.mean() - half), float(v.mean() + half)


def transfer_markdown(results: pd.DataFrame) -> str:
    """One Markdown table per transfer scenario: target accuracy at the selected checkpoint,
    the gain over source-only with its paired 95% t-interval over seeds (``*`` where it
    excludes 0), source accuracy and the oracle pick (an upper bound)."""
    ok = results[results["status"] == "ok"] if "status" in results else results
    agg = aggregate(ok)
    out = []
    for scenario in dict.fromkeys(agg["scenario"]):
        a = agg[agg["scenario"] == scenario]
        if not (a["metric"] == "target_acc").any():
            continue

        def cell(method: str, metric: str, a: pd.DataFrame = a) -> str:
            r = a[(a["method"] == method) & (a["metric"] == metric)]
            if r.empty:
                return ""
            std = r["std"].iloc[0]
            return f"{r['mean'].iloc[0]:.1f} ± {0.0 if pd.isna(std) else std:.1f}"

        out += [f"**{scenario}** (n = {int(a['n'].max())} seeds)", "",
                "| method | target acc | gain over source-only | gain 95% CI | source acc "
                "| oracle pick (upper bound) |", "| --- | --- | --- | --- | --- | --- |"]
        for method in dict.fromkeys(a["method"]):
            gains = ok[(ok["scenario"] == scenario) & (ok["method"] == method)
                       & (ok["metric"] == "gain_over_source_only")]["value"]
            lo, hi = t_interval(gains)
            ci = "" if pd.isna(lo) else f"[{lo:.1f}, {hi:.1f}]{' *' if lo > 0 else ''}"
            out.append(f"| {method} | {cell(method, 'target_acc')} | "
                       f"{cell(method, 'gain_over_source_only')} | {ci} | "
                       f"{cell(method, 'source_acc')} | {cell(method, 'target_acc_oracle')} |")
        out.append("")
    return "\n".join(out)
