"""What the report's tables hold: the scenario kinds, their main metrics and baselines, the
checked results table and the formatting of its cells (mean [CI], paired differences)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from analysis.stats import (
    MIN_SEEDS,
    PRACTICAL_POINTS,
    better,
    compare,
    in_points,
    interval,
    negligible,
    ok_rows,
)
from analysis.transfer import transfer_gaps

REQUIRED = ["scenario", "method", "seed", "metric", "value"]
PRIMARY = {"transfer": "target_acc", "stream": "acc", "test-time": "online_error"}
REGRESSION_PRIMARY = "target_rmse"  # transfer scenarios of continuous targets
# each kind's baselines, in order of preference: domain generalization compares with ERM
BASELINE = {"transfer": ("source-only", "erm"), "stream": ("naive",),
            "test-time": ("source-only",)}  # test-time: the source model, unadapted
UPPER_BOUNDS = {"target-oracle", "joint", "cumulative"}  # references that see what others may not


def primary_of(table: pd.DataFrame, kind: str, scenario: str) -> str:
    """The metric a scenario's methods are ranked by: its kind's (:data:`PRIMARY`), the
    H-score in an open-set scenario (one that reports it), the target RMSE in a regression
    scenario, else its first metric."""
    metrics = table[table["scenario"] == scenario]["metric"]
    if kind == "transfer" and (metrics == "hos").any():
        return "hos"
    if kind == "transfer" and (metrics == REGRESSION_PRIMARY).any():
        return REGRESSION_PRIMARY
    return PRIMARY.get(kind) or str(metrics.iloc[0])


def base_name(label: str) -> str:
    """A method's registry name from its label (``joint[shift=0] @ v1`` -> ``joint``)."""
    return label.split(" @ ")[0].split("[")[0]


def baseline_of(methods, kind: str) -> str | None:
    """The label of the kind's baseline among ``methods``: ``source-only`` (else ``erm``, the
    baseline of domain generalization) for transfer, ``naive`` for streams."""
    for name in BASELINE.get(kind, ()):
        found = next((m for m in methods if base_name(m) == name), None)
        if found:
            return found
    return None

COLUMNS = {"transfer": ["target_acc", "hos", "known_acc", "unknown_recall",
                        "target_acc_last", "gain_over_source_only", "ntg",
                        "source_acc", "source_drop", "target_acc_oracle",
                        "target_rmse", "target_mae", "target_rmse_last",
                        "gain_over_source_only_rmse", "ntg_rmse", "source_rmse",
                        "source_drop_rmse", "target_rmse_oracle"],
           "stream": ["acc", "anytime_acc", "bwt", "fwt", "forgetting", "intransigence"],
           "test-time": ["online_error", "source_acc", "final_majority_share", "collapsed"]}
DIFFERENCES = {"gain_over_source_only", "ntg", "source_drop", "bwt", "fwt",
               "gain_over_source_only_rmse", "ntg_rmse", "source_drop_rmse"}
NAMES = {"target_acc": "target acc", "target_acc_last": "last",
         "gain_over_source_only": "gain over source-only",
         "ntg": "NTG", "source_acc": "source acc", "source_drop": "source drop",
         "target_acc_oracle": "oracle pick (upper bound)", "acc": "ACC", "bwt": "BWT",
         "fwt": "FWT", "forgetting": "forgetting", "intransigence": "intransigence",
         "online_error": "online error", "final_majority_share": "majority share (last 10%)",
         "collapsed": "collapsed (share of seeds)", "hos": "H-score (HOS)",
         "anytime_acc": "anytime acc (mean)", "known_acc": "known classes acc",
         "unknown_recall": "unknown recall", "target_rmse": "target RMSE",
         "target_mae": "target MAE", "target_rmse_last": "last RMSE",
         "gain_over_source_only_rmse": "RMSE gain over source-only", "ntg_rmse": "NTG (RMSE)",
         "source_rmse": "source RMSE", "source_drop_rmse": "source RMSE rise",
         "target_rmse_oracle": "oracle pick RMSE (upper bound)"}


FAR_FROM_LAST = 5.0  # points between the selected and the last checkpoint that are flagged


def selection_cost(table: pd.DataFrame, scenario: str, method: str) -> float | None:
    """The mean over seeds of the selected checkpoint's target accuracy minus the last
    one's (in a regression scenario the last one's RMSE minus the selected one's; None
    without both): what selection gained (+) or cost (-) against ``last``."""
    part = table[(table["scenario"] == scenario) & (table["method"] == method)]
    by = part.pivot_table(index="seed", columns="metric", values="value", aggfunc="first")
    if {"target_rmse", "target_rmse_last"} <= set(by.columns):  # regression: lower is better
        diff = (by["target_rmse_last"] - by["target_rmse"]).dropna()
    elif {"target_acc", "target_acc_last"} <= set(by.columns):
        diff = (by["target_acc"] - by["target_acc_last"]).dropna()
    else:
        return None
    return float(diff.mean()) if len(diff) else None


def unconverged(table: pd.DataFrame, scenario: str, method: str) -> tuple[int, int] | None:
    """How many of a method's seeds had not converged (their ``converged`` row is 0), and of
    how many with such a row; None when all had, or none says."""
    part = table[(table["scenario"] == scenario) & (table["method"] == method)
                 & (table["metric"] == "converged")]["value"]
    k = int((part == 0).sum())
    return (k, len(part)) if k else None


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
    derived = {"gain_over_source_only", "ntg", "source_drop", "gain_over_source_only_rmse",
               "ntg_rmse", "source_drop_rmse"}
    if not derived & set(table["metric"]):
        table = pd.concat([table, transfer_gaps(ok_rows(table))], ignore_index=True)
    return table


def kinds(table: pd.DataFrame) -> dict[str, list[str]]:
    """Scenarios by kind: ``transfer`` (with ``target_acc`` or ``target_rmse``), ``stream``
    (with ``acc``),
    ``test-time`` (with ``online_error``) and ``other``, in order of appearance."""
    out: dict[str, list[str]] = {"transfer": [], "stream": [], "test-time": [], "other": []}
    for sc, g in table.groupby("scenario", sort=False):
        metrics = set(g["metric"])
        kind = next((k for k, m in PRIMARY.items() if m in metrics),
                    "transfer" if REGRESSION_PRIMARY in metrics else "other")
        out[kind].append(sc)
    return {k: v for k, v in out.items() if v}


def fmt(x: float, digits: int = 2) -> str:
    return "" if pd.isna(x) else f"{x:.{digits}f}"


def is_error(metric) -> bool:
    """A regression error (RMSE or MAE, in the data's units; their differences too)."""
    return isinstance(metric, str) and ("rmse" in metric or "mae" in metric)


def cell(row: pd.Series) -> str:
    """``mean [ci_low, ci_high]`` (``mean (n = 1)`` for one seed); regression errors
    below 1 in size with three decimals (labels in [0, 1], as dSprites', err by hundredths)."""
    digits = 3 if is_error(row.get("metric")) and abs(row["mean"]) < 1 else 2
    if row["n"] < 2:
        return f"{fmt(row['mean'], digits)} (n = 1)"
    if pd.isna(row["ci_low"]):
        return fmt(row["mean"], digits)
    return (f"{fmt(row['mean'], digits)} [{fmt(row['ci_low'], digits)}, "
            f"{fmt(row['ci_high'], digits)}]")


def values_cell(values: np.ndarray) -> str:
    """:func:`cell` of raw values over seeds (Student-t interval)."""
    if not len(values):
        return ""
    lo, hi = interval(values, "t") if len(values) >= 2 else (float("nan"),) * 2
    return cell(pd.Series({"mean": values.mean(), "n": len(values), "ci_low": lo,
                           "ci_high": hi}))


def diff_cell(c: dict) -> str:
    ci = "" if pd.isna(c["ci_low"]) else f" [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"
    return f"{c['diff']:+.2f}{ci}"


def undefined(table: pd.DataFrame, scenario: str, method: str, metric: str) -> bool:
    """The metric was recorded for the method, as NaN for every seed (FWT under class-IL)."""
    v = table[(table["scenario"] == scenario) & (table["method"] == method)
              & (table["metric"] == metric)]["value"]
    return len(v) > 0 and bool(v.isna().all())


def significance(c: dict) -> str:
    """Whether a paired comparison is significant, and by which test; if it is not, about
    how many seeds would decide it at the observed difference (80% power), unless the
    difference is too small to matter (under :data:`~analysis.stats.PRACTICAL_POINTS` in a
    metric in points): then whether it is practically equal (its interval within that
    band) or only small."""
    needed = c.get("seeds_needed")
    band = PRACTICAL_POINTS if in_points(str(c.get("metric", ""))) else None
    small = band is not None and not pd.isna(c["diff"]) and abs(c["diff"]) < band
    equal = small and not pd.isna(c["ci_low"]) and -band < c["ci_low"] and c["ci_high"] < band
    if equal:
        more = f"; practically equal: the 95% CI lies within ±{band} points"
    elif small:
        more = (f"; the difference is under {band} points, too small to matter: more seeds "
                "would only pin down a negligible gap")
    elif c["significant"]:
        more = ""
    elif needed and not pd.isna(needed):
        more = f"; about {int(needed)} seeds would decide"
    else:
        more = "; more seeds would not decide"
    if c["n"] < MIN_SEEDS:
        return f"not assessed ({c['n']} seeds < {MIN_SEEDS}{more})"
    return f"yes (CI{more})" if c["significant"] else f"no (CI{more})"


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
    """The method with the best mean and its paired comparison with the runner-up, with
    ``called``: the comparison is significant and the lead not negligible (under half a
    point, :func:`~analysis.stats.negligible`)."""
    order = ranking(agg, scenario, metric)
    if not order:
        return None, None
    if len(order) == 1:
        return order[0], None
    vs = compare(table, scenario, metric, order[0], order[1], ci)
    return order[0], {**vs, "called": vs["significant"] and not negligible(metric, vs["diff"])}


def slug(text: str) -> str:
    """``text`` as a file-name part."""
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text)
