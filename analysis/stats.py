"""Statistics over seeds: aggregation with confidence intervals, paired comparisons, ranks.

Every function works on a tidy long table with the columns ``scenario, method, seed, metric,
value`` (``suite`` optional; a ``status`` column, when present, keeps only ``ok`` rows), made
by dalib or by hand.

Intervals are 95% by default. ``t`` (the default) is the Student-t interval, which has its
nominal coverage at the seed counts people use (3-5) when the per-seed values are roughly
normal. ``bootstrap`` is the expanded percentile bootstrap of the mean (Hesterberg, "What
Teachers Should Know About the Bootstrap", The American Statistician 2015): the percentile
interval of resampled means, its tail probability widened to ``Phi(-sqrt(n / (n - 1))
t_{n-1})``. No resampling interval is wider than the range of the values, so with few seeds it
covers too rarely (74% at n = 3 on normal data): it is used from ``BOOTSTRAP_MIN_N`` values on,
and cells with fewer keep the t interval.

A paired difference is called significant only when its interval excludes 0 and it rests on at
least ``MIN_SEEDS`` seeds: with 3 seeds no winner is called.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GROUP = ["suite", "scenario", "method", "metric"]
CI_METHODS = ("bootstrap", "t")
RESAMPLES = 10_000
SEED = 0
LOWER_IS_BETTER = {"forgetting", "intransigence", "ntg", "source_drop", "online_error"}
# a regression scenario's errors and their gaps, in the target's units (never in points)
ERRORS = {"target_rmse", "target_mae", "source_rmse", "source_mae", "target_train_rmse"}
ERROR_GAPS = {"ntg_rmse", "source_drop_rmse"}


def is_error(metric: str) -> bool:
    """Whether ``metric`` is a regression error (RMSE or MAE, ``target_rmse_<criterion>``
    too): non-negative, in the target's units, lower is better."""
    return metric in ERRORS or metric.startswith("target_rmse_")


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better (``online_error[DOMAIN]`` as
    ``online_error``; regression errors and their gaps)."""
    stem = metric.split("[")[0]
    return stem in LOWER_IS_BETTER or stem in ERROR_GAPS or is_error(stem)
BOOTSTRAP_MIN_N = 10
MIN_SEEDS = 4
# Differences of metrics in points (accuracy, error, NTG, forgetting, ...) under half a point
# are too small to matter: the field's tables report one decimal and read gaps under a point
# as ties, and half a point is a handful of predictions on a test set of a few thousand.
PRACTICAL_POINTS = 0.5
SEARCH_TRIAL = "search_trial"  # the metric row that marks one configuration of a search


def _values(values) -> np.ndarray:
    v = np.asarray(pd.Series(values, dtype=float).dropna(), dtype=float)
    return v


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of ``values`` (NaNs for fewer than 2)."""
    from scipy import stats

    v = _values(values)
    if len(v) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / len(v) ** 0.5
    return float(v.mean() - half), float(v.mean() + half)


def bootstrap_interval(values, level: float = 0.95, resamples: int = RESAMPLES,
                       seed: int = SEED) -> tuple[float, float]:
    """Expanded percentile bootstrap interval of the mean (NaNs for fewer than 2 values);
    ``resamples`` draws with replacement from a generator seeded with ``seed``."""
    from scipy import stats

    v = _values(values)
    n = len(v)
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    tail = stats.norm.cdf(-np.sqrt(n / (n - 1)) * stats.t.ppf(0.5 + level / 2, n - 1))
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


SHARES = {"collapsed", "converged"}  # 0 or 1 per seed: their mean is a share of seeds


def wilson_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a share of 0/1 ``values`` (Wilson 1927): inside [0, 1] and
    near its nominal coverage at the few seeds people run, where a t interval of 0/1 values
    is neither (it gives [0, 0] for 0 of 5 and may reach below 0). NaNs for no value."""
    from scipy import stats

    v = _values(values)
    n = len(v)
    if n == 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf(0.5 + level / 2)
    share = v.mean()
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def interval(values, method: str = "t", level: float = 0.95) -> tuple[float, float]:
    """The ``method`` (``t`` or ``bootstrap``) confidence interval of the mean of ``values``;
    ``bootstrap`` falls back to ``t`` below ``BOOTSTRAP_MIN_N`` values."""
    if method not in CI_METHODS:
        raise ValueError(f"interval method is {method!r}, expected one of {', '.join(CI_METHODS)}")
    if method == "bootstrap" and len(_values(values)) >= BOOTSTRAP_MIN_N:
        return bootstrap_interval(values, level)
    return t_interval(values, level)


def ok_rows(results: pd.DataFrame) -> pd.DataFrame:
    """Rows of successful runs with a value."""
    ok = results[results["status"] == "ok"] if "status" in results else results
    return ok.dropna(subset=["value"])


def configurations(results: pd.DataFrame) -> set[str]:
    """The methods of a table that are single configurations of a hyperparameter search
    (they have ``search_trial`` rows): ranking them against each other would choose on the
    test labels, so rankings take the searched method's selected configuration instead."""
    return set(results.loc[results["metric"] == SEARCH_TRIAL, "method"])


def value_range(metric: str) -> tuple[float, float]:
    """The values a metric can take: accuracies (``acc``, ``*_acc``, ``target_acc_*``) lie in
    [0, 100] percent, regression errors are non-negative; other metrics (differences,
    forgetting, scores) are left unbounded."""
    if metric == "acc" or metric.endswith("_acc") or metric.startswith(("target_acc_",
                                                                        "online_error")):
        return 0.0, 100.0
    if is_error(metric):
        return 0.0, np.inf
    return -np.inf, np.inf


def aggregate(results: pd.DataFrame, ci: str = "t", level: float = 0.95) -> pd.DataFrame:
    """Mean, sample std (ddof = 1), n and the ``ci`` interval (``ci_low``, ``ci_high``) over
    seeds for every suite, scenario, method and metric, in order of first appearance (a share
    of seeds, :data:`SHARES`, has its :func:`wilson_interval`). An
    interval is cut to the metric's :func:`value_range` (a t interval of accuracies near 100
    would reach past it); the true mean lies in that range, so the coverage is kept."""
    keys = [k for k in GROUP if k in results]
    rows = []
    for key, g in ok_rows(results).groupby(keys, sort=False)["value"]:
        metric = str(dict(zip(keys, key, strict=True))["metric"])
        low, high = value_range(metric)
        lo, hi = wilson_interval(g, level) if metric in SHARES and len(g) >= 2 else \
            interval(g, ci, level)
        lo, hi = (lo, hi) if np.isnan(lo) else (max(lo, low), min(hi, high))
        rows.append((*key, g.mean(), g.std(ddof=1), len(g), lo, hi))
    return pd.DataFrame(rows, columns=[*keys, "mean", "std", "n", "ci_low", "ci_high"])


def summary_table(results: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """One row per scenario and method, one column per metric, cells ``mean ± std`` (``mean
    (n = 1)`` for a single seed)."""
    agg = aggregate(results, ci="t")
    if metrics is not None:
        agg = agg[agg["metric"].isin(metrics)]
    agg = agg.assign(cell=[f"{m:.2f} (n = 1)" if n < 2 else f"{m:.2f} ± {s:.2f}"
                           for m, s, n in zip(agg["mean"], agg["std"], agg["n"], strict=True)])
    table = agg.pivot_table(index=["scenario", "method"], columns="metric", values="cell",
                            aggfunc="first", sort=False)
    order = [m for m in (metrics or list(dict.fromkeys(agg["metric"]))) if m in table.columns]
    return table[order].fillna("")


def paired_differences(results: pd.DataFrame, scenario: str, metric: str, method: str,
                       baseline: str) -> pd.Series:
    """``method - baseline`` on ``metric`` for each seed where both ran, indexed by seed."""
    ok = ok_rows(results)
    ok = ok[(ok["scenario"] == scenario) & (ok["metric"] == metric)]

    def by_seed(name: str) -> pd.Series:
        return ok[ok["method"] == name].groupby("seed")["value"].mean()

    a, b = by_seed(method), by_seed(baseline)
    common = a.index.intersection(b.index)
    return (a[common] - b[common]).sort_index()


def in_points(metric: str) -> bool:
    """Whether ``metric`` is measured in points (percent or percentage points), where
    :data:`PRACTICAL_POINTS` applies."""
    stem = metric.split("[")[0]
    return value_range(stem)[1] == 100.0 or stem in LOWER_IS_BETTER | {
        "gain_over_source_only", "bwt", "fwt"}


def negligible(metric: str, difference: float) -> bool:
    """Whether a mean difference of ``metric`` is too small to matter (under
    :data:`PRACTICAL_POINTS` in a metric in points): such a lead is never called a win."""
    return in_points(metric) and abs(difference) < PRACTICAL_POINTS


def wilcoxon_p(differences) -> float:
    """Two-sided Wilcoxon signed-rank p-value (exact for small n) of paired differences; NaN
    when fewer than 2 are non-zero. With n pairs it cannot fall below ``2 / 2**n``: 6 seeds
    are needed to reach p < 0.05."""
    from scipy import stats

    d = _values(differences)
    if np.count_nonzero(d) < 2:
        return float("nan")
    return float(stats.wilcoxon(d, zero_method="wilcox").pvalue)


def seeds_needed(differences, power: float = 0.8, level: float = 0.95,
                 limit: int = 1000) -> int | None:
    """How many seeds a paired comparison needs so that its two-sided t interval at
    ``level`` excludes 0 with probability ``power``, were the true difference and its spread
    the observed ones (the paired t-test's power, from the noncentral t distribution); at
    least ``MIN_SEEDS``. None when the observed mean difference is 0, fewer than 2 seeds
    were run, or more than ``limit`` would be needed. An estimate from the observed effect,
    not a promise: small pilot samples misjudge the spread."""
    from scipy import stats

    d = _values(differences)
    if len(d) < 2 or d.mean() == 0:
        return None
    sd = float(d.std(ddof=1))
    if sd == 0:
        return MIN_SEEDS
    effect = abs(float(d.mean())) / sd
    n = np.arange(max(2, MIN_SEEDS), limit + 1)
    crit, nc = stats.t.ppf(0.5 + level / 2, n - 1), effect * np.sqrt(n)
    enough = stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc) >= power
    return int(n[np.argmax(enough)]) if enough.any() else None


def _paired_power(effect: float, n: int, level: float) -> float:
    """The paired t-test's power at standardised effect ``effect`` with ``n`` pairs."""
    from scipy import stats

    crit, nc = stats.t.ppf(0.5 + level / 2, n - 1), effect * np.sqrt(n)
    p = float(stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc))
    return 1.0 if np.isnan(p) else p  # scipy's noncentral t gives NaN far in the tail


def detectable_effect(differences, power: float = 0.8, level: float = 0.95) -> float:
    """The smallest mean difference (in the differences' units) that a paired comparison
    with these seeds resolves with probability ``power`` (its two-sided t interval at
    ``level`` excluding 0), were the spread the observed one: the power of the verdict. NaN
    for fewer than 2 seeds; 0 when the differences do not vary."""
    from scipy import optimize

    d = _values(differences)
    if len(d) < 2:
        return float("nan")
    sd = float(d.std(ddof=1))
    if sd == 0:
        return 0.0
    effect = optimize.brentq(lambda e: _paired_power(e, len(d), level) - power, 1e-9, 100.0)
    return float(effect * sd)


def compare(results: pd.DataFrame, scenario: str, metric: str, method: str, baseline: str,
            ci: str = "t", level: float = 0.95) -> dict:
    """Paired comparison of ``method`` against ``baseline`` on the same seeds: the mean
    difference, its ``ci`` interval, the Wilcoxon p-value, n, ``significant`` (the interval
    excludes 0 and n >= ``MIN_SEEDS``; the Wilcoxon p is reported, never used) and
    ``seeds_needed`` for 80% power at the observed difference (:func:`seeds_needed`)."""
    d = paired_differences(results, scenario, metric, method, baseline)
    lo, hi = interval(d, ci, level)
    return {"scenario": scenario, "metric": metric, "method": method, "baseline": baseline,
            "n": len(d), "diff": float(d.mean()) if len(d) else float("nan"),
            "ci_low": lo, "ci_high": hi, "p_wilcoxon": wilcoxon_p(d),
            "significant": bool(len(d) >= MIN_SEEDS and (lo > 0 or hi < 0)),
            "seeds_needed": seeds_needed(d, level=level)}


def comparisons(results: pd.DataFrame, metric: str, baseline: str, ci: str = "t",
                level: float = 0.95) -> pd.DataFrame:
    """:func:`compare` of every other method against ``baseline`` in every scenario where
    both ran."""
    ok = ok_rows(results)
    ok = ok[ok["metric"] == metric]
    rows = [compare(results, sc, metric, m, baseline, ci, level)
            for sc, g in ok.groupby("scenario", sort=False) if baseline in set(g["method"])
            for m in dict.fromkeys(g["method"]) if m != baseline]
    cols = ["scenario", "metric", "method", "baseline", "n", "diff", "ci_low", "ci_high",
            "p_wilcoxon", "significant", "seeds_needed"]
    return pd.DataFrame(rows, columns=cols)


def ranks(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rank of each method's mean ``metric`` within each scenario (1 = best, ties share the
    average rank; lower is better for the metrics in ``LOWER_IS_BETTER``)."""
    agg = aggregate(results[results["metric"] == metric], ci="t")
    if agg.empty:
        return pd.DataFrame(columns=["scenario", "method", "mean", "rank"])
    asc = lower_is_better(metric)
    agg["rank"] = agg.groupby("scenario", sort=False)["mean"].rank(ascending=asc, method="average")
    return agg[["scenario", "method", "mean", "rank"]]


def average_rank(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Average rank of each method over the scenarios it ran in (Demšar, JMLR 2006), with the
    number of scenarios, best first."""
    r = ranks(results, metric)
    out = r.groupby("method", sort=False)["rank"].agg(average_rank="mean", scenarios="count")
    return out.reset_index().sort_values(["average_rank", "method"], ignore_index=True)


def better(metric: str, a: float, b: float) -> bool:
    """``a`` is better than ``b`` for ``metric``."""
    return a < b if lower_is_better(metric) else a > b
