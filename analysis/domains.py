"""Negative transfer across domains: what each source domain does to a held-out domain,
from leave-one-source-out runs (the held-out accuracy with every source minus that without
one source, paired over seeds). Pure functions over the long results table."""

from __future__ import annotations

import re

import pandas as pd

from analysis.stats import MIN_SEEDS, interval

VALIDATION = re.compile(r"/validate-[^/]+$")


def without_validation(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``results`` that are results: without the leave-one-domain-out validation
    scenarios (``FAMILY/DOMAIN/validate-V``), which serve the checkpoint and configuration
    pick of their family's runs and are never results of their own."""
    if results.empty or "scenario" not in results:
        return results
    return results[~results["scenario"].astype(str).str.contains(VALIDATION)]


EFFECT_COLUMNS = ["held_out", "source", "method", "mean", "ci_low", "ci_high", "n", "hurts"]


def source_effects(results: pd.DataFrame, all_sources: dict[str, str],
                   without: dict[str, tuple[str, str]], metric: str = "target_acc",
                   ci: str = "t") -> pd.DataFrame:
    """One row per held-out domain, removed source and method: the mean effect of adding
    the source (accuracy with all sources minus without it, in points, paired by seed), its
    95% interval and seed count, and ``hurts`` (the interval lies below 0 and rests on at
    least ``MIN_SEEDS`` seeds). ``all_sources`` maps each held-out domain's scenario (trained
    on every source) to the domain; ``without`` maps each leave-one-source-out scenario to
    ``(held-out domain, removed source)``."""
    part = results[results["metric"] == metric]
    wide = part.pivot_table(index=["method", "seed"], columns="scenario", values="value",
                            aggfunc="first")
    full = {held: sc for sc, held in all_sources.items()}
    rows = []
    for scenario, (held, source) in without.items():
        reference = full.get(held)
        if reference not in wide or scenario not in wide:
            continue
        for method in dict.fromkeys(part["method"]):
            if method not in wide.index.get_level_values(0):
                continue
            diff = (wide.loc[method, reference] - wide.loc[method, scenario]).dropna()
            if diff.empty:
                continue
            lo, hi = interval(diff.to_numpy(), ci) if len(diff) >= 2 else (float("nan"),) * 2
            rows.append([held, source, method, float(diff.mean()), lo, hi, len(diff),
                         bool(len(diff) >= MIN_SEEDS and hi < 0)])
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)
