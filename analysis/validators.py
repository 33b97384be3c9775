"""How well do unsupervised validators choose models? A study over checkpoints and
configurations (Musgrave et al., "Benchmarking Validation Methods for Unsupervised Domain
Adaptation", 2022): for each scenario and validator, the Spearman rank correlation between the
validator's score (signed so that higher is better) and target accuracy across every
checkpoint of every run, and the mean regret of choosing by it: per method (configurations of
a searched method pooled under its name) and seed, the best target accuracy among the
candidates minus the one the validator picks.

Works on run records (their ``checkpoints`` and ``higher_is_better``) or on a table made by
any tool with the columns ``scenario, method, seed, target_acc`` and one per validator. In a
regression scenario the ``target_acc`` column holds the negative target RMSE (higher is
still better), so its regrets are in the target's units.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

KEYS = ["scenario", "method", "seed"]


def checkpoint_table(records: list[dict]) -> tuple[pd.DataFrame, dict[str, bool]]:
    """One row per selectable checkpoint of every successful transfer record (a searched
    method's configurations under the method's name), and the validators' directions."""
    rows, directions = [], {}
    for r in records:
        if r.get("status") != "ok" or not r.get("checkpoints") or "higher_is_better" not in r:
            continue
        directions.update(r["higher_is_better"])
        method = (r.get("search") or {}).get("group", r["method"])
        for c in r["checkpoints"]:
            if c.get("selectable", True):
                rows.append({"scenario": r["scenario"], "method": method, "seed": r["seed"],
                             "run": r["run_id"], "step": c["step"],
                             "target_acc": c["target_acc"] if "target_acc" in c
                             else -c["target_rmse"],  # regression: higher is still better
                             **{v: c[v] for v in r["higher_is_better"] if v in c}})
    return pd.DataFrame(rows), directions


def _spearman(part: pd.DataFrame, validator: str, higher: bool) -> tuple[float, pd.Series]:
    """The rank correlation of ``validator``'s signed score with target accuracy over the
    rows where both are finite (NaN for fewer than 3 or a constant score), and those rows."""
    from scipy import stats

    score = part[validator] * (1.0 if higher else -1.0)
    ok = np.isfinite(score) & np.isfinite(part["target_acc"])
    rho = float(stats.spearmanr(score[ok], part["target_acc"][ok]).statistic) \
        if ok.sum() > 2 and score[ok].nunique() > 1 else float("nan")
    return rho, ok


def seed_correlations(table: pd.DataFrame, higher_is_better: dict[str, bool]) -> pd.DataFrame:
    """Each validator's rank correlation with target accuracy per scenario and seed, over the
    checkpoints of every method of that seed, as long results rows (``method = "all"``,
    ``metric = "spearman[VALIDATOR]"``): a study's correlation with an interval over seeds."""
    out = []
    for (scenario, seed), part in table.groupby(["scenario", "seed"], sort=True):
        for v in (v for v in higher_is_better if v in table):
            out.append({"scenario": scenario, "method": "all", "seed": seed,
                        "metric": f"spearman[{v}]",
                        "value": _spearman(part, v, higher_is_better[v])[0], "status": "ok"})
    return pd.DataFrame(out, columns=["scenario", "method", "seed", "metric", "value", "status"])


def validator_study(table: pd.DataFrame, higher_is_better: dict[str, bool]) -> pd.DataFrame:
    """``scenario, validator, spearman, regret, candidates, best``: per scenario and validator
    the rank correlation of the signed score with target accuracy, the mean regret over
    (method, seed) groups, the number of checkpoints, and whether it has the lowest regret of
    the scenario (ties: the higher correlation)."""
    out = []
    validators = [v for v in higher_is_better if v in table]
    for scenario, part in table.groupby("scenario", sort=False):
        for v in validators:
            rho, ok = _spearman(part, v, higher_is_better[v])
            regrets = []
            for _, g in part[ok].groupby(KEYS[1:], sort=False):
                signed = g[v] * (1.0 if higher_is_better[v] else -1.0)
                regrets.append(g["target_acc"].max() - g.loc[signed.idxmax(), "target_acc"])
            out.append({"scenario": scenario, "validator": v, "spearman": rho,
                        "regret": float(np.mean(regrets)) if regrets else float("nan"),
                        "candidates": int(ok.sum())})
    frame = pd.DataFrame(out, columns=["scenario", "validator", "spearman", "regret",
                                       "candidates"])
    if frame.empty:
        return frame.assign(best=pd.Series(dtype=bool))
    order = frame.sort_values(["scenario", "regret", "spearman"], ascending=[True, True, False])
    best = order.groupby("scenario", sort=False).head(1).index
    return frame.assign(best=frame.index.isin(best))


CATASTROPHE = 10.0  # points of target accuracy below the oracle pick that make a pick a failure


def selector_summary(picks: pd.DataFrame) -> pd.DataFrame:
    """How each selection rule did over many runs: ``picks`` has one row per run and rule
    (``rule``, ``picked``, ``oracle`` and ``last``: target accuracies of the rule's pick, of
    the best checkpoint on the test labels and of the final one). Per rule: the mean, median,
    90th percentile and worst regret against the oracle pick, the share of picks
    ``CATASTROPHE`` points or more below it, the mean difference to ``last`` and the share of
    runs where the pick is 5 points or more below ``last``; sorted by mean regret."""
    out = []
    for rule, g in picks.groupby("rule", sort=False):
        regret = g["oracle"] - g["picked"]
        vs_last = g["picked"] - g["last"]
        out.append({"rule": rule, "runs": len(g), "mean_regret": regret.mean(),
                    "median_regret": regret.median(), "p90_regret": regret.quantile(0.9),
                    "worst_regret": regret.max(),
                    "catastrophic": float((regret >= CATASTROPHE).mean()),
                    "vs_last": vs_last.mean(), "below_last": float((vs_last <= -5).mean())})
    return pd.DataFrame(out).sort_values(["mean_regret", "worst_regret"], ignore_index=True)
